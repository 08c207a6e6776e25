"""Hand-built messages: every KINK payload type, every ISAKMP payload type KINK uses, attribute
forms, bundles, ID types, PrincName quoting, alignment, and what encode() refuses."""

import copy
import dataclasses

import pytest

from kink.wire import (
    ApRep,
    ApReq,
    Attribute,
    DecodeError,
    DeletePayload,
    EncodeError,
    ErrorPayload,
    IdPayload,
    Isakmp,
    IsakmpPayload,
    IsakmpPayloadType,
    KePayload,
    KinkErrorCode,
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
    isakmp,
    lifetimes,
    parse_principal_name,
)
from kink.wire.ipsec_doi import (
    AhTransform,
    AttributeType,
    IdType,
    LifeType,
    NotifyType,
    ProtocolId,
)
from tests.support.hashseed import unpickled_from_another_seed
from tests.wire.sealers import ReplaySealer, TransparentSealer

SPI = bytes.fromhex("c0ffee01")


def _esp(number: int = 1, *attributes: Attribute) -> Proposal:
    return Proposal(number, ProtocolId.ESP, SPI, (Transform(1, 12, attributes),))


def _roundtrip(msg: Message) -> Message:
    """decode(encode(msg)) through a transparent sealer, with the inner payloads restored."""
    sealer = TransparentSealer()
    data = encode(msg, sealer)
    got = decode(data)
    assert got.cksum == sealer.checksum(cksum_input(data)[0])
    if msg.encrypted is None:
        return dataclasses.replace(got, cksum=b"")
    assert got.ciphertext is not None
    inner = decode_inner(got.ciphertext)
    return dataclasses.replace(got, encrypted=inner, ciphertext=None, cksum=b"")


def test_known_answer_lone_kink_error() -> None:
    msg = Message(MessageType.REPLY, 0x01020304, (ErrorPayload(KinkErrorCode.PROTOERR),))
    data = encode(msg)
    assert data.hex() == "".join(
        ("03100018", "00000001", "01020304", "08000000", "00000008", "00000001")
    )
    assert decode(data) == msg
    assert isinstance(decode(data).payloads[0], ErrorPayload)


def test_known_answer_ackreq_and_checksum_layout() -> None:
    msg = Message(MessageType.REPLY, 7, (ApRep(0x7FFFFFFF, b"\x6f\x01\x02"),), ackreq=True)
    sealer = ReplaySealer(None, b"\xaa" * 12)
    data = encode(msg, sealer)
    # header | AP_REP(4 + 4 + 3 = 11) | 1 octet of padding | Cksum (§4, §4.1)
    assert (
        data.hex()
        == "".join(
            ("03100028", "00000001", "00000007", "0280000c", "0000000b", "7fffffff", "6f0102", "00")
        )
        + "aa" * 12
    )
    assert sealer.checksummed == [bytes.fromhex("0310001c000000010000000702800000") + data[16:28]]
    assert decode(data) == Message(
        MessageType.REPLY, 7, msg.payloads, ackreq=True, cksum=b"\xaa" * 12
    )


KINK_PAYLOADS: list[KinkPayload] = [
    ApReq(1795760774, b"\x6e\x82\x02\xb6"),
    ApRep(0, b""),
    KrbError(b"\x7e\x81\x85"),
    TgtReq("kink/host-b.example.test@EXAMPLE.TEST"),
    TgtRep(b"\x61\x82\x01\x00"),
    Isakmp((NotifyPayload(NotifyType.INITIAL_CONTACT, ProtocolId.ESP, SPI, b""),)),
    Isakmp(()),
    ErrorPayload(KinkErrorCode.U2UDENIED),
    ErrorPayload(9999),
    RawPayload(200, b"private use"),
]


@pytest.mark.parametrize("payload", KINK_PAYLOADS, ids=repr)
def test_every_kink_payload_type_round_trips_outside_and_inside_encrypt(
    payload: KinkPayload,
) -> None:
    for outer, inner in (((payload,), None), ((ApReq(1, b"x"),), (payload,))):
        msg = Message(MessageType.CREATE, 42, outer, inner)
        assert _roundtrip(msg) == msg
    assert decode(encode(Message(MessageType.REPLY, 1, (payload,)))).payloads == (payload,)


