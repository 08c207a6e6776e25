"""Hand-made hostile KINK messages fed to a real responder engine (RFC 4430 §3.5, §4, §5.5, §6).

Each is either dropped (counted, no SA action, and no Kerberos call when it does not even
decode, but the stateless ticket check of a command whose header and payload chain are sound)
or answered exactly as the RFC says: a lone KINK_ERROR for what cannot be read at all,
a lone KRB_ERROR for an AP-REQ the responder cannot accept, an authenticated REPLY with a
KINK_ERROR or an ISAKMP Notify for an authenticated command with bad content.
"""

import gc
import os
from collections.abc import Callable

import pytest

from kink.crypto.profiles import profile_for
from kink.crypto.rfc3961 import Key
from kink.crypto.seal import open_message
from kink.engine.events import Status
from kink.wire import (
    ApRep,
    ApReq,
    ErrorPayload,
    Isakmp,
    KinkErrorCode,
    KrbError,
    Message,
    MessageType,
    NotifyPayload,
    PayloadType,
    RawPayload,
    SaPayload,
    decode,
    encode_inner,
)
from kink.wire.ipsec_doi import NotifyType
from tests.robustness.forge import Attack, B, Outcome, patch

pytestmark = pytest.mark.kdc

Forgery = Callable[[Attack], bytes]


def _encrypt_offset(data: bytes) -> int:
    """Where KINK_ENCRYPT starts in a forged command (AP_REQ first, then padding)."""
    ap_req_length = int.from_bytes(data[18:20], "big")
    return (16 + ap_req_length + 3) & ~3


def _isakmp_plaintext(attack: Attack) -> bytes:
    """The captured CREATE's KINK_ENCRYPT plaintext: InnerNextPload+RESERVED2, KINK_ISAKMP
    header at 4, its Quick Mode header at 8, the SA payload at 12, its proposal at 24 (SPI Size
    at 30, the SPI at 32), the transform at 36 and its first attribute at 44."""
    (isakmp,) = attack.inner
    assert isinstance(isakmp, Isakmp) and isinstance(isakmp.payloads[0], SaPayload)
    plaintext = encode_inner(attack.inner)
    assert plaintext[0] == PayloadType.ISAKMP and plaintext[8] == 1  # QM: SA first
    assert plaintext[30] == 4  # SPI Size
    return plaintext


# ----------------------------------------------------------------- what does not decode

