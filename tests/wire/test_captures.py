"""Every KINK message racoon2's kinkd sent in the interop captures decodes to what the capture
README says, re-encodes to the same octets, and (decrypted) passes the RFC 4430 §6 rules."""

import dataclasses
import struct

import pytest

from kink.wire import (
    ApRep,
    ApReq,
    Attribute,
    DeletePayload,
    Isakmp,
    KrbError,
    MessageType,
    NoncePayload,
    SaPayload,
    check_message,
    cksum_input,
    decode,
    decode_inner,
    encode,
    encode_inner,
    lifetimes,
)
from kink.wire.ipsec_doi import (
    AttributeType,
    AuthAlgorithm,
    EncapsulationMode,
    EspTransform,
    LifeType,
    ProtocolId,
)
from tests.wire.captures import REQUEST_OF_REPLY, ROWS, Row, datagrams, plaintexts, raw
from tests.wire.sealers import ReplaySealer, TransparentSealer

by_id = pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)


def test_the_captures_hold_exactly_the_readme_messages() -> None:
    for scenario in ("basic", "krberr"):
        frames = sorted(row.frame for row in ROWS if row.scenario == scenario)
        assert sorted(datagrams(scenario)) == frames


@by_id
def test_header_and_payloads_match_the_readme(row: Row) -> None:
    data = raw(row)
    msg = decode(data)
    assert len(data) == row.length
    assert msg.type == row.type and isinstance(msg.type, MessageType)
    assert (msg.xid, msg.ackreq, msg.doi, msg.mjver) == (row.xid, False, 1, 1)
    assert tuple(p.payload_type for p in msg.payloads) == row.outer
    assert len(msg.cksum) == row.cksum_len
    assert msg.encrypted is None
    if row.encrypt_length is None:
        assert msg.ciphertext is None
    else:
        assert msg.ciphertext is not None and len(msg.ciphertext) == row.encrypt_length - 4
    first = msg.payloads[0]
    if row.epoch is None:
        assert isinstance(first, KrbError)
        assert first.krb_error.startswith(b"\x7e")  # [APPLICATION 30] KRB-ERROR
    else:
        assert isinstance(first, ApReq | ApRep)
        assert first.epoch == row.epoch
        # [APPLICATION 14] AP-REQ / [APPLICATION 15] AP-REP
        assert (first.ap_req if isinstance(first, ApReq) else first.ap_rep)[:1] in (
            b"\x6e",
            b"\x6f",
        )


@by_id
def test_reencoding_gives_the_captured_octets(row: Row) -> None:
    data = raw(row)
    msg = decode(data)
    if msg.cksum:
        sealer = ReplaySealer(msg.ciphertext, msg.cksum)
        assert encode(msg, sealer) == data
        # encode() checksummed exactly what RFC 4430 §4 tells the receiver to verify.
        assert sealer.checksummed == [cksum_input(data)[0]]
        assert sealer.encrypted == []  # the received ciphertext is sent as it is
    else:
        assert encode(msg) == data


@by_id
def test_cksum_input_zeroes_cksumlen_and_shortens_length(row: Row) -> None:
    data = raw(row)
    signed, cksum = cksum_input(data)
    without = row.length - row.cksum_len
    assert cksum == data[without:] == decode(data).cksum
    assert signed[:2] == data[:2]
    assert struct.unpack(">H", signed[2:4])[0] == without
    assert signed[4:14] == data[4:14]
    assert signed[14:16] == b"\0\0"
    assert signed[16:] == data[16:without]


@by_id
def test_decode_keeps_the_cksum_coverage(row: Row) -> None:
    # msg.signed is what the crypto layer verifies the Cksum over (RFC 4430 §4); octets after
    # Length are not covered.
    data = raw(row)
    msg = decode(data + b"trailing")
    assert msg.signed == (cksum_input(data)[0] if row.cksum_len else b"")
    assert "signed" not in repr(msg)


def _decrypted(row: Row) -> tuple[Isakmp, ...]:
    inner = decode_inner(plaintexts()[row.id])
    assert all(isinstance(p, Isakmp) for p in inner)
    return inner  # type: ignore[return-value]


_ENCRYPTED = [row for row in ROWS if row.encrypt_length is not None]


