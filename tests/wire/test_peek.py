"""peek_ap_req: a command's KRB_AP_REQ found without decoding the message (issue 9), only where
decode() finds no fault in the header, the outer payload chain or a Quick Mode version (those
faults decode() reports, RFC 4430 §4, §4.1, §4.2, §4.2.6)."""

import pytest

from kink.wire import (
    ApReq,
    DecodeError,
    Isakmp,
    Message,
    MessageType,
    decode,
    decode_inner,
    encode,
    peek_ap_req,
)
from tests.wire.captures import ROWS, Row, raw
from tests.wire.test_hostile import CREATE, CREATE_PLAINTEXT, patch


def _first_ap_req(data: bytes) -> bytes | None:
    return next((p.ap_req for p in decode(data).payloads if isinstance(p, ApReq)), None)


def _cleartext_create() -> tuple[ApReq, bytes]:
    """The captured CREATE's AP_REQ and, in cleartext after it, its KINK_ISAKMP."""
    inner = decode(CREATE).payloads[0]
    assert isinstance(inner, ApReq)
    isakmp = next(p for p in decode_inner(CREATE_PLAINTEXT) if isinstance(p, Isakmp))
    return inner, encode(Message(MessageType.CREATE, 5, (inner, isakmp)))


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_a_captured_message_gives_what_decode_gives(row: Row) -> None:
    data = raw(row)
    assert peek_ap_req(data) == _first_ap_req(data)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_no_truncation_gives_an_ap_req(row: Row) -> None:
    data = raw(row)
    for size in range(len(data)):
        assert peek_ap_req(data[:size]) is None


def test_the_first_ap_req_of_several() -> None:
    msg = Message(MessageType.STATUS, 9, (ApReq(1, b"first"), ApReq(2, b"second")))
    assert peek_ap_req(encode(msg)) == b"first"
    assert peek_ap_req(encode(Message(MessageType.STATUS, 9, ()))) is None


@pytest.mark.parametrize(
    ("offset", "fmt", "value"),
    [
        (1, "B", 0x20),  # MjVer 2
        (4, "I", 2),  # another DOI
        (2, "H", 15),  # Length shorter than the header
        (14, "H", 0xFFFF),  # CksumLen past Length
        (14, "H", 23),  # the Cksum not on a 4-octet boundary
        (18, "H", 3),  # AP_REQ Payload Length under 4
        (18, "H", 7),  # no room for the EPOCH
        (18, "H", 0xFFFF),  # past the Cksum
        (724, "B", 1),  # KINK_ENCRYPT not last
        (726, "H", 112),  # 4 octets between the last payload and the Cksum
        (8, "I", 0),  # not a fault: the XID
    ],
)
def test_a_fault_decode_reports_gives_none(offset: int, fmt: str, value: int) -> None:
    data = patch(CREATE, offset, fmt, value)
    try:
        expected = _first_ap_req(data)
    except DecodeError:
        expected = None
    assert peek_ap_req(data) == expected
    assert (expected is None) == (offset != 8)


def test_an_unsupported_quick_mode_version_gives_none() -> None:
    # §4.2.8: decode() reports it (KINK_BADQMVERS), and a command's gets an answer.
    inner, data = _cleartext_create()
    at = data.index(inner.ap_req) + len(inner.ap_req)
    at = (at + 3) & ~3  # KINK_ISAKMP's generic header, then InnerNextPload, the version
    assert data[at + 5] == 0x10 and peek_ap_req(data) == inner.ap_req
    assert peek_ap_req(patch(data, at + 5, "B", 0x11)) is None


def test_what_a_payload_holds_is_not_read() -> None:
    # Past the generic headers nothing is read: a Quick Mode payload's length fault is left
    # to decode(), and the ticket can be checked first.
    inner, data = _cleartext_create()
    at = (data.index(inner.ap_req) + len(inner.ap_req) + 3) & ~3
    broken = patch(data, at + 10, "H", 3)  # the first Quick Mode payload's length
    with pytest.raises(DecodeError):
        decode(broken)
    assert peek_ap_req(broken) == inner.ap_req
