"""Attacks on a running engine (RFC 4430 §3.5, §10): replayed commands and unauthenticated
replies from a third party.

A replayed CREATE, DELETE or STATUS carries an authenticator the responder's krb5 replay cache
has seen: it is rejected there, from the original source address or another peer's, with no SA
change and no answer (§10: a replay gets no help). A REPLY without AP_REP is unauthenticated
(§3.5): whoever sends it, it tears down no SA, forgets no ticket, moves no clock, and the
transaction it names goes on to its real answer.
"""

import pytest

from kink.engine.events import DeleteSa, SaDeleted, SendDatagram, Status, Terminate
from kink.engine.messages import lone_reply
from kink.wire import ErrorPayload, KinkErrorCode, KrbError, MessageType, TgtRep, decode
from tests.engine.harness import check_consistent
from tests.robustness.forge import A, Attack, B, C

pytestmark = pytest.mark.kdc

KRB_AP_ERR_TKT_EXPIRED = 32
KRB_AP_ERR_SKEW = 37
REPEAT = "dropped.krb5:KRB_AP_ERR_REPEAT"


def _captured(attack: Attack, kind: MessageType) -> bytes:
    return next(
        f.data
        for f in reversed(attack.world.delivered)
        if f.src == A and decode(f.data).type == kind
    )


def _replayed(attack: Attack, data: bytes, source: str) -> None:
    sas = attack.sas("b")
    children = set(attack.host("b").engine.sadb.children)
    out = attack.hit("b", data, source)
    assert out.counted == {REPEAT: 1}
    assert out.kerberos == ["forged_ticket", "accept"] and out.sent == [] and out.effects == []
    assert attack.sas("b") == sas and set(attack.host("b").engine.sadb.children) == children


@pytest.mark.parametrize("source", [A, C], ids=["same source", "another peer's address"])
def test_a_replayed_create(attack: Attack, source: str) -> None:
    _replayed(attack, attack.create, source)


@pytest.mark.parametrize("source", [A, C], ids=["same source", "another peer's address"])
def test_a_replayed_status(attack: Attack, source: str) -> None:
    attack.host("a").engine.request(Status("b"), attack.world.now)
    attack.world.settle()
    _replayed(attack, _captured(attack, MessageType.STATUS), source)


@pytest.mark.parametrize("source", [A, C], ids=["same source", "another peer's address"])
def test_a_replayed_delete_after_a_new_pair(attack: Attack, source: str) -> None:
    """The DELETE of an old pair, replayed once a new pair is up, leaves the new pair alone."""
    from kink.engine.events import Initiate

    attack.host("a").engine.request(Terminate("b"), attack.world.now)
    attack.world.advance(60)
    delete = _captured(attack, MessageType.DELETE)
    assert check_consistent(attack.world) == 0
    attack.host("a").engine.request(Initiate("b"), attack.world.now)
    attack.world.settle()
    assert check_consistent(attack.world) == 2
    _replayed(attack, delete, source)
    attack.world.advance(60)
    assert check_consistent(attack.world) == 2


# ------------------------------------------------------------ unauthenticated replies


def _spoofs(attack: Attack, xid: int) -> dict[str, bytes]:
    b = attack.b.port
    return {
        "KINK_ERROR": lone_reply(xid, ErrorPayload(KinkErrorCode.PROTOERR)),
        "KINK_ERROR INVMAJ": lone_reply(xid, ErrorPayload(KinkErrorCode.INVMAJ)),
        "KRB_ERROR SKEW": lone_reply(xid, KrbError(b.make_krb_error(KRB_AP_ERR_SKEW, None))),
        "KRB_ERROR TKT_EXPIRED": lone_reply(
            xid, KrbError(b.make_krb_error(KRB_AP_ERR_TKT_EXPIRED, None))
        ),
        "KRB_ERROR garbage": lone_reply(xid, KrbError(b"\x7e\x03\x02\x01\x00")),
        "KINK_TGT_REP": lone_reply(xid, TgtRep(attack.b.credentials.our_tgt())),
    }


SPOOFS = [
    "KINK_ERROR",
    "KINK_ERROR INVMAJ",
    "KRB_ERROR SKEW",
    "KRB_ERROR TKT_EXPIRED",
    "KRB_ERROR garbage",
    "KINK_TGT_REP",
]
HARMFUL = {"adopt_clock_skew", "forget_ticket"}


def _harmless(attack: Attack, data: bytes, source: str) -> None:
    a = attack.host("a")
    clock = attack.a.context.time_offset()
    sas, children = attack.sas("a"), set(a.engine.sadb.children)
    out = attack.hit("a", data, source)
    assert set(out.kerberos) <= {"parse_krb_error"}, out.kerberos
    assert not HARMFUL & set(out.kerberos)
    assert out.sent == [] and out.effects == []
    assert [k for k in out.counted if k.startswith("dropped.")] and len(out.counted) == 1
    assert attack.sas("a") == sas and set(a.engine.sadb.children) == children
    assert attack.a.context.time_offset() == clock


@pytest.mark.parametrize("spoof", SPOOFS)
def test_a_spoofed_lone_reply_to_a_pending_status(attack: Attack, spoof: str) -> None:
    """Sent from b's address with the XID of a's STATUS in flight: dropped, and the STATUS
    still completes with b's real REPLY."""
    a = attack.host("a")
    a.engine.request(Status("b"), attack.world.now)
    attack.world.drain()
    (status,) = attack.world.flight
    xid = decode(status.data).xid
    _harmless(attack, _spoofs(attack, xid)[spoof], B)
    attack.world.settle()
    assert decode(attack.world.delivered[-1].data).type == MessageType.REPLY
    peer = a.engine.peers["b"]
    assert xid not in peer.transactions  # answered, not failed nor pending
    assert not [n for n in a.notices if isinstance(n, SaDeleted)]
    assert check_consistent(attack.world) == 2


@pytest.mark.parametrize("source", [B, C, "198.51.100.7"], ids=["b", "c", "unknown"])
@pytest.mark.parametrize("spoof", SPOOFS)
def test_a_spoofed_lone_reply_out_of_the_blue(attack: Attack, spoof: str, source: str) -> None:
    _harmless(attack, _spoofs(attack, 0x5EED)[spoof], source)
    assert check_consistent(attack.world) == 2


def test_spoofed_replies_do_not_stop_a_delete(attack: Attack) -> None:
    """Between a's DELETE and b's REPLY, every spoof: the pair still goes on both sides."""
    a = attack.host("a")
    a.engine.request(Terminate("b"), attack.world.now)
    attack.world.drain()
    (delete,) = attack.world.flight
    for spoof in _spoofs(attack, decode(delete.data).xid).values():
        out = attack.hit("a", spoof, B)
        assert not [x for x in out.actions if isinstance(x, DeleteSa | SendDatagram)]
    attack.world.advance(60)
    assert check_consistent(attack.world) == 0
    assert [n.reason for n in a.notices if isinstance(n, SaDeleted)] != []
