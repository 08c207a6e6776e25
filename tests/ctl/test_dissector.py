"""kink.ctl.decode.Dissector beyond what the captures show: a 3-way CREATE (Nr, ACKREQ, ACK),
replies that belong to no command, PFS, damaged and hostile messages."""

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kink.crypto.algorithms import TransformParams, derive_sa_keys
from kink.crypto.rfc3961 import KEY_USAGE_KINK_ENCRYPT, Key, encrypt
from kink.crypto.seal import SessionSealer, seal
from kink.ctl.decode import (
    ApReqView,
    CksumStatus,
    Datagram,
    Dissected,
    Dissector,
    EncryptStatus,
    EncryptView,
    Endpoint,
    KrbErrorView,
    Peer,
)
from kink.ctl.render import message_json, message_text
from kink.krb5.acceptor import Acceptor
from kink.krb5.context import Context
from kink.krb5.errors import KRB_AP_ERR_SKEW, KRB_ERR_GENERIC
from kink.wire import (
    ApRep,
    ApReq,
    Attribute,
    Isakmp,
    IsakmpPayload,
    KePayload,
    KrbError,
    Message,
    MessageType,
    NoncePayload,
    Proposal,
    SaPayload,
    Transform,
    encode,
)
from kink.wire.ipsec_doi import AttributeType, AuthAlgorithm, EspTransform, ProtocolId
from tests.ctl.helpers import HOST_B_KEYTAB, INITIATOR, KERNEL_KEYS, RESPONDER, SESSION_KEYS
from tests.wire.captures import datagrams

HOST_B = "kink/host-b.example.test@EXAMPLE.TEST"
A, B, C = Endpoint(INITIATOR, 910), Endpoint(RESPONDER, 910), Endpoint("198.51.100.9", 910)
CREATE = datagrams("basic")[5]  # SA(ESP spi 0223b6e6, AES-CBC-128/HMAC-SHA1) and Ni
NI = bytes.fromhex("45761b9b70239fe0df502a33138c5e10")
NR = bytes(range(16))
TRANSFORM = Transform(
    1,
    EspTransform.AES_CBC,
    (
        Attribute(AttributeType.KEY_LENGTH, 128, True),
        Attribute(AttributeType.AUTHENTICATION_ALGORITHM, AuthAlgorithm.HMAC_SHA1, True),
    ),
)
RESPONDER_SPI = bytes.fromhex("11223344")


def session_key() -> Key:
    return Key(18, bytes.fromhex(SESSION_KEYS["basic"]))


def datagram(frame: int, src: Endpoint, dst: Endpoint, payload: bytes) -> Datagram:
    return Datagram(frame, 1795760800.0 + frame, src, dst, payload)


def reply(*isakmp: IsakmpPayload, xid: int = 0, ackreq: bool = False) -> bytes:
    """A REPLY to the captured CREATE, sealed with its session key."""
    msg = Message(
        MessageType.REPLY,
        xid,
        (ApRep(1795760773, b"\x6f\x03\x02\x01\x00"),),
        encrypted=(Isakmp(isakmp),),
        ackreq=ackreq,
    )
    return seal(msg, session_key())


def chosen_sa() -> SaPayload:
    return SaPayload((Proposal(1, ProtocolId.ESP, RESPONDER_SPI, (TRANSFORM,)),))


def dissect(*items: Datagram) -> list[Dissected]:
    dissector = Dissector([HOST_B_KEYTAB])
    return list(dissector.dissect_all(items))