UNDECODABLE: dict[str, Forgery] = {
    "empty": lambda a: b"",
    "shorter than the header": lambda a: a.forge()[:15],
    "truncated in half": lambda a: (d := a.forge())[: len(d) // 2],
    "Length beyond the datagram": lambda a: patch(d := a.forge(), 2, "H", len(d) + 4),
    "Length below the header": lambda a: patch(a.forge(), 2, "H", 15),
    "CksumLen beyond Length": lambda a: patch(d := a.forge(), 14, "H", len(d)),
    "CksumLen off the 4-octet grid": lambda a: patch(a.forge(), 14, "H", 13),
    # A Payload Length of 0 would make the chain revisit the same payload forever.
    "payload loop (Payload Length 0)": lambda a: patch(a.forge(), 18, "H", 0),
    "Payload Length 3": lambda a: patch(a.forge(), 18, "H", 3),
    "Payload Length past the end": lambda a: patch(a.forge(), 18, "H", 0xFFFF),
    "KINK_ENCRYPT not last": lambda a: patch(
        d := a.forge(), _encrypt_offset(d), "B", PayloadType.AP_REQ
    ),
    "KINK_ENCRYPT length past the Cksum": lambda a: patch(
        d := a.forge(), _encrypt_offset(d) + 2, "H", len(d)
    ),
    "first payload type points at nothing": lambda a: patch(a.forge(), 12, "B", 99)[:24],
}


@pytest.mark.parametrize("name", list(UNDECODABLE))
def test_undecodable_commands_are_dropped_without_kerberos(attack: Attack, name: str) -> None:
    sas = attack.sas("b")
    out = attack.hit("b", UNDECODABLE[name](attack))
    assert out.counted == {"dropped.undecodable": 1}
    assert out.kerberos == [] and out.sent == [] and out.effects == []
    assert attack.sas("b") == sas


def _lone(out: Outcome) -> Message:
    (datagram,) = out.sent
    msg = decode(datagram)
    assert msg.type == MessageType.REPLY and msg.cksum == b"" and msg.ciphertext is None
    assert len(msg.payloads) == 1
    return msg


@pytest.mark.parametrize(
    ("offset", "value", "code"),
    [(1, 0x20, KinkErrorCode.INVMAJ), (4, 2, KinkErrorCode.INVDOI)],
    ids=["major version 2", "DOI 2"],
)
def test_unsupported_version_or_doi_gets_a_lone_kink_error(
    attack: Attack, offset: int, value: int, code: KinkErrorCode
) -> None:
    """§4.2.8: "a KINK error with KINK_INVMAJ" (INVDOI), unauthenticated, echoing the XID."""
    data = patch(attack.forge(xid=0x1234), offset, "B" if offset == 1 else "I", value)
    out = attack.hit("b", data)
    assert out.kerberos == [] and out.effects == []
    assert out.counted == {"dropped.undecodable": 1}
    reply = _lone(out)
    assert reply.xid == 0x1234 and reply.payloads == (ErrorPayload(code),)


def test_a_command_without_ap_req_gets_a_lone_protoerr(attack: Attack) -> None:
    """§6: every command carries an AP-REQ; without one nothing can be authenticated."""
    out = attack.hit("b", attack.forge(outer=(), xid=77))
    assert out.kerberos == [] and out.effects == []
    reply = _lone(out)
    assert reply.xid == 77 and reply.payloads == (ErrorPayload(KinkErrorCode.PROTOERR),)


# -------------------------------------------------------------------- bad checksums


def _no_cksum(data: bytes) -> bytes:
    cksum_len = int.from_bytes(data[14:16], "big")
    return patch(patch(data, 2, "H", len(data) - cksum_len), 14, "H", 0)[: len(data) - cksum_len]


def test_a_command_with_a_zero_length_cksum_is_dropped(attack: Attack) -> None:
    """§4: a command under a session key carries a Cksum; without one it is dropped."""
    sas = attack.sas("b")
    out = attack.hit("b", _no_cksum(attack.forge()))
    assert out.counted == {"dropped.bad-cksum": 1}
    assert out.kerberos == ["forged_ticket", "accept"] and out.sent == [] and out.effects == []
    assert attack.sas("b") == sas


def test_a_cksum_from_another_session_key_is_dropped(attack: Attack) -> None:
    """§4: "If verification fails, the message MUST be dropped"."""
    other = Key(attack.key.enctype, os.urandom(profile_for(attack.key.enctype).key_size))
    sas = attack.sas("b")
    out = attack.hit("b", attack.forge(key=other))
    assert out.counted == {"dropped.bad-cksum": 1}
    assert out.kerberos == ["forged_ticket", "accept"] and out.sent == [] and out.effects == []
    assert attack.sas("b") == sas


# -------------------------------------------------------------- AP-REQs b cannot accept


def _lone_krb_error(attack: Attack, out: Outcome) -> None:
    """§3.5: a lone (unauthenticated) KINK_KRB_ERROR, and nothing done."""
    assert out.effects == []
    assert "make_krb_error" in out.kerberos and "make_ap_rep" not in out.kerberos
    (payload,) = _lone(out).payloads
    assert isinstance(payload, KrbError)
    view = attack.a.port.parse_krb_error(payload.krb_error)
    assert view.code != 0


def test_an_ap_req_for_another_service(
    attack: Attack, kerberos_host: Callable[..., object]
) -> None:
    c = kerberos_host("c")
    principal = c.principal  # type: ignore[attr-defined]
    attack.a.credentials.get_ticket(principal)
    ticket = attack.a.port.ticket_for(principal)
    raw, _ = attack.a.port.make_ap_req(ticket)
    data = attack.forge(outer=(ApReq(1, raw),), key=attack.a.port.ticket_key(ticket))
    out = attack.hit("b", data)
    assert [k for k in out.counted if k.startswith("dropped.krb5:")] != []
    _lone_krb_error(attack, out)


def test_a_forged_ticket_leaves_nothing_for_the_garbage_collector(attack: Attack) -> None:
    """A real ticket for b with one octet of its enc-part flipped (what bench_flood floods b
    with): one Kerberos ticket check, refused before the message is decoded or accept() asked,
    no SA or ticket action, and nothing of the refusal
    left for the garbage collector: its error, traceback and the failed rd_req's auth context
    go once it is handled, not at the next collection (issue 9: a collection per few hundred
    forged CREATEs, and libkrb5 memory held until then)."""
    der = attack.a.credentials.get_ticket(attack.b.principal).der
    raw = attack.ap_req().ap_req
    at = raw.index(der) + len(der) - 4  # the enc-part cipher ends the Ticket: its HMAC
    data = attack.forge(outer=(ApReq(1, raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :]),))
    gc.collect()
    gc.disable()
    try:
        out = attack.hit("b", data)
        left = gc.collect()
    finally:
        gc.enable()
    assert out.kerberos == ["forged_ticket", "make_krb_error"] and out.effects == []
    assert out.counted["dropped.krb5:KRB_AP_ERR_BAD_INTEGRITY"] == 1
    _lone_krb_error(attack, out)
    assert left == 0


