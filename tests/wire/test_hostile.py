"""Hostile input: truncations and wrong lengths at every level end in DecodeError, with the
offset of the fault, the KINK_ERROR code and, inside KINK_ISAKMP, the Notify to answer with."""

import struct

import pytest

from kink.wire import (
    DecodeError,
    Isakmp,
    KinkErrorCode,
    Message,
    MessageType,
    NotifyPayload,
    cksum_input,
    decode,
    decode_inner,
    encode,
    encode_inner,
)
from kink.wire.ipsec_doi import NotifyType
from tests.wire.captures import ROWS, Row, plaintexts, raw

CREATE = raw(ROWS[0])  # basic/5: header | AP_REQ @16 (706) | pad | ENCRYPT @724 (116) | Cksum
CREATE_PLAINTEXT = plaintexts()["basic/5"]
DELETE_PLAINTEXT = plaintexts()["basic/17"]
MALFORMED = NotifyType.PAYLOAD_MALFORMED


def patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    field = struct.pack(">" + fmt, value)
    return data[:offset] + field + data[offset + len(field) :]


def fails(data: bytes, offset: int, *, inner: bool = False) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        if inner:
            decode_inner(data)
        else:
            decode(data)
    assert info.value.offset == offset, str(info.value)
    return info.value


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_every_truncation_of_a_captured_message(row: Row) -> None:
    data = raw(row)
    for size in range(len(data)):
        error = fails(data[:size], 0 if size < 16 else 2)
        assert (error.header is None) == (size < 16)
        with pytest.raises(DecodeError):
            cksum_input(data[:size])


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_every_truncation_with_length_fields_that_agree(row: Row) -> None:
    data = raw(row)
    msg = decode(data)
    payload_end = row.length - row.cksum_len
    stop = len(encode(msg))  # without a Cksum the last payload is not padded
    for size in range(16, len(data)):
        cut = patch(patch(data[:size], 2, "H", size), 14, "H", 0)
        if size in (stop, payload_end):
            assert decode(cut).payloads == msg.payloads  # only padding or Cksum was cut
        else:
            with pytest.raises(DecodeError):
                decode(cut)


@pytest.mark.parametrize("row", [r for r in ROWS if r.encrypt_length], ids=lambda r: r.id)
def test_every_truncation_of_a_decrypted_plaintext(row: Row) -> None:
    plaintext = plaintexts()[row.id]
    for size in range(len(plaintext)):
        # Too short for the inner header, for the KINK_ISAKMP header, or for its Payload Length.
        fails(plaintext[:size], 0 if size < 4 else 4 if size < 8 else 6, inner=True)


def test_header_length_fields() -> None:
    assert fails(patch(CREATE, 2, "H", 853), 2).kink_error == KinkErrorCode.PROTOERR
    fails(patch(CREATE, 2, "H", 15), 2)
    fails(patch(CREATE, 2, "H", 0), 2)
    fails(patch(CREATE, 14, "H", 852 - 15), 14)  # CksumLen larger than the message body
    fails(patch(CREATE, 14, "H", 0xFFFF), 14)
    fails(patch(CREATE, 14, "H", 13), 14)  # Cksum would not start on a 4-octet boundary
    fails(patch(CREATE, 14, "H", 16), 726)  # the Cksum would overlap KINK_ENCRYPT
    fails(patch(CREATE, 14, "H", 8), 840)  # 4 octets between KINK_ENCRYPT and the Cksum
    fails(patch(CREATE, 12, "B", 0), 16)  # no payloads, yet octets before the Cksum
    for size in range(16):
        with pytest.raises(DecodeError) as info:
            cksum_input(CREATE[:size])
        assert info.value.offset == 0


def test_unsupported_version_and_doi_carry_their_kink_error_and_the_header() -> None:
    for version in (0x00, 0x20, 0xF0):
        error = fails(patch(CREATE, 1, "B", version), 1)
        assert error.kink_error == KinkErrorCode.INVMAJ
        assert error.header is not None and error.header.mjver == version >> 4
        with pytest.raises(DecodeError):
            cksum_input(patch(CREATE, 1, "B", version))
    error = fails(patch(patch(CREATE, 4, "I", 2), 8, "I", 0xDEADBEEF), 4)
    assert error.kink_error == KinkErrorCode.INVDOI
    assert error.header is not None
    assert (error.header.doi, error.header.xid, error.header.type) == (2, 0xDEADBEEF, 1)
    # The RESERVED nibble after MjVer is ignored (§4).
    assert decode(patch(CREATE, 1, "B", 0x1F)).payloads == decode(CREATE).payloads


