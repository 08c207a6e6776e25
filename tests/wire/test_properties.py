"""Properties over generated messages (encode and decode are inverse) and over random and
mutated octets (nothing but DecodeError ever leaves decode, decode_inner, cksum_input or
check_message, and whatever decodes re-encodes to something that decodes the same)."""

import contextlib
import dataclasses
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kink.wire import (
    ApRep,
    ApReq,
    Attribute,
    DecodeError,
    DeletePayload,
    ErrorPayload,
    IdPayload,
    Isakmp,
    IsakmpPayload,
    KePayload,
    KinkPayload,
    KrbError,
    Message,
    MessageType,
    NoncePayload,
    NotifyPayload,
    Proposal,
    RawIsakmpPayload,
    RawPayload,
    SaPayload,
    TgtRep,
    TgtReq,
    Transform,
    check_message,
    cksum_input,
    decode,
    decode_inner,
    decode_qm,
    encode,
    encode_inner,
    encode_qm,
    format_principal_name,
    peek_ap_req,
)
from tests.wire.captures import all_raw, plaintexts
from tests.wire.sealers import ReplaySealer, TransparentSealer

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
blob = st.binary(max_size=24)

attributes = st.one_of(
    st.builds(Attribute, st.integers(0, 0x7FFF), u16, st.just(True)),
    st.builds(Attribute, st.integers(0, 0x7FFF), blob, st.just(False)),
)
transforms = st.builds(Transform, u8, u8, st.lists(attributes, max_size=4).map(tuple))
proposals = st.builds(
    Proposal, u8, u8, st.binary(max_size=8), st.lists(transforms, max_size=3).map(tuple)
)
spi_lists = st.integers(1, 16).flatmap(
    lambda size: st.lists(st.binary(min_size=size, max_size=size), max_size=3).map(tuple)
)
_MODELLED_ISAKMP = {1, 4, 5, 10, 11, 12}
isakmp_payloads: st.SearchStrategy[IsakmpPayload] = st.one_of(
    st.builds(
        SaPayload,
        st.lists(proposals, max_size=3).map(tuple),
        st.just(1),
        u32.filter(lambda situation: not situation & 6),  # no labelled-domain fields
    ),
    st.builds(KePayload, blob),
    st.builds(IdPayload, u8, u8, u16, blob),
    st.builds(NoncePayload, blob),
    st.builds(NotifyPayload, u16, u8, st.binary(max_size=16), blob, u32),
    st.builds(DeletePayload, u8, spi_lists, u32),
    st.builds(
        RawIsakmpPayload, st.integers(1, 255).filter(lambda t: t not in _MODELLED_ISAKMP), blob
    ),
)
principal_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
principals = st.builds(
    format_principal_name,
    st.lists(principal_text, min_size=1, max_size=3).filter(lambda c: c != [""]),
    principal_text.filter(bool),
)
kink_payloads: st.SearchStrategy[KinkPayload] = st.one_of(
    st.builds(ApReq, u32, blob),
    st.builds(ApRep, u32, blob),
    st.builds(KrbError, blob),
    st.builds(TgtReq, principals),
    st.builds(TgtRep, blob),
    st.builds(Isakmp, st.lists(isakmp_payloads, max_size=4).map(tuple)),
    st.builds(ErrorPayload, u32),
    st.builds(RawPayload, st.integers(9, 255), blob),
)
payload_tuples = st.lists(kink_payloads, max_size=4).map(tuple)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    encrypted = draw(st.none() | payload_tuples)
    ciphertext = draw(st.none() | st.binary(max_size=40)) if encrypted is None else None
    return Message(
        draw(u8), draw(u32), draw(payload_tuples), encrypted, ciphertext, draw(st.booleans())
    )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.integers(1, 20))
