"""A CREATE whose AP-REQ carries a forged ticket (a real ticket for b, one octet of its
enc-part flipped: what bench_flood floods b with), through the real engine and Krb5Port:
refused by the Acceptor's ticket check without krb5_rd_req (kink.krb5.ticket_check, issue 9),
and dropped, counted and answered exactly as rd_req's refusal was (RFC 4430 §3.5: a lone
KRB_ERROR, rate-limited)."""

from typing import Any

import pytest

from kink.krb5.errors import KRB_AP_ERR_BAD_INTEGRITY
from kink.wire import ApReq, KrbError, MessageType, decode
from tests.robustness.forge import Attack


def _rd_req_calls(attack: Attack, monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """A list that grows by one at each krb5_rd_req of b's Acceptor (its RawContext)."""
    raw = attack.b.context.raw
    calls: list[None] = []
    rd_req = raw.rd_req

    def counted(*args: Any) -> Any:
        calls.append(None)
        return rd_req(*args)

    monkeypatch.setattr(raw, "rd_req", counted)
    return calls


def test_a_forged_ticket_is_refused_as_before_without_rd_req(
    attack: Attack, monkeypatch: pytest.MonkeyPatch
) -> None:
    der = attack.a.credentials.get_ticket(attack.b.principal).der
    raw = attack.ap_req().ap_req
    at = raw.index(der) + len(der) - 4  # the enc-part cipher ends the Ticket: its HMAC
    forged = attack.forge(outer=(ApReq(1, raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :]),))
    rd_req = _rd_req_calls(attack, monkeypatch)
    sas = attack.sas("b")
    out = attack.hit("b", forged)
    assert rd_req == []
    assert out.kerberos == ["accept", "make_krb_error"] and out.effects == []
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
    assert len(rd_req) == 1
    assert "make_ap_rep" in out.kerberos and not any(k.startswith("dropped") for k in out.counted)
