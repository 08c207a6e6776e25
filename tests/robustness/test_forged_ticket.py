"""A CREATE whose AP-REQ carries a forged ticket (a real ticket for b, one octet of its
enc-part flipped: what bench_flood floods b with), through the real engine and Krb5Port:
refused by the Acceptor's ticket check without krb5_rd_req (kink.krb5.ticket_check, issue 9),
and dropped, counted and answered exactly as rd_req's refusal was (RFC 4430 §3.5: a lone
KRB_ERROR, rate-limited)."""

from typing import Any

import pytest

from kink.engine.kerberos import KerberosError
from kink.krb5.errors import KRB_AP_ERR_BAD_INTEGRITY
from kink.wire import (
    ApReq,
    ErrorPayload,
    Isakmp,
    KinkErrorCode,
    KrbError,
    Message,
    MessageType,
    TgtReq,
    decode,
)
from tests.robustness.forge import Attack


def _calls(attack: Attack, monkeypatch: pytest.MonkeyPatch, name: str = "rd_req") -> list[None]:
    """A list that grows by one at each call of b's Acceptor's RawContext method `name`
    (krb5_rd_req; check_ticket: the ticket check's one decryption)."""
    raw = attack.b.context.raw
    calls: list[None] = []
    method = getattr(raw, name)

    def counted(*args: Any) -> Any:
        calls.append(None)
        return method(*args)

    monkeypatch.setattr(raw, name, counted)
    return calls


def _forged_ap_req(attack: Attack) -> ApReq:
    """A fresh AP-REQ of a's ticket for b with one octet of the ticket's enc-part flipped."""
    der = attack.a.credentials.get_ticket(attack.b.principal).der
    raw = attack.ap_req().ap_req
    at = raw.index(der) + len(der) - 4  # the enc-part cipher ends the Ticket: its HMAC
    return ApReq(1, raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :])