def test_three_way_create_uses_nr_and_the_ack_gets_the_key() -> None:
    ack = seal(Message(MessageType.ACK, 0, (ApReq(1795760774, b"not a ticket"),)), session_key())
    _, answer, acked = dissect(
        datagram(1, A, B, CREATE),
        datagram(2, B, A, reply(chosen_sa(), NoncePayload(NR), ackreq=True)),
        datagram(3, A, B, ack),
    )
    assert (answer.cksum, answer.key_frame, answer.rules) == (CksumStatus.VERIFIED, 1, "")
    assert answer.answers is not None and answer.answers.type == MessageType.CREATE
    params = TransformParams(EspTransform.AES_CBC, AuthAlgorithm.HMAC_SHA1, 128)
    got = {sa.spi: sa for sa in answer.keymat}
    assert set(got) == {bytes.fromhex("0223b6e6"), RESPONDER_SPI}
    for spi, sa in got.items():
        expected = derive_sa_keys(session_key(), ProtocolId.ESP, spi, NI, NR, None, params)
        assert sa.keys is not None and sa.failure is None
        assert (sa.keys.enc_key, sa.keys.auth_key) == (expected.enc_key, expected.auth_key)
    initiator_sa = got[bytes.fromhex("0223b6e6")]
    assert (initiator_sa.inbound, initiator_sa.src, initiator_sa.dst) == (
        Peer.INITIATOR,
        RESPONDER,
        INITIATOR,
    )
    # With Nr in the REPLY the keys are not those of the optimistic exchange the kernel got.
    assert initiator_sa.keys is not None
    assert initiator_sa.keys.enc_key.hex() != KERNEL_KEYS["0223b6e6"][0]
    assert "ackreq" in message_text(message_json(answer))[0]
    # The ACK's own AP-REQ does not decrypt: the key of its transaction opens it.
    assert (acked.cksum, acked.key_frame, acked.rules) == (CksumStatus.VERIFIED, 1, "")
    view = acked.payloads[0]
    assert isinstance(view, ApReqView) and view.ticket is None and view.failure


@pytest.mark.parametrize(("src", "xid"), [(C, 0), (B, 7)], ids=["other-address", "other-xid"])
def test_a_reply_of_no_known_command_stays_closed(src: Endpoint, xid: int) -> None:
    _, answer = dissect(datagram(1, A, B, CREATE), datagram(2, src, A, reply(chosen_sa(), xid=xid)))
    assert (answer.cksum, answer.answers, answer.keymat, answer.rules) == (
        CksumStatus.NO_KEY,
        None,
        (),
        None,
    )
    encrypted = answer.payloads[-1]
    assert isinstance(encrypted, EncryptView) and encrypted.status == EncryptStatus.NO_KEY


def test_pfs_keymat_is_not_derived() -> None:
    _, answer = dissect(
        datagram(1, A, B, CREATE), datagram(2, B, A, reply(chosen_sa(), KePayload(bytes(128))))
    )
    assert len(answer.keymat) == 2
    for sa in answer.keymat:
        assert sa.keys is None and sa.failure is not None and "g^xy" in sa.failure
    text = "\n".join(message_text(message_json(answer)))
    assert "! not derived: KE payloads (PFS)" in text


def test_bad_cksum_and_undecryptable_content_are_reported() -> None:
    bad_cksum = bytearray(CREATE)
    bad_cksum[-1] ^= 0x01
    (first,) = dissect(datagram(1, A, B, bytes(bad_cksum)))
    assert first.cksum == CksumStatus.BAD and first.cksum_failure
    assert isinstance(first.payloads[-1], EncryptView)
    assert first.payloads[-1].status == EncryptStatus.DECRYPTED  # the ciphertext is intact
    # A correct Cksum over KINK_ENCRYPT content that fails its integrity check.
    create = next(iter(dissect(datagram(1, A, B, CREATE))))
    assert create.message is not None
    tampered = dataclasses.replace(create.message, encrypted=None, ciphertext=bytes(112))
    (second,) = dissect(datagram(1, A, B, encode(tampered, SessionSealer(session_key()))))
    assert second.cksum == CksumStatus.VERIFIED
    encrypted = second.payloads[-1]
    assert isinstance(encrypted, EncryptView) and encrypted.status == EncryptStatus.FAILED
    assert second.rules is None  # the §6 rules need the content


def test_undecodable_inner_payloads_keep_the_plaintext() -> None:
    plaintext = b"\x06\x00\x00\x00" + b"\x00\x00\xff\xff"  # KINK_ISAKMP of 65535 octets
    msg = Message(
        MessageType.REPLY,
        0,
        (ApRep(1795760773, b"\x6f\x00"),),
        ciphertext=encrypt(session_key(), KEY_USAGE_KINK_ENCRYPT, plaintext),
    )
    _, answer = dissect(
        datagram(1, A, B, CREATE), datagram(2, B, A, encode(msg, SessionSealer(session_key())))
    )
    encrypted = answer.payloads[-1]
    assert isinstance(encrypted, EncryptView) and encrypted.status == EncryptStatus.FAILED
    assert encrypted.failure is not None and encrypted.failure.startswith("inner payloads: offset ")
    assert encrypted.plaintext == plaintext
    assert f"plaintext {plaintext.hex()}" in "\n".join(message_text(message_json(answer)))