def test_several_payloads_are_each_aligned_and_unpadded_at_the_end() -> None:
    payloads = (KrbError(b"12345"), RawPayload(9, b"ab"), KrbError(b"c"))
    data = encode(Message(MessageType.REPLY, 1, payloads))
    # 16 | 4+5 +3 pad | 4+2 +2 pad | 4+1 (no padding: no Cksum follows, as kinkd does)
    assert len(data) == 16 + 12 + 8 + 5
    assert data[16 + 9 : 16 + 12] == b"\0\0\0"
    assert decode(data).payloads == payloads
    # A sender that pads the end and counts it in Length is accepted too.
    padded = data[:2] + (len(data) + 3).to_bytes(2, "big") + data[4:] + b"\0\0\0"
    assert decode(padded).payloads == payloads


def test_inner_plaintext_layout_and_padding_after_it() -> None:
    inner = (ErrorPayload(KinkErrorCode.INTERR), KrbError(b"xyz"))
    plaintext = encode_inner(inner)
    # InnerNextPload=KINK_ERROR, RESERVED2 | KINK_ERROR(8) | KINK_KRB_ERROR(4 + 3), unpadded
    assert plaintext.hex() == "".join(("08000000", "03000008", "00000005", "00000007", "78797a"))
    # The Kerberos encryption may leave garbage after the last payload (§4.2.7).
    assert decode_inner(plaintext + b"\x07\xff\xff\xff garbage") == inner
    assert decode_inner(b"\0\0\0\0" + b"ignored") == ()
    assert encode_inner(()) == b"\0\0\0\0"


def test_trailing_octets_after_length_are_ignored() -> None:
    msg = Message(MessageType.ACK, 5, (ApReq(3, b"req"),))
    data = encode(msg, TransparentSealer())
    assert decode(data + b"trailing junk") == decode(data)
    assert cksum_input(data + b"junk") == cksum_input(data)


# ------------------------------------------------------------------------- ISAKMP payloads

ISAKMP_PAYLOADS: list[IsakmpPayload] = [
    SaPayload((_esp(),)),
    SaPayload(()),  # structurally valid, rejected by the rules
    KePayload(bytes(range(256)) * 1),
    IdPayload(IdType.IPV4_ADDR, 17, 500, bytes([192, 0, 2, 1])),
    NoncePayload(b"N" * 16),
    NotifyPayload(NotifyType.INVALID_PAYLOAD_TYPE, ProtocolId.ESP, b"", b"\x04"),
    NotifyPayload(NotifyType.RESPONDER_LIFETIME, ProtocolId.ESP, SPI, b"\x80\x01\x00\x01", 1),
    DeletePayload(ProtocolId.ESP, (SPI, bytes(4))),
    DeletePayload(ProtocolId.IPCOMP, (b"\x12\x34",)),
    DeletePayload(ProtocolId.ESP, ()),
    RawIsakmpPayload(8, b"HASH is not used by KINK"),
    RawIsakmpPayload(13, b"vendor id"),
    RawIsakmpPayload(130, b""),
]


@pytest.mark.parametrize("payload", ISAKMP_PAYLOADS, ids=repr)
def test_every_isakmp_payload_type_round_trips(payload: IsakmpPayload) -> None:
    chain = encode_qm([payload, payload])
    assert decode_qm(chain, payload.payload_type) == (payload, payload)
    msg = Message(MessageType.REPLY, 1, (ApRep(1, b""),), (Isakmp((payload,)),))
    assert _roundtrip(msg) == msg


def test_quick_mode_chain_known_answer() -> None:
    chain = encode_qm([NoncePayload(b"12345678"), DeletePayload(ProtocolId.AH, (SPI,))])
    nonce = ("0c00000c", b"12345678".hex())
    delete = ("00000010", "00000001", "02040001", "c0ffee01")  # DOI, AH, SPI size 4, 1 SPI
    assert chain.hex() == "".join(nonce + delete)
    assert decode_qm(b"pad" + chain, 10, 3) == decode_qm(chain, 10)


