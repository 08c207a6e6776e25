"""decrypt_ticket_offline and KRB-ERROR parsing on racoon2 kinkd captures (real MIT peers)."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from kink.krb5.context import Context
from kink.krb5.errors import KRB5KRB_AP_WRONG_PRINC, KRB_AP_ERR_BADKEYVER, Krb5Error
from kink.krb5.initiator import Initiator
from kink.krb5.offline import decrypt_ticket_offline
from tests.krb5.pcap import kink_ap_req, kink_krb_error

# Copies of the racoon2 interop data (shared/interop/racoon2-captures): the a.pcap of each scenario
# in tests/wire/data, the host keytabs in tests/ctl/data, the rest here.
TESTS = Path(__file__).resolve().parents[1]
PCAPS = TESTS / "wire" / "data"
KEYTABS = TESTS / "ctl" / "data"
DATA = Path(__file__).with_name("data")
# From the captures' README.md / decoded-a.txt.
BASIC_SESSION_KEY = "6f6e273c227eaace58145a81907c0bf8e0dcc0623079893dc4ee0d916c81e346"
KRBERR_SESSION_KEY = "062464bb0eca39c618d6e5d148e7f0a1ea2e47e23dd30b23f77b03863ef4f377"
HOST_A = "kink/host-a.example.test@EXAMPLE.TEST"
HOST_B = "kink/host-b.example.test@EXAMPLE.TEST"


def _posix(generalized_time: str) -> int:
    return int(datetime.strptime(generalized_time, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC).timestamp())


@pytest.fixture
def context() -> Context:
    return Context(DATA / "krb5.conf")


@pytest.mark.parametrize(
    ("frame", "ctime", "cusec"),
    [
        (5, "20261127062645Z", 142779),
        (10, "20261127062653Z", 675149),
        (12, "20261127062703Z", 430545),
        (14, "20261127062707Z", 753688),
        (17, "20261127062714Z", 400658),
    ],
)
def test_basic_capture_ap_reqs(context: Context, frame: int, ctime: str, cusec: int) -> None:
    ap_req = kink_ap_req(PCAPS / "basic-a.pcap", frame)
    t = decrypt_ticket_offline(context, ap_req, str(KEYTABS / "host-b.keytab"))
    assert t.session_key.enctype == 18
    assert t.session_key.material.hex() == BASIC_SESSION_KEY
    assert (t.client_principal, t.server_principal) == (HOST_A, HOST_B)
    assert (t.ticket_enctype, t.ticket_kvno) == (18, 2)
    assert (t.ctime, t.cusec) == (_posix(ctime), cusec)
    # racoon2's AP-REQ, like ours: mutual-required only, no subkey, no sequence number.
    assert t.ap_options == 0x20000000
    assert not t.user_to_user
    assert (t.subkey_enctype, t.seq_number) == (None, None)
    assert t.authtime <= t.starttime <= t.ctime < t.endtime
    assert BASIC_SESSION_KEY not in repr(t)


def test_krberr_capture_needs_the_right_key(context: Context) -> None:
    ap_req = kink_ap_req(PCAPS / "krberr-a.pcap", 5)
    t = decrypt_ticket_offline(context, ap_req, str(KEYTABS / "host-b.keytab"))
    assert t.session_key.material.hex() == KRBERR_SESSION_KEY
    assert (t.ctime, t.cusec) == (_posix("20261127062521Z"), 864402)
    # The responder of that capture only had the aes128 key; the ticket is under aes256.
    with pytest.raises(Krb5Error) as e:
        decrypt_ticket_offline(context, ap_req, str(DATA / "host-b-aes128only.keytab"))
    assert e.value.code == KRB5KRB_AP_WRONG_PRINC
    with pytest.raises(Krb5Error):
        decrypt_ticket_offline(context, ap_req, str(KEYTABS / "host-a.keytab"))


def test_captured_krb_error(context: Context) -> None:
    """The unauthenticated KRB-ERROR kinkd sent for KRB_AP_ERR_BADKEYVER (krberr frame 6)."""
    krb_error = kink_krb_error(PCAPS / "krberr-a.pcap", 6)
    info = Initiator(context).parse_krb_error(krb_error)
    assert info.error_code == KRB_AP_ERR_BADKEYVER
    assert info.name == "KRB_AP_ERR_BADKEYVER"
    assert info.server == HOST_B
    assert info.e_text == "Key version is not available"
    assert (info.ctime, info.cusec) == (None, None)  # no authenticator could be read
    assert info.stime == _posix("20261127062523Z")


def test_truncated_or_damaged_capture_is_a_krb5_error(context: Context) -> None:
    ap_req = kink_ap_req(PCAPS / "basic-a.pcap", 5)
    keytab = str(KEYTABS / "host-b.keytab")
    for cut in (0, 1, 10, 100, len(ap_req) - 1):
        with pytest.raises(Krb5Error):
            decrypt_ticket_offline(context, ap_req[:cut], keytab)
    damaged = bytearray(ap_req)
    damaged[-5] ^= 0x01  # inside the authenticator's integrity tag
    with pytest.raises(Krb5Error):
        decrypt_ticket_offline(context, bytes(damaged), keytab)