def test_decode_inverts_encode_with_a_sealer(msg: Message, cksum_len: int) -> None:
    sealer = TransparentSealer(cksum_len)
    data = encode(msg, sealer)
    got = decode(data)
    assert (got.type, got.xid, got.ackreq, got.payloads) == (
        msg.type,
        msg.xid,
        msg.ackreq,
        msg.payloads,
    )
    if msg.encrypted is not None:
        assert got.ciphertext == encode_inner(msg.encrypted)
        assert decode_inner(got.ciphertext) == msg.encrypted
    else:
        assert got.ciphertext == msg.ciphertext
    signed, cksum = cksum_input(data)
    assert got.cksum == cksum == sealer.checksum(signed)
    assert (len(data) - cksum_len) % 4 == 0  # the Cksum starts aligned (§4.1)
    assert encode(got, ReplaySealer(got.ciphertext, got.cksum)) == data


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_decode_inverts_encode_without_a_sealer(msg: Message) -> None:
    msg = dataclasses.replace(msg, encrypted=None)
    data = encode(msg)
    assert decode(data) == msg
    assert encode(decode(data)) == data
    assert cksum_input(data) == (data, b"")


@given(st.lists(isakmp_payloads, max_size=6))
def test_quick_mode_chains_round_trip(payloads: list[IsakmpPayload]) -> None:
    first = payloads[0].payload_type if payloads else 0
    assert decode_qm(encode_qm(payloads), first) == tuple(payloads)


# ------------------------------------------------------------------------------ fuzzing

_MESSAGE_SEEDS = [
    *all_raw(),
    encode(
        Message(MessageType.REPLY, 9, (ApRep(1, b"rep"),), (ErrorPayload(1), Isakmp(()))),
        TransparentSealer(),
    ),
    encode(Message(MessageType.GETTGT, 3, (TgtReq("kink/a@R"),))),
    encode(Message(MessageType.STATUS, 4, (ApReq(1, b"req"), KrbError(b"e"), TgtRep(b"t")))),
]
_PLAINTEXT_SEEDS = [
    *plaintexts().values(),
    encode_inner((ErrorPayload(2), KrbError(b"x"), TgtRep(b"tgt"))),
    encode_inner(
        (
            Isakmp(
                (
                    NotifyPayload(14, 3, b"\1\2\3\4", b"data"),
                    IdPayload(1, 17, 910, b"\xc6\x33\x64\x01"),
                    KePayload(b"g" * 20),
                    DeletePayload(3, (b"\1\2\3\4", b"\5\6\7\x08")),
                    RawIsakmpPayload(13, b"vid"),
                )
            ),
        )
    ),
]
_INTERESTING = (0, 1, 2, 3, 4, 5, 7, 8, 12, 16, 0x7F, 0x80, 0xFE, 0xFF)
_REQUESTS = (None, MessageType.CREATE, MessageType.DELETE, MessageType.STATUS, MessageType.GETTGT)
_RUNS, _MUTATIONS_PER_RUN = 200, 500  # 100,000 inputs


def _mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        how = rng.randrange(7)
        if how == 0 and buf:  # bit flips
            for _ in range(rng.randint(1, 4)):
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif how == 1 and buf:  # interesting octets
            buf[rng.randrange(len(buf))] = rng.choice(_INTERESTING)
        elif how == 2:  # truncation
            del buf[rng.randint(0, len(buf)) :]
        elif how == 3:  # splice with another seed
            other = rng.choice(seeds)
            buf = buf[: rng.randint(0, len(buf))] + other[rng.randint(0, len(other)) :]
        elif how == 4 and len(buf) >= 2:  # a 16-bit length field, as the codec would read it
            at = (
                rng.randrange(len(buf) - 1) & ~1
                if rng.random() < 0.7
                else rng.randrange(len(buf) - 1)
            )
            value = rng.choice(
                (0, 1, 3, 4, 5, 7, 8, 11, 12, len(buf) - at, len(buf), len(buf) + 1, 0xFFFF)
            )
            if rng.random() < 0.3:
                value = rng.randrange(0x10000)
            buf[at : at + 2] = (value & 0xFFFF).to_bytes(2, "big")
        elif how == 5:  # insertion
            at = rng.randint(0, len(buf))
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
        elif how == 6 and buf:  # deletion
            at = rng.randrange(len(buf))
            del buf[at : at + rng.randint(1, 8)]
    return bytes(buf)