def test_tv_and_tlv_attributes_round_trip_in_place() -> None:
    attributes = (
        Attribute(AttributeType.SA_LIFE_TYPE, LifeType.SECONDS, True),
        Attribute(AttributeType.SA_LIFE_DURATION, bytes.fromhex("00015180"), False),
        Attribute(AttributeType.COMPRESS_PRIVATE_ALGORITHM, b"\x00\x00\x0c\x01vendor", False),
        Attribute(AttributeType.KEY_LENGTH, 256, True),
        Attribute(0x7FFF, 0xFFFF, True),
        Attribute(16000, b"", False),
    )
    sa = SaPayload((_esp(1, *attributes),))
    assert decode_qm(encode_qm([sa]), sa.payload_type) == (sa,)


def test_rfc2407_section_4_5_2_example_two_lifetimes() -> None:
    # The four-entry attribute list of RFC 2407 §4.5.2: 24 hours or 100 MB.
    words = ("80010001", "00020004", "00015180", "80010002", "00020004", "000186A0")
    transform = bytes.fromhex("00000020 010c0000 " + " ".join(words))
    proposal = bytes.fromhex("0000002c 01030401") + SPI + transform
    sa = bytes.fromhex("00000038 00000001 00000001") + proposal
    (payload,) = decode_qm(sa, 1)
    assert isinstance(payload, SaPayload)
    attrs = payload.proposals[0].transforms[0].attributes
    assert [a.tv for a in attrs] == [True, False, True, False]
    assert lifetimes(attrs) == ((LifeType.SECONDS, 86400), (LifeType.KILOBYTES, 100000))
    assert encode_qm([payload]) == sa


def test_attribute_of_int_picks_the_shortest_standard_form() -> None:
    life = AttributeType.SA_LIFE_DURATION
    assert Attribute.of_int(life, 600) == Attribute(life, 600, True)
    assert Attribute.of_int(life, 0xFFFF) == Attribute(life, 0xFFFF, True)
    assert Attribute.of_int(life, 86400) == Attribute(life, b"\x00\x01\x51\x80", False)
    assert Attribute.of_int(life, 1 << 40) == Attribute(life, (1 << 40).to_bytes(8, "big"), False)
    for value in (0, 600, 86400, 1 << 40):
        assert Attribute.of_int(life, value).as_int() == value


def test_lifetime_pairs_and_their_errors() -> None:
    kind, duration = AttributeType.SA_LIFE_TYPE, AttributeType.SA_LIFE_DURATION
    assert lifetimes(()) == ()
    assert lifetimes(
        (
            Attribute(kind, LifeType.KILOBYTES, True),
            Attribute(AttributeType.KEY_LENGTH, 128, True),
            Attribute(duration, b"\x00\x00\x00\x00\x00\x98\x96\x80", False),
        )
    ) == ((LifeType.KILOBYTES, 10_000_000),)
    bad = [
        ((Attribute(duration, 5, True),), NotifyType.PAYLOAD_MALFORMED),
        ((Attribute(kind, 1, True),), NotifyType.PAYLOAD_MALFORMED),
        ((Attribute(kind, 1, True), Attribute(kind, 2, True)), NotifyType.PAYLOAD_MALFORMED),
        ((Attribute(kind, 1, True), Attribute(duration, b"", False)), NotifyType.PAYLOAD_MALFORMED),
        (
            (Attribute(kind, 1, True), Attribute(duration, b"\1" * 9, False)),
            NotifyType.PAYLOAD_MALFORMED,
        ),
        (
            (Attribute(kind, 1, True), Attribute(duration, 60, True)) * 2,
            NotifyType.ATTRIBUTES_NOT_SUPPORTED,
        ),
    ]
    for attributes, notify in bad:
        with pytest.raises(DecodeError) as info:
            lifetimes(attributes)
        assert info.value.notify == notify


