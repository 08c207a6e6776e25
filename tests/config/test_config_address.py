"""config_fields.address reads a dotted quad with inet_pton(3) and anything else with
ipaddress: either way it takes exactly what ipaddress takes, as the same address."""

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from kink.daemon.config_fields import Invalid, IpAddress, address

# Parts of dotted quads, the good and every near miss: leading zeros, signs, spaces, hex,
# out of range, empty, and digits that are not ASCII (Arabic-Indic one, fullwidth one).
PARTS = st.integers(0, 999).map(str) | st.sampled_from(
    ["0", "00", "01", "007", "", " 1", "1 ", "+1", "-1", "0x1", "\u0661", "\uff11", "1\x00"]
)
QUADS = st.lists(PARTS, min_size=1, max_size=6).map(".".join)
TEXT = st.text(alphabet="0123456789abcdefx.:/% \x00", max_size=24)


def ours(text: str) -> IpAddress | None:
    try:
        return address(text)
    except Invalid:
        return None


def ipaddress_reads(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def agree(text: str) -> None:
    mine, theirs = ours(text), ipaddress_reads(text)
    assert mine == theirs
    assert type(mine) is type(theirs)


@given(QUADS)
def test_dotted_quads_read_as_ipaddress_reads_them(text: str) -> None:
    agree(text)


@given(TEXT)
def test_any_text_read_as_ipaddress_reads_it(text: str) -> None:
    agree(text)


def test_the_usual_and_the_edges() -> None:
    for text in ("10.3.0.1", "0.0.0.0", "255.255.255.255", "2001:db8::1", "::ffff:192.0.2.1"):
        assert address(text) == ipaddress.ip_address(text)
    for text in ("01.2.3.4", "1.2.3", "1.2.3.4.", "1.2.3.256", " 1.2.3.4", "1.2.3.4\x00"):
        assert ours(text) is None