def test_wipe_zeroes_the_keys_handed_out() -> None:
    dissector = Dissector([HOST_B_KEYTAB])
    results = list(
        dissector.dissect_all([datagram(1, A, B, CREATE), datagram(2, B, A, reply(chosen_sa()))])
    )
    keys = [sa.keys for sa in results[1].keymat]
    assert keys and all(k is not None and any(k.enc_key) for k in keys)
    dissector.wipe()
    assert all(k is not None and not any(k.enc_key) and not any(k.auth_key) for k in keys)


_SHARED: list[Dissector] = []


def _shared() -> Dissector:
    # One krb5 context for all examples; transactions carry over, as in a long capture.
    if not _SHARED:
        _SHARED.append(Dissector([HOST_B_KEYTAB]))
    return _SHARED[0]


_MESSAGES = [datagrams(scenario)[frame] for scenario, frame in (("basic", 5), ("basic", 6))]
_MESSAGES += [datagrams("krberr")[6], reply(chosen_sa(), NoncePayload(NR))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_MESSAGES),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 255)), max_size=4),
    st.integers(0, 2000),
    st.booleans(),
)
def test_hostile_datagrams_never_escape(
    base: bytes, flips: list[tuple[int, int]], cut: int, reverse: bool
) -> None:
    """Damaged messages give statuses and reasons, never an exception, in both forms."""
    data = bytearray(base)
    for position, mask in flips:
        if position < len(data):
            data[position] ^= mask
    src, dst = (B, A) if reverse else (A, B)
    result = _shared().dissect(datagram(1, src, dst, bytes(data[: max(cut, 16)])))
    facts = message_json(result)
    json.dumps(facts)
    assert message_text(facts)[0].startswith("#1  ")


def test_krb_errors_unauthenticated_and_inside_kink_encrypt(tmp_path: Path) -> None:
    """A KRB-ERROR alone (RFC 4430 §3.5, unauthenticated) and one inside KINK_ENCRYPT after an
    AP-REP (authenticated, echoing the client's time); a peer's e-text cannot break lines."""
    acceptor = Acceptor(Context(rcache_dir=tmp_path), HOST_B, keytab=HOST_B_KEYTAB)
    hostile = acceptor.make_krb_error(KRB_ERR_GENERIC, e_text="bad\n\x1b[2J thing")
    skew = acceptor.make_krb_error(KRB_AP_ERR_SKEW, ctime=1795760805, cusec=142779)
    alone = encode(Message(MessageType.REPLY, 0, (KrbError(hostile),)))
    inside = seal(
        Message(
            MessageType.REPLY, 0, (ApRep(1795760773, b"\x6f\x00"),), encrypted=(KrbError(skew),)
        ),
        session_key(),
    )
    _, first, _, second = dissect(
        datagram(1, A, B, CREATE),
        datagram(2, B, A, alone),
        datagram(3, A, B, CREATE),
        datagram(4, B, A, inside),
    )
    assert (first.cksum, first.rules) == (CksumStatus.ABSENT, "")
    (view,) = first.payloads
    assert isinstance(view, KrbErrorView) and view.info is not None
    assert view.info.e_text == "bad\n\x1b[2J thing"
    (line,) = message_text(message_json(first))[1:]
    assert line.startswith(
        '  KINK_KRB_ERROR error-code=60 KRB_ERR_GENERIC e-text="bad\\n\\u001b[2J thing" stime='
    )
    assert line.endswith(f" server={HOST_B}") and "\x1b" not in line
    assert (second.cksum, second.rules) == (CksumStatus.VERIFIED, "")
    encrypted = second.payloads[-1]
    assert isinstance(encrypted, EncryptView) and encrypted.status == EncryptStatus.DECRYPTED
    (inner,) = encrypted.payloads
    assert isinstance(inner, KrbErrorView) and inner.info is not None
    assert (inner.info.error_code, inner.info.ctime, inner.info.cusec) == (37, 1795760805, 142779)
    text = "\n".join(message_text(message_json(second)))
    assert "    KINK_KRB_ERROR error-code=37 KRB_AP_ERR_SKEW " in text
    assert "ctime=2026-11-27T06:26:45.142779Z" in text