def _undecoded(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """A list that grows by each datagram the engine decodes."""
    decoded: list[bytes] = []

    def watched(data: bytes) -> Message:
        decoded.append(data)
        return decode(data)

    monkeypatch.setattr("kink.engine.engine.decode", watched)
    return decoded


def test_a_forged_ticket_is_refused_as_before_without_rd_req_or_decoding(
    attack: Attack, monkeypatch: pytest.MonkeyPatch
) -> None:
    forged = attack.forge(outer=(_forged_ap_req(attack),))
    rd_req = _calls(attack, monkeypatch)
    decoded = _undecoded(monkeypatch)
    sas = attack.sas("b")
    out = attack.hit("b", forged)
    assert rd_req == [] and decoded == []
    assert out.kerberos == ["forged_ticket", "make_krb_error"] and out.effects == []
    assert out.counted == {"dropped.krb5:KRB_AP_ERR_BAD_INTEGRITY": 1}
    (datagram,) = out.sent
    reply = decode(datagram)
    assert reply.type == MessageType.REPLY and reply.xid == 0x7E57
    (payload,) = reply.payloads
    assert isinstance(payload, KrbError)
    assert attack.a.port.parse_krb_error(payload.krb_error).code == KRB_AP_ERR_BAD_INTEGRITY
    assert attack.sas("b") == sas
    # The same command with the ticket intact is accepted, through rd_req.
    out = attack.hit("b", attack.forge(xid=0x7E58))
    assert len(rd_req) == 1 and len(decoded) == 1
    assert out.kerberos[:2] == ["forged_ticket", "accept"] and "make_ap_rep" in out.kerberos
    assert not any(k.startswith("dropped") for k in out.counted)


def test_a_valid_ticket_is_decrypted_once(attack: Attack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Checked before decoding, then accepted: the check remembers that the ticket decrypted,
    # so accept() does not decrypt it again (kink.krb5.ticket_check), and rd_req decrypts it
    # once more, as it must. A new ticket: the one of the setup's CREATE is remembered.
    a = attack.a
    a.credentials.forget_ticket(attack.b.principal)
    a.credentials.get_ticket(attack.b.principal)
    ticket = a.port.ticket_for(attack.b.principal)
    raw_ap_req, _ = a.port.make_ap_req(ticket)
    epoch = attack.host("a").engine.epoch
    data = attack.forge(
        outer=(ApReq(epoch, raw_ap_req),), key=a.port.ticket_key(ticket), xid=0x7E59
    )
    checks = _calls(attack, monkeypatch, "check_ticket")
    rd_req = _calls(attack, monkeypatch)
    out = attack.hit("b", data)
    assert out.kerberos[:2] == ["forged_ticket", "accept"] and "make_ap_rep" in out.kerberos
    assert len(checks) == 1 and len(rd_req) == 1


def _with_bad_tgt_req(attack: Attack, ap_req: ApReq) -> bytes:
    """A CREATE whose cleartext KINK_TGT_REQ names no principal (invalid UTF-8): decode()
    refuses it (RFC 4430 §4.2.4), a fault inside a payload that the ticket check does not read."""
    data = attack.forge(outer=(ap_req, TgtReq("x@R")))
    at = data.index(b"x@R")
    return data[:at] + b"\xff\xfe\xfd" + data[at + 3 :]


def test_a_forged_ticket_in_a_message_with_a_bad_payload_is_refused_as_forged(
    attack: Attack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ticket is checked first, as rd_req would check it whatever the payloads hold: the
    # forged ticket is what is refused (counted, a rate-limited lone KRB_ERROR as for any
    # forged ticket), and the message is never decoded. Before, it was dropped as undecodable.
    decoded = _undecoded(monkeypatch)
    out = attack.hit("b", _with_bad_tgt_req(attack, _forged_ap_req(attack)))
    assert decoded == [] and out.effects == []
    assert out.kerberos == ["forged_ticket", "make_krb_error"]
    assert out.counted == {"dropped.krb5:KRB_AP_ERR_BAD_INTEGRITY": 1}
    (datagram,) = out.sent
    assert isinstance(decode(datagram).payloads[0], KrbError)


def test_a_genuine_ticket_in_a_corrupted_copy_is_not_accepted_before_decoding(
    attack: Attack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A corrupted copy of a genuine command passes the ticket check but is not accepted: that
    # would put its authenticator into the replay cache (RFC 4120 §3.2.3), and the genuine
    # command would then be refused as a replay.
    ap_req = attack.ap_req()
    out = attack.hit("b", _with_bad_tgt_req(attack, ap_req))
    assert out.kerberos == ["forged_ticket"] and out.sent == [] and out.effects == []
    assert out.counted == {"dropped.undecodable": 1}
    out = attack.hit("b", attack.forge(outer=(ap_req,), xid=0x7E5A))
    assert "make_ap_rep" in out.kerberos and not any(k.startswith("dropped") for k in out.counted)


@pytest.mark.parametrize("fault", ["encrypt-not-last", "quick-mode-version"])
def test_a_forged_ticket_in_a_message_decode_faults_is_reported_as_before(
    attack: Attack, fault: str
) -> None:
    # Faults in the header or the outer payload chain, and a Quick Mode version (answered with
    # KINK_BADQMVERS, RFC 4430 §4.2.8), are found without reading the ticket: decode() reports
    # them as before, and Kerberos is not asked.
    forged = _forged_ap_req(attack)
    if fault == "encrypt-not-last":
        data = attack.forge(outer=(forged,))
        at = (24 + len(forged.ap_req) + 3) & ~3  # KINK_ENCRYPT's Next Payload
        data = data[:at] + b"\x01" + data[at + 1 :]
    else:
        isakmp = next(p for p in attack.inner if isinstance(p, Isakmp))
        data = attack.forge(outer=(forged, isakmp))
        at = ((24 + len(forged.ap_req) + 3) & ~3) + 5  # KINK_ISAKMP's QMMaj|QMMin
        assert data[at] == 0x10
        data = data[:at] + b"\x20" + data[at + 1 :]
    out = attack.hit("b", data)
    assert out.kerberos == [] and out.effects == []
    assert out.counted == {"dropped.undecodable": 1}
    if fault == "encrypt-not-last":
        assert out.sent == []
    else:
        (datagram,) = out.sent
        assert decode(datagram).payloads == (ErrorPayload(KinkErrorCode.BADQMVERS),)


def test_the_forged_tickets_error_is_the_one_accept_raises(attack: Attack) -> None:
    # forged_ticket makes, before decoding, the KerberosError accept() raises for the same
    # AP-REQ: the engine answers and counts both alike (RFC 4430 §3.5).
    port = attack.b.port
    ap_req = _forged_ap_req(attack).ap_req
    early = port.forged_ticket(ap_req, 0.0)
    with pytest.raises(KerberosError) as info:
        port.accept(ap_req)
    assert early is not None and early.accepted is None and info.value.accepted is None
    assert early.args == info.value.args == (31, "KRB_AP_ERR_BAD_INTEGRITY")
    assert (early.code, early.name) == (info.value.code, info.value.name)
    assert early.user_to_user == info.value.user_to_user
    assert port.forged_ticket(attack.ap_req().ap_req, 0.0) is None