def test_bundles_and_alternatives() -> None:
    # (AH AND ESP) OR ESP, RFC 2408 §4.2 example 2; transforms offered in preference order.
    ah = Proposal(1, ProtocolId.AH, SPI, (Transform(1, AhTransform.SHA),))
    esp = Proposal(
        1,
        ProtocolId.ESP,
        bytes(4),
        (
            Transform(1, 12, (Attribute(6, 256, True),)),
            Transform(2, 12, (Attribute(6, 128, True),)),
        ),
    )
    alone = Proposal(2, ProtocolId.ESP, b"\1\2\3\4", (Transform(1, 3),))
    sa = SaPayload((ah, esp, alone))
    create = Message(
        MessageType.CREATE, 9, (ApReq(1, b""),), (Isakmp((sa, NoncePayload(b"n" * 32))),)
    )
    assert _roundtrip(create) == create
    check_message(Message(create.type, 9, create.payloads, create.encrypted, cksum=b"c"))


_ADDRESSES = {
    IdType.IPV4_ADDR: bytes([192, 0, 2, 1]),
    IdType.IPV4_ADDR_SUBNET: bytes([192, 0, 2, 0, 255, 255, 255, 0]),
    IdType.IPV6_ADDR: bytes.fromhex("20010db8000000000000000000000001"),
    IdType.IPV6_ADDR_SUBNET: bytes.fromhex("20010db8" + "00" * 12 + "ffffffff" + "00" * 12),
    IdType.IPV4_ADDR_RANGE: bytes([192, 0, 2, 1, 192, 0, 2, 9]),
    IdType.IPV6_ADDR_RANGE: bytes.fromhex("20010db8" + "00" * 12 + "20010db8" + "ff" * 12),
}


@pytest.mark.parametrize("id_type", sorted(_ADDRESSES), ids=lambda t: IdType(t).name)
def test_every_rfc4430_section_5_3_id_type(id_type: IdType) -> None:
    ids = (
        IdPayload(id_type, 6, 22, _ADDRESSES[id_type]),  # IDci: TCP port 22
        IdPayload(id_type, 0, 0, _ADDRESSES[id_type]),  # IDcr: any protocol and port
    )
    isakmp = Isakmp((SaPayload((_esp(),)), NoncePayload(b"n" * 16), *ids))
    create = Message(MessageType.CREATE, 1, (ApReq(1, b""),), (isakmp,), cksum=b"c")
    got = _roundtrip(create)
    assert got.encrypted == (isakmp,)
    check_message(Message(create.type, 1, create.payloads, got.encrypted, cksum=b"c"))


# ---------------------------------------------------------------------------- PrincName


@pytest.mark.parametrize(
    ("components", "realm", "text"),
    [
        (("kink", "host-b.example.test"), "EXAMPLE.TEST", "kink/host-b.example.test@EXAMPLE.TEST"),
        (("a@b", "c/d", "e\\f"), "R@/\\", "a\\@b/c\\/d/e\\\\f@R\\@\\/\\\\"),
        (("nul\0bs\btab\tnl\n",), "R", "nul\\0bs\\btab\\tnl\\n@R"),
        (("", "x"), "R", "/x@R"),
        (("ünï",), "RÉALM", "ünï@RÉALM"),
    ],
)
def test_principal_names_quote_as_rfc1964(
    components: tuple[str, ...], realm: str, text: str
) -> None:
    assert format_principal_name(components, realm) == text
    assert parse_principal_name(text) == (components, realm)
    payload = TgtReq(text)
    assert decode(encode(Message(MessageType.GETTGT, 1, (payload,)))).payloads == (payload,)


@pytest.mark.parametrize(
    "text",
    ["noatsign", "a@", "@R", "a@R@S", "a@R/x", "a\\x@R", "a\\", "tab\there@R", "a@R\\"],
)
def test_malformed_principal_names(text: str) -> None:
    with pytest.raises(ValueError):
        parse_principal_name(text)
    with pytest.raises(EncodeError):
        encode(Message(MessageType.GETTGT, 1, (TgtReq(text),)))
    raw = encode(Message(MessageType.GETTGT, 1, (TgtRep(text.encode()),)))
    data = raw[:12] + bytes([4]) + raw[13:]  # the same octets as a TGT_REQ
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert info.value.offset == 20