@pytest.mark.parametrize("row", _ENCRYPTED, ids=lambda row: row.id)
def test_decrypted_content_reencodes_to_kinkd_plaintext(row: Row) -> None:
    plaintext = plaintexts()[row.id]
    assert encode_inner(decode_inner(plaintext)) == plaintext
    # And a whole message built from it carries that plaintext into the sealer.
    msg = dataclasses.replace(decode(raw(row)), encrypted=decode_inner(plaintext))
    sealer = ReplaySealer(msg.ciphertext, msg.cksum)
    assert encode(msg, sealer) == raw(row)
    assert sealer.encrypted == [plaintext]


_SPIS = {  # README: the SPI each SA / Delete payload carries
    "basic/5": "0223b6e6",
    "basic/6": "05833150",
    "basic/14": "09a1728e",
    "basic/15": "0aef87f8",
    "basic/17": "09a1728e",
    "basic/18": "0aef87f8",
    **{f"krberr/{frame}": "05ae9613" for frame in (5, 7, 9, 11, 13)},
}


@pytest.mark.parametrize("row", _ENCRYPTED, ids=lambda row: row.id)
def test_decrypted_quick_mode_payloads(row: Row) -> None:
    (isakmp,) = _decrypted(row)
    assert (isakmp.qm_major, isakmp.qm_minor) == (1, 0)
    spi = bytes.fromhex(_SPIS[row.id])
    if row.type == MessageType.DELETE or row.id == "basic/18":
        assert isakmp.payloads == (DeletePayload(ProtocolId.ESP, (spi,)),)
        return
    sa = isakmp.payloads[0]
    assert isinstance(sa, SaPayload)
    (proposal,) = sa.proposals
    assert (proposal.number, proposal.protocol, proposal.spi) == (1, ProtocolId.ESP, spi)
    (transform,) = proposal.transforms
    assert (transform.number, transform.transform_id) == (1, EspTransform.AES_CBC)
    assert transform.attributes == (
        Attribute(AttributeType.SA_LIFE_TYPE, LifeType.SECONDS, True),
        Attribute(AttributeType.SA_LIFE_DURATION, 600, True),
        Attribute(AttributeType.ENCAPSULATION_MODE, EncapsulationMode.TRANSPORT, True),
        Attribute(AttributeType.KEY_LENGTH, 128, True),
        Attribute(AttributeType.AUTHENTICATION_ALGORITHM, AuthAlgorithm.HMAC_SHA1, True),
    )
    assert lifetimes(transform.attributes) == ((LifeType.SECONDS, 600),)
    if row.type == MessageType.CREATE:  # the optimistic 2-way CREATE: Ni, and no Nr back
        nonce = isakmp.payloads[1]
        assert isinstance(nonce, NoncePayload) and len(nonce.data) == 16
        assert len(isakmp.payloads) == 2
    else:
        assert len(isakmp.payloads) == 1


@by_id
def test_decrypted_messages_obey_section_6(row: Row) -> None:
    msg = decode(raw(row))
    if msg.ciphertext is not None:
        msg = dataclasses.replace(msg, encrypted=decode_inner(plaintexts()[row.id]))
    check_message(msg)
    if msg.type == MessageType.REPLY:
        check_message(msg, request=REQUEST_OF_REPLY[row.id])


def test_retransmitted_creates_carry_the_same_quick_mode_payloads() -> None:
    # README, krberr: each retransmission has a fresh authenticator but the same SPI and Ni.
    creates = [row for row in ROWS if row.scenario == "krberr" and row.type == MessageType.CREATE]
    inners = {encode_inner(_decrypted(row)) for row in creates}
    assert len(inners) == 1
    ap_reqs = {decode(raw(row)).payloads[0] for row in creates}
    assert len(ap_reqs) == len(creates)


def test_a_transparent_sealer_round_trips_a_captured_create() -> None:
    row = ROWS[0]
    msg = dataclasses.replace(decode(raw(row)), encrypted=_decrypted(row), ciphertext=None)
    data = encode(msg, TransparentSealer())
    assert len(data) == row.length - (row.encrypt_length or 0) + 4 + len(plaintexts()[row.id])
    again = decode(data)
    assert again.ciphertext == plaintexts()[row.id]
    assert decode_inner(again.ciphertext) == msg.encrypted
    signed, cksum = cksum_input(data)
    assert cksum == TransparentSealer().checksum(signed)