def _random_message(rng: random.Random) -> bytes:
    """Random octets behind a header that passes the first checks, so they reach the payloads."""
    body = rng.randbytes(rng.randint(0, 120))
    head = bytes([rng.randint(0, 7), 0x10]) + (16 + len(body)).to_bytes(2, "big")
    return head + b"\0\0\0\1" + rng.randbytes(4) + bytes([rng.randint(0, 9), 0, 0, 0]) + body


def _same_but_reserved(original: bytes, again: bytes, *, header: bool = False) -> bool:
    """Whether again, the re-encoding of what was decoded from original, has the same octets
    except where it wrote zeros (RESERVED fields and padding, which a receiver ignores) and, in
    a KINK header, in the RESRVED nibble and RESERVED2 bits: then no octet was misread."""
    if len(again) > len(original):
        return False
    for i, (old, new) in enumerate(zip(original, again, strict=False)):
        if new == old or new == 0:
            continue
        if header and i == 1 and new == old & 0xF0:  # MjVer | RESRVED (§4)
            continue
        if header and i == 13 and new == old & 0x80:  # A | RESERVED2 (§4)
            continue
        return False
    return True


def _feed_message(rng: random.Random, data: bytes) -> None:
    try:
        msg = decode(data)
    except DecodeError:
        return
    # What decode() reads, peek_ap_req finds without decoding (issue 9).
    assert peek_ap_req(data) == next((p.ap_req for p in msg.payloads if type(p) is ApReq), None)
    signed, cksum = cksum_input(data)
    assert cksum == msg.cksum
    assert msg.signed == (signed if cksum else b"")
    again = encode(msg, ReplaySealer(msg.ciphertext, msg.cksum) if msg.cksum else None)
    assert decode(again) == msg
    length = int.from_bytes(data[2:4], "big")
    # Only the padding after the last payload may go, and only when no Cksum follows.
    assert len(again) == length or (not msg.cksum and length - 3 <= len(again) < length)
    # The Length field itself shrinks with that padding.
    assert _same_but_reserved(data[:2] + again[2:4] + data[4:], again, header=True)
    with contextlib.suppress(DecodeError):
        check_message(msg, rng.choice(_REQUESTS))


def _feed_plaintext(rng: random.Random, data: bytes) -> None:
    try:
        inner = decode_inner(data)
    except DecodeError:
        return
    again = encode_inner(inner)
    assert decode_inner(again) == inner
    assert _same_but_reserved(data, again)
    outer = (rng.choice((ApReq(1, b"q"), ApRep(1, b"p"))),)
    msg = Message(rng.randint(0, 7), 1, outer, inner, cksum=b"c")
    with contextlib.suppress(DecodeError):
        check_message(msg, rng.choice(_REQUESTS))


@settings(max_examples=_RUNS, deadline=None)
@given(st.integers(0, 2**64))
def test_only_decode_error_escapes(seed: int) -> None:
    rng = random.Random(seed)  # the report's seed replays the whole run
    for _ in range(_MUTATIONS_PER_RUN):
        if rng.random() < 0.6:
            if rng.random() < 0.15:
                data = _random_message(rng)
            else:
                data = _mutate(rng, rng.choice(_MESSAGE_SEEDS), _MESSAGE_SEEDS)
            _feed_message(rng, data)
        else:
            if rng.random() < 0.15:
                data = bytes([rng.randint(0, 9), 0, 0, 0]) + rng.randbytes(rng.randint(0, 80))
            else:
                data = _mutate(rng, rng.choice(_PLAINTEXT_SEEDS), _PLAINTEXT_SEEDS)
            _feed_plaintext(rng, data)