def test_outer_payload_lengths() -> None:
    for length in range(4):
        error = fails(patch(CREATE, 18, "H", length), 18)
        assert "less than 4" in error.reason and error.header is not None
    fails(patch(CREATE, 18, "H", 0xFFFF), 18)
    fails(patch(CREATE, 18, "H", 825), 18)  # one octet past the Cksum boundary
    for length in range(4, 8):
        fails(patch(CREATE, 18, "H", length), 20)  # no room for the EPOCH
    with pytest.raises(DecodeError):  # KINK_ENCRYPT's header then read from the ciphertext
        decode(patch(CREATE, 18, "H", 709))
    fails(patch(CREATE, 726, "H", 3), 726)
    fails(patch(CREATE, 726, "H", 117), 726)
    fails(patch(CREATE, 726, "H", 112), 724 + 112)  # 4 octets left before the Cksum
    # 1 to 3 octets before the Cksum are KINK_ENCRYPT's padding (§4.1): structurally fine.
    assert decode(patch(CREATE, 726, "H", 113)).ciphertext == CREATE[728:837]


def test_kink_encrypt_must_be_last() -> None:
    for nxt in (1, 2, 6, 7, 8, 200):
        error = fails(patch(CREATE, 724, "B", nxt), 724)
        assert "last" in error.reason
    assert "offset 724" in str(fails(patch(CREATE, 724, "B", 1), 724))


def test_kink_encrypt_inside_kink_encrypt() -> None:
    fails(patch(CREATE_PLAINTEXT, 0, "B", 7), 4, inner=True)
    chained = patch(CREATE_PLAINTEXT, 4, "B", 7) + bytes.fromhex("00000008 00000000")
    fails(chained, 84, inner=True)


def test_fixed_size_payloads() -> None:
    error_reply = encode(Message(MessageType.REPLY, 1, ()))[:12] + bytes([8, 0, 0, 0])
    for size in (0, 3, 5, 8):
        body = bytes([0, 0]) + struct.pack(">H", 4 + size) + bytes(size)
        data = patch(error_reply + body, 2, "H", 20 + size)
        fails(data, 20)
    isakmp = bytes([6, 0, 0, 0, 0, 0, 0, 7, 1, 0x10, 0])
    fails(isakmp, 8, inner=True)


@pytest.mark.parametrize("version", [0x00, 0x11, 0x20, 0x01, 0xFF])
def test_unsupported_quick_mode_version(version: int) -> None:
    error = fails(patch(CREATE_PLAINTEXT, 9, "B", version), 9, inner=True)
    assert error.kink_error == KinkErrorCode.BADQMVERS
    assert error.notify is None
    # The same payload in cleartext: decode() reports it, header attached.
    cleartext = encode(Message(MessageType.STATUS, 77, decode_inner(CREATE_PLAINTEXT)))
    error = fails(patch(cleartext, 21, "B", version), 21)
    assert error.kink_error == KinkErrorCode.BADQMVERS
    assert error.header is not None and error.header.xid == 77


# Offsets into the CREATE plaintext (basic/5, 84 octets): 0 InnerNextPload | 4 KINK_ISAKMP
# (length 80 at 6) | 8 InnerNextPload, QM version | 12 SA (length 52 at 14) | 16 DOI |
# 20 Situation | 24 Proposal (length 40 at 26) | 28 #, protocol, SPI size, # of transforms |
# 32 SPI | 36 Transform (length 28 at 38) | 40 #, id | 44 five TV attributes | 64 Nonce
# (length 20 at 66) | 68 Ni.
QM_FAULTS = [
    pytest.param(14, "H", 3, 12, id="SA length < 4"),
    pytest.param(14, "H", 0xFFFF, 12, id="SA length huge"),
    pytest.param(14, "H", 11, 16, id="SA shorter than DOI and Situation"),
    pytest.param(16, "I", 2, 16, id="SA in another DOI"),
    pytest.param(20, "I", 3, 20, id="labelled situation"),
    pytest.param(26, "H", 7, 24, id="Proposal length < 8"),
    pytest.param(26, "H", 41, 24, id="Proposal beyond its SA"),
    pytest.param(26, "H", 0xFFFF, 24, id="Proposal length huge"),
    pytest.param(24, "B", 3, 24, id="Proposal Next Payload 3"),
    pytest.param(24, "B", 2, 64, id="last Proposal announces another"),
    pytest.param(30, "B", 33, 30, id="SPI beyond its proposal"),
    pytest.param(30, "B", 255, 30, id="SPI size 255"),
    pytest.param(31, "B", 2, 64, id="# of Transforms too high"),
    pytest.param(31, "B", 0, 64, id="# of Transforms too low"),
    pytest.param(38, "H", 7, 36, id="Transform length < 8"),
    pytest.param(38, "H", 29, 36, id="Transform beyond its proposal"),
    pytest.param(36, "B", 2, 36, id="Transform Next Payload 2"),
    pytest.param(36, "B", 3, 64, id="last Transform announces another"),
    pytest.param(38, "H", 27, 60, id="attribute cut by its transform"),
    pytest.param(44, "I", 0x0002FFFF, 44, id="TLV attribute length 65535"),
    pytest.param(44, "I", 0x00020011, 44, id="TLV attribute one octet too long"),
    pytest.param(66, "H", 3, 64, id="Nonce length < 4"),
    pytest.param(66, "H", 21, 64, id="Nonce beyond KINK_ISAKMP"),
    pytest.param(66, "H", 19, 83, id="octet after the last ISAKMP payload"),
    pytest.param(12, "B", 0, 64, id="chain ends before KINK_ISAKMP does"),
]


