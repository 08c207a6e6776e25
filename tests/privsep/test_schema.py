"""The schema's compiled checks: what each kind of spec takes, and the path and rule it names
for what it does not."""

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kink_privsep import protocol as p
from kink_privsep.schema import Addr, Bin, Enum, Int, List, Map, Opt, Prefix, SchemaError, check

TEMPLATE = {"proto": "esp", "mode": "transport", "reqid": 0x4B49_0001}
POLICY = {
    "dir": "out",
    "selector": {"src": "192.0.2.1/32", "dst": "198.51.100.0/24"},
    "priority": 0x4B49_0100,
    "templates": [TEMPLATE],
}


def refused(spec: Any, value: object) -> str:
    with pytest.raises(SchemaError) as e:
        check(spec, value, "op")
    return str(e.value)


def test_defaults_are_filled_in_and_prefixes_parsed() -> None:
    out = check(p.POLICY, POLICY, "update_policy")
    assert out["action"] == "allow"
    assert out["selector"]["proto"] == out["selector"]["sport"] == 0
    assert str(out["selector"]["dst"]) == "198.51.100.0/24"
    assert out["templates"][0]["optional"] is False
    assert "mark" not in out and "lifetime" not in out  # optional without a default: absent


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"priority": True}, "op.priority: expected an integer"),
        ({"priority": -1}, "op.priority: -1 is outside 0..4294967295"),
        ({"dir": "sideways"}, "op.dir: expected one of in, out, fwd"),
        ({"selector": {"src": "192.0.2.1/24", "dst": "::/0"}}, "op.selector.src: expected an "),
        ({"templates": [TEMPLATE, {**TEMPLATE, "reqid": "1"}]}, "op.templates[1].reqid: exp"),
        ({"templates": [TEMPLATE] * 5}, "op.templates: more than 4 items"),
        ({"templates": {}}, "op.templates: expected an array"),
        ({"colour": "red"}, "op: unknown field 'colour'"),
        ({"selector": {"src": "192.0.2.1/32"}}, "op.selector: missing field 'dst'"),
    ],
)
def test_refusals_name_the_field_and_the_rule(change: dict[str, Any], reason: str) -> None:
    assert refused(p.POLICY, {**POLICY, **change}).startswith(reason)


def test_a_missing_required_field() -> None:
    policy = dict(POLICY)
    del policy["priority"]
    assert refused(p.POLICY, policy) == "op: missing field 'priority'"


def test_each_kind_on_its_own() -> None:
    assert check(Int(1, 3), 3, "x") == 3
    assert refused(Int(1, 3), 4) == "op: 4 is outside 1..3"
    assert refused(Enum(("a", "b")), ["a"]) == "op: expected one of a, b"  # unhashable: no error
    assert refused(Bin(2), b"abc") == "op: longer than 2 bytes"
    assert refused(Bin(2), "ab") == "op: expected binary"
    assert refused(Prefix(), "10.0.0.1/8") == "op: expected an address prefix without host bits"
    assert check(List(Int(0, 1), 2), [0, 1], "x") == [0, 1]
    assert check(Map({"a": Opt(Int(0, 1), 1)}), {}, "x") == {"a": 1}
    assert refused(Map({}), []) == "op: expected a map"


def test_specs_compare_by_what_they_declare() -> None:
    assert Int(0, 1) == Int(0, 1) and hash(Int(0, 1)) == hash(Int(0, 1))
    assert Enum(("a",)) != Enum(("b",))
    assert "checker" not in repr(Int(0, 1))


# Prefixes and addresses as ipaddress reads them: the dotted quads, every near miss of one
# (leading zeros, signs, spaces, hex, out of range, non-ASCII digits) and other text.
PARTS = st.integers(0, 300).map(str) | st.sampled_from(
    ["0", "00", "01", "", " 1", "+1", "0x1", "\u0661", "\uff11", "1\x00"]
)
QUADS = st.lists(PARTS, min_size=1, max_size=5).map(".".join)
LENGTHS = st.integers(0, 40).map(str) | st.sampled_from(["", "024", "+8", " 8", "\uff18", "8/8"])
PREFIXES = st.builds(lambda a, n: f"{a}/{n}", QUADS, LENGTHS) | QUADS
TEXT = st.text(alphabet="0123456789abcdef.:/% \x00", max_size=24)


def as_ipaddress(read: Callable[[str], object], text: str) -> object:
    try:
        return read(text)
    except ValueError:
        return None


def as_schema(spec: Prefix | Addr, text: str) -> object:
    try:
        return check(spec, text, "x")
    except SchemaError:
        return None


@given(PREFIXES | TEXT)
def test_prefixes_read_as_ipaddress_reads_them(text: str) -> None:
    theirs = as_ipaddress(lambda t: ipaddress.ip_network(t, strict=True), text)
    if "%" in text:
        theirs = None  # no zone index
    mine = as_schema(Prefix(), text)
    assert mine == theirs and type(mine) is type(theirs)


@given(QUADS | TEXT)
def test_addresses_read_as_ipaddress_reads_them(text: str) -> None:
    theirs = as_ipaddress(ipaddress.ip_address, text)
    if "%" in text or "/" in text:
        theirs = None
    mine = as_schema(Addr(), text)
    assert mine == theirs and type(mine) is type(theirs)
