"""KINK message protection against the racoon2 captures: every Cksum verifies with the ticket
session key, every KINK_ENCRYPT decrypts, and the ESP keys the kernel got come out of the
decrypted SA and Nonce payloads (RFC 4430 §4, §4.2.7, §7)."""

import dataclasses

import pytest

from kink.crypto.algorithms import TransformParams, derive_sa_keys
from kink.crypto.errors import CryptoError
from kink.crypto.rfc3961 import Key
from kink.crypto.seal import open_message, seal, verify_cksum
from kink.wire import (
    ApReq,
    Isakmp,
    Message,
    MessageType,
    NoncePayload,
    SaPayload,
    decode,
)
from kink.wire.ipsec_doi import AttributeType, ProtocolId
from tests.wire.captures import REQUEST_OF_REPLY, ROWS, Row, raw

# Ticket session keys (etype 18) from the captures' README.md.
SESSION_KEYS = {
    "basic": "6f6e273c227eaace58145a81907c0bf8e0dcc0623079893dc4ee0d916c81e346",
    "krberr": "062464bb0eca39c618d6e5d148e7f0a1ea2e47e23dd30b23f77b03863ef4f377",
}

# SPI -> (enc key, auth key) as `ip xfrm state` showed them (basic/sa-after-recreate.txt).
KERNEL_KEYS = {
    0x0223B6E6: ("298728cc69b5ccc265dc1103de793c8e", "ee80527bb3ceed206203e98a5023b09cd853e1c0"),
    0x05833150: ("29a9c4440929d64a1fdedc7654a64387", "fc00867b757cd1cb9e8a7a979e394c24f15bd213"),
    0x09A1728E: ("ab6872cd823e915dea9dfcaa769dafb6", "ffb01f63a7d466df62b007874b3133ee83c06a1a"),
    0x0AEF87F8: ("730c136d307ef45c625fd5f1c5406891", "82a35ee70230b78f79cf585cf4da7f9e441b4e8e"),
}

AUTHENTICATED = [row for row in ROWS if row.cksum_len]


def key_of(row: Row) -> Key:
    return Key(18, bytes.fromhex(SESSION_KEYS[row.scenario]))


def opened(row: Row) -> Message:
    data = raw(row)
    return open_message(decode(data), key_of(row), request=REQUEST_OF_REPLY.get(row.id))


@pytest.mark.parametrize("row", AUTHENTICATED, ids=lambda r: r.id)
def test_every_authenticated_message_opens(row: Row) -> None:
    msg = opened(row)
    if row.encrypt_length is not None:
        assert msg.encrypted is not None
        assert isinstance(msg.encrypted[0], Isakmp)


@pytest.mark.parametrize("row", AUTHENTICATED, ids=lambda r: r.id)
def test_any_flipped_bit_fails_the_cksum(row: Row) -> None:
    data = bytearray(raw(row))
    data[40] ^= 0x01  # inside the first payload
    with pytest.raises(CryptoError):
        verify_cksum(bytes(data), key_of(row))


def test_wrong_session_key_fails() -> None:
    row = AUTHENTICATED[0]
    other = Key(18, bytes.fromhex(SESSION_KEYS["krberr"]))
    with pytest.raises(CryptoError):
        verify_cksum(raw(row), other)


def test_unauthenticated_reply_has_no_cksum() -> None:
    row = next(r for r in ROWS if r.cksum_len == 0)
    with pytest.raises(CryptoError, match="no Cksum"):
        verify_cksum(raw(row), Key(18, bytes.fromhex(SESSION_KEYS[row.scenario])))


def _sa_and_nonce(msg: Message) -> tuple[SaPayload, bytes | None]:
    assert msg.encrypted is not None
    isakmp = msg.encrypted[0]
    assert isinstance(isakmp, Isakmp)
    sa = next(p for p in isakmp.payloads if isinstance(p, SaPayload))
    nonce = next((p.data for p in isakmp.payloads if isinstance(p, NoncePayload)), None)
    return sa, nonce


@pytest.mark.parametrize("create_frame", [5, 14])
def test_keymat_reproduces_the_kernel_keys(create_frame: int) -> None:
    """Each side's SA payload names its inbound SPI; KEYMAT for it uses Ni (and no Nr: the
    REPLY of the optimistic exchange carries none), encryption key first (RFC 2409 §5.5)."""
    create = next(r for r in ROWS if r.scenario == "basic" and r.frame == create_frame)
    reply = next(r for r in ROWS if r.scenario == "basic" and r.frame == create_frame + 1)
    sa_i, ni = _sa_and_nonce(opened(create))
    sa_r, nr = _sa_and_nonce(opened(reply))
    assert ni is not None and nr is None
    for sa in (sa_i, sa_r):
        (proposal,) = sa.proposals
        (transform,) = proposal.transforms
        attrs = {a.type: a.as_int() for a in transform.attributes}
        params = TransformParams(
            transform.transform_id,
            attrs.get(AttributeType.AUTHENTICATION_ALGORITHM),
            attrs.get(AttributeType.KEY_LENGTH),
        )
        keys = derive_sa_keys(key_of(create), ProtocolId.ESP, proposal.spi, ni, nr, None, params)
        enc, auth = KERNEL_KEYS[int.from_bytes(proposal.spi, "big")]
        assert keys.enc_key.hex() == enc
        assert keys.auth_key.hex() == auth


def test_seal_then_open_round_trip() -> None:
    row = next(r for r in ROWS if r.type == MessageType.CREATE)
    original = opened(row)
    key = key_of(row)
    data = seal(dataclasses.replace(original, ciphertext=None), key)
    again = open_message(decode(data), key)
    assert again.encrypted == original.encrypted
    assert isinstance(again.payloads[0], ApReq)
    assert again.payloads == original.payloads