def test_kink_isakmp_header() -> None:
    # Faults of the KINK payload itself are KINK_PROTOERR, not an ISAKMP notification.
    for length, fault in ((3, 6), (7, 8), (81, 6)):
        error = fails(patch(CREATE_PLAINTEXT, 6, "H", length), fault, inner=True)
        assert error.notify is None


@pytest.mark.parametrize(("offset", "fmt", "value", "fault"), QM_FAULTS)
def test_quick_mode_structure(offset: int, fmt: str, value: int, fault: int) -> None:
    error = fails(patch(CREATE_PLAINTEXT, offset, fmt, value), fault, inner=True)
    assert error.notify == MALFORMED
    assert error.kink_error == KinkErrorCode.PROTOERR


# DELETE plaintext (basic/17, 28 octets): 4 KINK_ISAKMP (length 24 at 6) | 12 Delete (length
# 16 at 14) | 16 DOI | 20 protocol | 21 SPI size | 22 # of SPIs | 24 SPI.
DELETE_FAULTS = [
    pytest.param(((22, "H", 0xFFFF),), 22, id="65535 SPIs announced"),
    pytest.param(((21, "B", 255), (22, "H", 0xFFFF)), 22, id="65535 SPIs of 255 octets"),
    pytest.param(((22, "H", 0),), 22, id="SPI left over"),
    pytest.param(((6, "H", 20), (14, "H", 12), (21, "B", 0), (22, "H", 5)), 21, id="size-0 SPIs"),
    pytest.param(((6, "H", 19), (14, "H", 11)), 16, id="Delete shorter than 8"),
]


@pytest.mark.parametrize(("edits", "fault"), DELETE_FAULTS)
def test_delete_structure(edits: tuple[tuple[int, str, int], ...], fault: int) -> None:
    data = DELETE_PLAINTEXT
    for offset, fmt, value in edits:
        data = patch(data, offset, fmt, value)
    assert fails(data, fault, inner=True).notify == MALFORMED


def test_notify_and_id_structure() -> None:
    notify = NotifyPayload(NotifyType.INVALID_SPI, 3, b"\x01\x02\x03\x04", b"data")
    plaintext = encode_inner((Isakmp((notify,)),))
    # 12 Notification (length 20 at 14) | 16 DOI | 20 protocol | 21 SPI size | 22 type | 24 SPI
    assert decode_inner(plaintext) == (Isakmp((notify,)),)
    assert fails(patch(plaintext, 21, "B", 13), 21, inner=True).notify == MALFORMED
    assert decode_inner(patch(plaintext, 21, "B", 8))[0] == Isakmp(
        (NotifyPayload(NotifyType.INVALID_SPI, 3, b"\x01\x02\x03\x04data", b""),)
    )
    short = patch(patch(plaintext, 6, "H", 19), 14, "H", 11)
    assert fails(short, 16, inner=True).notify == MALFORMED
    as_id = patch(patch(patch(plaintext, 8, "B", 5), 6, "H", 15), 14, "H", 7)
    assert fails(as_id, 16, inner=True).notify == MALFORMED


def test_errors_name_offset_and_reason() -> None:
    error = fails(patch(CREATE, 18, "H", 2), 18)
    assert str(error) == "offset 18: Payload Length 2 is less than 4"
    assert error.header is not None and error.header.xid == 0 and error.header.cksum_len == 12
    assert error.notify is None and error.notify_data == b""