def test_principal_name_must_be_utf8() -> None:
    raw = encode(Message(MessageType.GETTGT, 1, (TgtRep(b"\xff@R"),)))
    with pytest.raises(DecodeError) as info:
        decode(raw[:12] + bytes([4]) + raw[13:])
    assert "PrincName" in info.value.reason


def test_format_principal_name_needs_a_component_and_a_realm() -> None:
    with pytest.raises(ValueError):
        format_principal_name((), "R")
    with pytest.raises(ValueError):
        format_principal_name(("a",), "")


# ------------------------------------------------------------------------ encode refusals


@pytest.mark.parametrize(
    ("msg", "sealer"),
    [
        (Message(MessageType.CREATE, 1 << 32, ()), None),
        (Message(256, 1, ()), None),
        (Message(MessageType.CREATE, 1, (), mjver=16), None),
        (Message(MessageType.CREATE, 1, (ApReq(1 << 32, b""),)), None),
        (Message(MessageType.CREATE, 1, (ApReq(-1, b""),)), None),
        (Message(MessageType.CREATE, 1, (KrbError(bytes(65532)),)), None),
        (Message(MessageType.CREATE, 1, (KrbError(bytes(65000)), KrbError(bytes(1000)))), None),
        (Message(MessageType.CREATE, 1, (KrbError(bytes(65512)),)), TransparentSealer(12)),
        (Message(MessageType.CREATE, 1, (), (KrbError(b""),)), None),
        (Message(MessageType.CREATE, 1, (), ciphertext=bytes(65532)), None),
        (Message(MessageType.CREATE, 1, (RawPayload(7, b""),)), None),
        (Message(MessageType.CREATE, 1, (RawPayload(0, b""),)), None),
        (Message(MessageType.CREATE, 1, (RawPayload(3, b""),)), None),
        (Message(MessageType.CREATE, 1, (RawPayload(6, b""),)), None),  # KINK_ISAKMP
        (Message(MessageType.CREATE, 1, (RawPayload(1, b""),)), None),  # KINK_AP_REQ
        (Message(MessageType.CREATE, 1, (RawPayload(256, b""),)), None),
        (Message(MessageType.CREATE, 1, (ErrorPayload(1 << 32),)), None),
        (Message(MessageType.CREATE, 1, (Isakmp((), 16, 0),)), None),
        (Message(MessageType.CREATE, 1, (Isakmp((), 1, 16),)), None),
        (Message(MessageType.CREATE, 1, (Isakmp((RawIsakmpPayload(1, b""),)),)), None),
        (Message(MessageType.CREATE, 1, (Isakmp((RawIsakmpPayload(0, b""),)),)), None),
        (Message(MessageType.CREATE, 1, (Isakmp((RawIsakmpPayload(4, b""),)),)), None),  # KE
        (Message(MessageType.CREATE, 1, (Isakmp((RawIsakmpPayload(10, b""),)),)), None),  # Ni
        (Message(MessageType.CREATE, 1, (Isakmp((KePayload(bytes(65532)),)),)), None),
        (Message(MessageType.CREATE, 1, (Isakmp((DeletePayload(3, (SPI, b"12")),)),)), None),
        (Message(MessageType.CREATE, 1, (Isakmp((DeletePayload(3, (bytes(256),)),)),)), None),
        (Message(MessageType.CREATE, 1, (Isakmp((IdPayload(1, 6, 65536, b""),)),)), None),
        (Message(MessageType.CREATE, 1, (Isakmp((SaPayload((_esp(256),)),)),)), None),
        (
            Message(
                MessageType.CREATE, 1, (Isakmp((SaPayload((_esp(1, Attribute(1, b"", True)),)),)),)
            ),
            None,
        ),
        (
            Message(
                MessageType.CREATE, 1, (Isakmp((SaPayload((_esp(1, Attribute(1, 5, False)),)),)),)
            ),
            None,
        ),
        (
            Message(
                MessageType.CREATE,
                1,
                (Isakmp((SaPayload((_esp(1, Attribute(1, 65536, True)),)),)),),
            ),
            None,
        ),
        (
            Message(
                MessageType.CREATE,
                1,
                (Isakmp((SaPayload((_esp(1, Attribute(0x8001, 1, True)),)),)),),
            ),
            None,
        ),
        (
            Message(
                MessageType.CREATE,
                1,
                (
                    Isakmp(
                        (
                            SaPayload(
                                (Proposal(1, 3, SPI, tuple(Transform(i, 12) for i in range(256))),)
                            ),
                        )
                    ),
                ),
            ),
            None,
        ),
    ],
)
def test_encode_refuses_what_the_wire_cannot_carry(
    msg: Message, sealer: TransparentSealer | None
) -> None:
    with pytest.raises(EncodeError):
        encode(msg, sealer)