@pytest.mark.parametrize("cut", [1, 2, 0.5, -1], ids=["1 octet", "2 octets", "half", "all but 1"])
def test_truncated_asn1_in_the_ap_req(attack: Attack, cut: float) -> None:
    raw = attack.ap_req().ap_req
    size = int(len(raw) * cut) if isinstance(cut, float) else cut % len(raw)
    out = attack.hit("b", attack.forge(outer=(ApReq(1, raw[:size]),)))
    _lone_krb_error(attack, out)


# ----------------------------------------------- authenticated commands with bad content


def _authenticated(attack: Attack, out: Outcome) -> tuple:  # type: ignore[type-arg]
    """The inner payloads of the one authenticated REPLY b sent; nothing else done."""
    assert out.effects == [], "an SA or ticket action for a malformed command"
    assert out.counted == {"dropped.malformed-command": 1}
    (datagram,) = out.sent
    msg = decode(datagram)
    assert msg.type == MessageType.REPLY and isinstance(msg.payloads[0], ApRep)
    opened = open_message(msg, attack.key)
    assert opened.encrypted is not None
    return opened.encrypted


def _notify(attack: Attack, out: Outcome) -> NotifyPayload:
    (isakmp,) = _authenticated(attack, out)
    assert isinstance(isakmp, Isakmp)
    (notify,) = isakmp.payloads
    assert isinstance(notify, NotifyPayload)
    return notify


def test_kink_isakmp_longer_than_the_plaintext(attack: Attack) -> None:
    """A nested size overflow: KINK_ISAKMP claims more than KINK_ENCRYPT holds (§4.2.6)."""
    plaintext = _isakmp_plaintext(attack)
    out = attack.hit("b", attack.forge(plaintext=patch(plaintext, 6, "H", len(plaintext))))
    assert _authenticated(attack, out) == (ErrorPayload(KinkErrorCode.PROTOERR),)


def test_sa_payload_longer_than_kink_isakmp(attack: Attack) -> None:
    """A nested size overflow one level down: inside KINK_ISAKMP, answered by §5.5's Notify."""
    plaintext = _isakmp_plaintext(attack)
    out = attack.hit("b", attack.forge(plaintext=patch(plaintext, 14, "H", 0xFFF0)))
    assert _notify(attack, out).notify_type == NotifyType.PAYLOAD_MALFORMED


def test_a_huge_attribute_length(attack: Attack) -> None:
    """An SA attribute in the Type/Length/Value form claiming 65535 octets (RFC 2408 §3.3)."""
    plaintext = _isakmp_plaintext(attack)
    tlv = patch(plaintext, 44, "H", int.from_bytes(plaintext[44:46], "big") & 0x7FFF)
    out = attack.hit("b", attack.forge(plaintext=patch(tlv, 46, "H", 0xFFFF)))
    assert _notify(attack, out).notify_type == NotifyType.PAYLOAD_MALFORMED


def test_an_unknown_isakmp_payload_type(attack: Attack) -> None:
    """§5.5: INVALID-PAYLOAD-TYPE, with the type as Notification Data."""
    plaintext = _isakmp_plaintext(attack)
    out = attack.hit("b", attack.forge(plaintext=patch(plaintext, 8, "B", 200)))
    notify = _notify(attack, out)
    assert notify.notify_type == NotifyType.INVALID_PAYLOAD_TYPE and notify.data == bytes([200])


@pytest.mark.parametrize("where", ["inner", "outer"])
def test_an_unknown_kink_payload_type(attack: Attack, where: str) -> None:
    """KINK has no critical bit: a payload type it does not know breaks the §6 rules of the
    command, an authenticated KINK_PROTOERR (§4.2.8)."""
    unknown = RawPayload(120, b"\x01\x02\x03\x04")
    if where == "inner":
        data = attack.forge(inner=(*attack.inner, unknown))
    else:
        data = attack.forge(outer=(attack.ap_req(), unknown))
    out = attack.hit("b", data)
    assert _authenticated(attack, out) == (ErrorPayload(KinkErrorCode.PROTOERR),)


def test_kink_encrypt_inside_kink_encrypt(attack: Attack) -> None:
    plaintext = _isakmp_plaintext(attack)
    out = attack.hit("b", attack.forge(plaintext=patch(plaintext, 0, "B", PayloadType.ENCRYPT)))
    assert _authenticated(attack, out) == (ErrorPayload(KinkErrorCode.PROTOERR),)


def test_b_still_answers_after_the_whole_corpus(attack: Attack) -> None:
    for forgery in UNDECODABLE.values():
        attack.hit("b", forgery(attack))
    attack.hit("b", _no_cksum(attack.forge()))
    sas = attack.sas("b")
    attack.host("a").engine.request(Status("b"), attack.world.now)
    attack.world.settle()
    last = attack.world.delivered[-1]
    assert last.src == B and decode(last.data).type == MessageType.REPLY
    assert attack.watched["a"].calls[-1] == "verify_ap_rep"  # a authenticated b's REPLY
    assert attack.sas("b") == sas