def test_encode_refuses_a_checksum_of_the_wrong_length() -> None:
    class Liar(TransparentSealer):
        def checksum_length(self) -> int:
            return 16

    with pytest.raises(EncodeError):
        encode(Message(MessageType.ACK, 1, (ApReq(1, b""),)), Liar())


def test_encrypted_content_wins_over_received_ciphertext() -> None:
    msg = Message(MessageType.CREATE, 1, (ApReq(1, b""),), (ErrorPayload(1),), b"old")
    assert decode(encode(msg, TransparentSealer())).ciphertext == encode_inner(msg.encrypted or ())


def test_buffers_other_than_bytes_are_accepted() -> None:
    msg = Message(MessageType.STATUS, 2, (ApReq(1, b"req"),), (Isakmp(()),))
    data = encode(msg, TransparentSealer())
    for view in (bytearray(data), memoryview(data)):
        got = decode(view)  # type: ignore[arg-type]
        assert got == decode(data) and type(got.payloads[0].ap_req) is bytes  # type: ignore[union-attr]
        assert cksum_input(view) == cksum_input(data)  # type: ignore[arg-type]
        assert got.ciphertext is not None
        assert decode_inner(memoryview(got.ciphertext)) == msg.encrypted  # type: ignore[arg-type]


def test_known_values_come_back_as_enums() -> None:
    msg = Message(6, 1, (ErrorPayload(5), Isakmp((RawIsakmpPayload(13, b"v"),))))
    got = decode(encode(msg))
    assert got.type is MessageType.STATUS
    error, isakmp = got.payloads
    assert isinstance(error, ErrorPayload) and error.code is KinkErrorCode.INTERR
    assert isinstance(isakmp, Isakmp) and isakmp.payloads[0].payload_type is IsakmpPayloadType.VID
    unknown = decode(encode(Message(99, 1, (ErrorPayload(4),))))
    assert type(unknown.type) is int and type(unknown.payloads[0].code) is int  # type: ignore[union-attr]


def test_decoded_transforms_are_shared_and_the_cache_is_bounded() -> None:
    # kink.wire.isakmp keeps decoded transforms by their octets (they recur message after
    # message); the cache must stay bounded whatever arrives and never hold a refused one.
    sa = SaPayload((_esp(1, Attribute(AttributeType.KEY_LENGTH, 128, True)),))
    chain = encode_qm([sa])
    (first,) = decode_qm(chain, sa.payload_type)
    (again,) = decode_qm(bytes(chain), sa.payload_type)
    assert isinstance(first, SaPayload) and isinstance(again, SaPayload)
    assert first == again == sa
    assert first.proposals[0].transforms[0] is again.proposals[0].transforms[0]
    for length in range(isakmp.TRANSFORM_CACHE_SIZE + 10):
        other = SaPayload((_esp(1, Attribute(AttributeType.KEY_LENGTH, length, True)),))
        assert decode_qm(encode_qm([other]), other.payload_type) == (other,)
        assert len(isakmp._decoded_transforms) <= isakmp.TRANSFORM_CACHE_SIZE
        assert len(isakmp._decoded_runs) <= isakmp.TRANSFORM_CACHE_SIZE
    # A transform whose attribute overruns it is refused every time, never remembered.
    bad = bytearray(encode_qm([sa]))
    bad[-4:-2] = (AttributeType.COMPRESS_PRIVATE_ALGORITHM).to_bytes(2, "big")  # TLV form
    for _ in range(2):
        with pytest.raises(DecodeError):
            decode_qm(bytes(bad), sa.payload_type)
    # A proposal's run of transforms is kept with its count: the same octets announced with
    # another count are refused, before and after the run was decoded and kept.
    miscounted = bytearray(chain)
    miscounted[19] += 1  # # of Transforms: after the SA payload header 4, DOI and Situation 8,
    # the proposal's generic header 4, Proposal #, Protocol-Id and SPI Size
    for _ in range(2):
        with pytest.raises(DecodeError, match="# of Transforms"):
            decode_qm(bytes(miscounted), sa.payload_type)
        assert decode_qm(bytes(chain), sa.payload_type) == (sa,)


def test_a_transform_hashes_by_value_in_every_process() -> None:
    # Transform keeps its hash once computed; a copy made elsewhere (here: pickled in a
    # process with another hash seed) must not bring that hash along.
    attrs = (
        Attribute(AttributeType.SA_LIFE_TYPE, LifeType.SECONDS, True),
        Attribute(AttributeType.SA_LIFE_DURATION, bytes.fromhex("00015180"), False),
    )
    transform = Transform(1, 12, attrs)
    assert hash(transform) == hash(Transform(1, 12, attrs))
    assert {transform: 1}[Transform(1, 12, attrs)] == 1
    script = (
        "import pickle, sys\n"
        "from kink.wire import Attribute, Transform\n"
        "t = Transform(1, 12, (Attribute(1, 1, True), Attribute(2, bytes.fromhex('00015180'), "
        "False)))\n"
        "hash(t)\n"
        "sys.stdout.buffer.write(pickle.dumps(t))\n"
    )
    travelled = unpickled_from_another_seed(script)
    assert travelled == transform
    assert {transform: 1}[travelled] == 1


def test_a_decoded_transform_is_the_one_built_with_its_value() -> None:
    # kink.wire.isakmp.shared: a transform built here (as the engine builds its offer) and the
    # same transform decoded from the wire are one object, so that caches keyed by Transform
    # find it by identity; distinct values stay distinct, and the table stays bounded.
    isakmp._decoded_transforms.clear()  # what other tests decoded was shared in its time
    isakmp._decoded_runs.clear()
    built = isakmp.shared(Transform(1, 12, (Attribute(AttributeType.KEY_LENGTH, 192, True),)))
    sa = SaPayload((Proposal(1, ProtocolId.ESP, SPI, (built,)),))
    (decoded,) = decode_qm(encode_qm([sa]), sa.payload_type)
    assert isinstance(decoded, SaPayload)
    assert decoded.proposals[0].transforms[0] is built
    other = isakmp.shared(Transform(1, 12, (Attribute(AttributeType.KEY_LENGTH, 256, True),)))
    assert other is not built and other != built
    for length in range(isakmp.TRANSFORM_CACHE_SIZE + 10):
        isakmp.shared(Transform(2, 12, (Attribute(AttributeType.KEY_LENGTH, length, True),)))
        assert len(isakmp._shared_transforms) <= isakmp.TRANSFORM_CACHE_SIZE


def test_a_transform_payload_is_encoded_once_and_a_changed_copy_anew() -> None:
    # kink.wire.isakmp keeps a transform's two payloads (Next Payload 3 and 0) on the object:
    # either position comes out right from the kept octets, and replace() encodes its own.
    sa = SaPayload((_esp(1, Attribute(AttributeType.KEY_LENGTH, 128, True)),))
    first = encode_qm([sa])
    assert encode_qm([sa]) == first and decode_qm(first, sa.payload_type) == (sa,)
    kept = sa.proposals[0].transforms[0]
    changed = dataclasses.replace(kept, number=2, transform_id=3)
    for pair in ((kept, changed), (changed, kept)):
        both = SaPayload((Proposal(1, ProtocolId.ESP, SPI, pair),))
        assert decode_qm(encode_qm([both]), both.payload_type) == (both,)
    alone = SaPayload((Proposal(1, ProtocolId.ESP, SPI, (changed,)),))
    assert decode_qm(encode_qm([alone]), alone.payload_type) == (alone,)
    assert "_payloads" not in repr(kept) and copy.copy(kept) == kept
