"""Errors (RFC 4430 §3.5, §3.7.1, §4.2.8): authenticated and lone KRB_ERROR, clock skew and
expired tickets, KINK_TGT_REP from a responder that lost its TGT, KINK_ERROR codes."""

from collections.abc import Callable

import pytest

from kink.crypto.rfc3961 import Key
from kink.crypto.seal import open_message
from kink.engine import messages
from kink.engine.config import StartAction, U2u
from kink.engine.events import (
    AllocateSpi,
    Dropped,
    FetchTicket,
    FetchU2uTicket,
    Initiate,
    InstallSa,
    NegotiationFailed,
    PeerEpochChanged,
    SaDeleted,
    Status,
)
from kink.engine.kerberos import AcceptedRequest, KerberosError, Krb5Port
from kink.krb5.context import Context
from kink.krb5.errors import KRB_AP_ERR_SKEW
from kink.wire import (
    ApRep,
    ErrorPayload,
    Isakmp,
    KinkErrorCode,
    KinkPayload,
    KrbError,
    Message,
    MessageType,
    TgtRep,
    decode,
    encode,
)
from tests.engine.conftest import KerberosHostFactory, WorldFactory
from tests.engine.harness import InFlight, World, check_consistent

pytestmark = pytest.mark.kdc

A, B = "192.0.2.1", "192.0.2.2"
ShiftClock = Callable[[Context, int], None]


def _notices(world: World, name: str, kind: type) -> list:  # type: ignore[type-arg]
    return [n for n in world.host(name).notices if isinstance(n, kind)]


def _sent(world: World, src: str, kind: MessageType) -> list[bytes]:
    return [d.data for d in world.delivered if d.src == src and d.data[0] == kind]


def _authenticated(data: bytes) -> bool:
    msg = decode(data)
    return any(isinstance(p, ApRep) for p in msg.payloads) and bool(msg.cksum)


# ------------------------------------------------------------------------- clock skew


def test_authenticated_skew_is_adopted(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory, shift_clock: ShiftClock
) -> None:
    """§3.5: AP_REP + KINK_ENCRYPT{KRB_ERROR} + Cksum: the initiator takes the responder's
    time and starts again."""
    world = make_world()
    context = kerberos_host("a").context
    shift_clock(context, 1000)  # the ticket is still valid there, the authenticator is not
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    assert abs(context.time_offset()[0]) <= 1  # b's clock, adopted
    first_reply = _sent(world, B, MessageType.REPLY)[0]
    assert _authenticated(first_reply)
    assert world.host("b").engine.counters["dropped.krb5:KRB_AP_ERR_SKEW"] == 1
    assert len(_sent(world, A, MessageType.CREATE)) == 2
    assert not _notices(world, "a", NegotiationFailed)


def test_unauthenticated_skew_is_ignored(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory, shift_clock: ShiftClock
) -> None:
    """§3.5: a lone KRB_ERROR, even one echoing our authenticator, never moves the clock."""
    world = make_world()
    a = world.host("a").engine
    context = kerberos_host("a").context
    offset = context.time_offset()
    a.request(Initiate("b"), world.now)
    world.drain()
    xid, txn = next(iter(a.peers["b"].transactions.items()))
    ctime, cusec = a.kerberos.handle_time(txn.handles[0])  # type: ignore[attr-defined]
    liar = kerberos_host("c")
    shift_clock(liar.context, 5000)
    echoing = AcceptedRequest(liar.principal, Key(17, bytes(16)), ctime, cusec, False, None)
    forged = liar.port.make_krb_error(KRB_AP_ERR_SKEW, echoing)
    a.datagram_received(messages.lone_reply(xid, KrbError(forged)), (B, 910), world.now)
    assert context.time_offset() == offset
    assert a.counters["dropped.lone-krb-error:KRB_AP_ERR_SKEW"] == 1
    world.settle()
    assert check_consistent(world) == 2  # the transaction went on as if nothing came


def test_lone_krb_error_when_the_ticket_cannot_be_read(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    """§3.5: without a session key the responder can only answer a lone KRB_ERROR, which the
    initiator only counts: it gives up after its retransmissions."""
    world = make_world(a={"principal": kerberos_host("c").principal})  # a ticket for c, not b
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 0
    replies = _sent(world, B, MessageType.REPLY)
    assert replies and all(not _authenticated(r) for r in replies)
    assert all(isinstance(decode(r).payloads[0], KrbError) for r in replies)
    causes = [d.cause for d in _notices(world, "a", Dropped)]
    assert causes and all(c.startswith("lone-krb-error:") for c in causes)
    assert next(n.reason for n in _notices(world, "a", NegotiationFailed)) == "no reply"


# ---------------------------------------------------------------------- expired ticket


def test_expired_ticket_is_replaced(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory, shift_clock: ShiftClock
) -> None:
    """§9: an authenticated KRB_AP_ERR_TKT_EXPIRED: a new transaction with a new ticket."""
    short = kerberos_host("b", maxlife=60)
    world = make_world(b_host=short)
    old = kerberos_host("a").credentials.get_ticket(short.principal)
    shift_clock(short.context, 1000)  # past the ticket's end and the 300 s skew allowance
    world.host("a").engine.request(Initiate("b"), world.now)
    world.drain()
    world.step()  # the CREATE reaches b, which answers TKT_EXPIRED
    shift_clock(short.context, -1000)
    world.settle()
    assert check_consistent(world) == 2
    assert _authenticated(_sent(world, B, MessageType.REPLY)[0])
    assert world.host("b").engine.counters["dropped.krb5:KRB_AP_ERR_TKT_EXPIRED"] == 1
    assert any(isinstance(x, FetchTicket) for x in world.host("a").kernel.log)
    new = kerberos_host("a").credentials.cached_ticket(short.principal)
    assert new is not None and new.session_key != old.session_key


def test_expired_ticket_retries_are_bounded(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory, shift_clock: ShiftClock
) -> None:
    short = kerberos_host("b", maxlife=60)
    world = make_world(b_host=short)
    shift_clock(short.context, 1000)  # every new ticket looks expired to b
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 0
    assert len(_sent(world, A, MessageType.CREATE)) == 3  # the first and two restarts
    failed = _notices(world, "a", NegotiationFailed)
    assert [n.code for n in failed] == ["KRB_AP_ERR_TKT_EXPIRED"]
    assert world.host("b").engine.counters["dropped.krb5:KRB_AP_ERR_TKT_EXPIRED"] == 3


# ---------------------------------------------------------------------- user-to-user


def test_responder_without_its_old_tgt_hands_out_the_new_one(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    """§3.7.1: b restarts with a new TGT; a's user-to-user ticket no longer decrypts, b
    answers KINK_TGT_REP, a gets a new ticket with it and retries."""
    a_cfg = {"u2u": U2u.REQUIRE, "start_action": StartAction.START}
    world = make_world(a=a_cfg, b={"give_tgt": True}, u2u_b=True)
    ka = kerberos_host("a")
    try:
        world.host("a").engine.request(Initiate("b"), world.now)
        world.settle()
        assert check_consistent(world) == 2
        fresh = kerberos_host("b", ("-allow_svr",), fresh=True)
        restarted = make_world(a=a_cfg, b={"give_tgt": True}, b_host=fresh, epochs=(1000, 3000))
        world.hosts[B] = restarted.host("b")
        world.host("a").engine.request(Status("b"), world.now)
        world.settle()
        tgt_reps = [r for r in _sent(world, B, MessageType.REPLY) if not _authenticated(r)]
        assert isinstance(decode(tgt_reps[0]).payloads[0], TgtRep)
        assert "lone-tgt-rep" in [d.cause for d in _notices(world, "a", Dropped)]
        assert sum(isinstance(x, FetchU2uTicket) for x in world.host("a").kernel.log) == 2
        assert world.host("a").engine.peers["b"].epoch == 3000
        assert _notices(world, "a", PeerEpochChanged)
        assert check_consistent(world) == 2  # the old pair went, a new one is in place
    finally:
        ka.credentials.forget_ticket(kerberos_host("b", ("-allow_svr",)).principal)


def _ap_req_head(options: int) -> bytes:
    """An AP-REQ as far as ap-options (RFC 4120 §5.5.1, usual DER form), the rest filler."""
    body = bytes.fromhex("a003020105a10302010ea207030500") + options.to_bytes(4, "big")
    body += bytes(300)
    sequence = b"\x30\x82" + len(body).to_bytes(2, "big") + body
    return b"\x6e\x82" + len(sequence).to_bytes(2, "big") + sequence


def test_refusal_reads_user_to_user_from_its_ap_req() -> None:
    """KerberosError.user_to_user is read from the refused AP-REQ when asked (§3.7.1): set
    for use-session-key, unset without it, for an AP-REQ that does not parse or none."""
    use_session_key, mutual_required = 0x40000000, 0x20000000
    assert KerberosError(31, "X", ap_req=_ap_req_head(use_session_key)).user_to_user
    assert not KerberosError(31, "X", ap_req=_ap_req_head(mutual_required)).user_to_user
    assert not KerberosError(31, "X", ap_req=b"\x6e\x03\x30\x01\x00").user_to_user
    assert not KerberosError(31, "X").user_to_user


@pytest.mark.parametrize("tgt", ["junk", "another host's TGT"])
def test_forged_tgt_rep_keeps_the_ticket(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory, tgt: str
) -> None:
    """§3.7.1: a forged KINK_TGT_REP must not cost the initiator its working ticket."""
    world = make_world(a={"u2u": U2u.ALLOW})
    kb = kerberos_host("b")
    before = kerberos_host("a").credentials.get_ticket(kb.principal)
    held: list[InFlight] = []

    def fate(item: InFlight) -> str:
        if item.src == B and not held:
            held.append(item)
            return "drop"
        return "deliver"

    world.fate = fate
    a = world.host("a").engine
    a.request(Initiate("b"), world.now)
    world.step()  # the CREATE to b
    world.step()  # b's REPLY, lost
    assert held
    forged = b"\x76\x03\x02\x01\x00" if tgt == "junk" else kerberos_host("c").credentials.our_tgt()
    a.datagram_received(messages.lone_reply(decode(held[0].data).xid, TgtRep(forged)), (B, 910), 0)
    world.settle()
    after = kerberos_host("a").credentials.cached_ticket(kb.principal)
    assert after is not None and after.session_key == before.session_key
    assert check_consistent(world) == 2
    assert "lone-tgt-rep" in [d.cause for d in _notices(world, "a", Dropped)]


def test_u2u_denied_falls_back_to_an_ordinary_ticket(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    """§4.2.8: on KINK_U2UDENIED retry without user-to-user if not tried yet."""
    world = make_world(a={"u2u": U2u.REQUIRE})
    kerberos_host("a").credentials.forget_ticket(kerberos_host("b").principal)
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    assert [n.code for n in _notices(world, "a", NegotiationFailed)] == ["KINK_U2UDENIED"]
    assert any(isinstance(x, FetchTicket) for x in world.host("a").kernel.log)


# ------------------------------------------------------------------------ KINK_ERROR


def _answer(port: Krb5Port, command: bytes, inner: tuple[KinkPayload, ...]) -> bytes:
    """An authenticated REPLY to `command` made with b's real Kerberos (a responder that
    answers with whatever the test wants)."""
    msg = decode(command)
    ap_req = msg.payloads[0]
    accepted = port.accept(ap_req.ap_req)  # type: ignore[union-attr]
    return messages.reply(msg.xid, 2000, port.make_ap_rep(accepted), accepted.key, inner)


@pytest.mark.parametrize(
    "code",
    [
        KinkErrorCode.PROTOERR,
        KinkErrorCode.INVDOI,
        KinkErrorCode.INVMAJ,
        KinkErrorCode.INTERR,
        KinkErrorCode.BADQMVERS,
        KinkErrorCode.U2UDENIED,
        8192,  # private use
    ],
)
def test_authenticated_kink_error_ends_the_create(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory, code: int
) -> None:
    """§4.2.8: we have no other version or DOI to retry with, and a malformed or internal
    error would recur: the CREATE fails at once, its optimistic SA goes, nothing is resent."""
    world = make_world()
    a = world.host("a")
    a.engine.request(Initiate("b"), world.now)
    world.drain()
    (create,) = world.flight
    world.flight.clear()
    assert a.kernel.sas  # the optimistic inbound SA
    reply = _answer(kerberos_host("b").port, create.data, (ErrorPayload(code),))
    a.engine.datagram_received(reply, (B, 910), world.now)
    world.settle()
    (failed,) = _notices(world, "a", NegotiationFailed)
    name = KinkErrorCode(code).name if code in KinkErrorCode._value2member_map_ else None
    assert failed.code == (f"KINK_{name}" if name else str(code))
    assert not a.kernel.sas and not a.engine.sadb.children
    assert not _sent(world, A, MessageType.CREATE) and not _sent(world, A, MessageType.DELETE)


def test_kink_ok_is_ignored(make_world: WorldFactory, kerberos_host: KerberosHostFactory) -> None:
    world = make_world()
    a = world.host("a").engine
    a.request(Status("b"), world.now)
    world.drain()
    (status,) = world.flight
    world.flight.clear()
    reply = _answer(kerberos_host("b").port, status.data, (ErrorPayload(KinkErrorCode.OK),))
    a.datagram_received(reply, (B, 910), world.now)
    world.settle()
    assert not _notices(world, "a", NegotiationFailed)
    assert a.peers["b"].epoch == 2000 and not a.peers["b"].transactions


def test_kink_error_to_dpd_is_no_dead_peer(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    """An authenticated error answering a DPD STATUS proves the peer alive (§3.7)."""
    world = make_world(engine={"dpd_delay": 10})
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    a = world.host("a").engine
    child = next(iter(a.sadb.children.values()))
    protocol, spi = child.sas[0].protocol, child.sas[0].inbound_spi
    a.sa_activity(protocol, spi, 0, 100, world.now)
    world.now += 11
    a.sa_activity(protocol, spi, 0, 200, world.now)
    world.drain()
    (status,) = world.flight
    world.flight.clear()
    error = (ErrorPayload(KinkErrorCode.INTERR),)
    a.datagram_received(_answer(kerberos_host("b").port, status.data, error), (B, 910), 0)
    world.settle()
    assert not _notices(world, "a", SaDeleted) and not a.peers["b"].dpd_pending
    assert check_consistent(world) == 2


def _command(
    kerberos_host: KerberosHostFactory, kind: MessageType, inner: tuple[Isakmp, ...]
) -> tuple[bytes, Key]:
    ka, kb = kerberos_host("a"), kerberos_host("b")
    ticket = ka.credentials.get_ticket(kb.principal)
    ap_req, _ = ka.port.make_ap_req(ticket)
    key = ka.port.ticket_key(ticket)
    return messages.command(kind, 77, 1000, ap_req, key, inner), key


@pytest.mark.parametrize(
    ("inner", "code"),
    [
        ((), KinkErrorCode.PROTOERR),  # CREATE without KINK_ISAKMP (§6.3)
        ((Isakmp((), qm_major=2),), KinkErrorCode.BADQMVERS),
    ],
)
def test_responder_answers_authenticated_kink_errors(
    make_world: WorldFactory,
    kerberos_host: KerberosHostFactory,
    inner: tuple[Isakmp, ...],
    code: int,
) -> None:
    world = make_world()
    data, key = _command(kerberos_host, MessageType.CREATE, inner)
    world.host("b").engine.datagram_received(data, (A, 910), world.now)
    world.drain()
    (reply,) = world.flight
    opened = open_message(decode(reply.data), key, request=MessageType.CREATE)
    assert opened.encrypted == (ErrorPayload(code),)
    log = world.host("b").kernel.log
    assert not [x for x in log if isinstance(x, (AllocateSpi, InstallSa))]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        # STATUS with DOI 2 (§4.2.8 KINK_INVDOI)
        (b"\x06\x10\x00\x10\x00\x00\x00\x02\x00\x00\x00\x4d\x00\x00\x00\x00", 2),
        # STATUS without KINK_AP_REQ: nothing to authenticate it with
        (encode(Message(MessageType.STATUS, 77, ())), 1),
    ],
)
def test_responder_answers_lone_kink_errors(
    make_world: WorldFactory, data: bytes, code: int
) -> None:
    world = make_world()
    world.host("b").engine.datagram_received(data, (A, 910), world.now)
    world.drain()
    (reply,) = world.flight
    msg = decode(reply.data)
    assert msg.type == MessageType.REPLY and msg.xid == 77 and not msg.cksum
    assert msg.payloads == (ErrorPayload(code),)


def test_datagram_from_no_peer_is_dropped_undecoded(
    make_world: WorldFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RFC 4430 §10: nothing from an address that is no peer is answered or read, so a flood
    # from spoofed sources costs no decoding (issue 9): counted by that cause, not by its fault.
    world = make_world()
    b = world.host("b").engine

    def no_decode(data: bytes) -> Message:
        raise AssertionError("decoded a datagram from no peer")

    monkeypatch.setattr("kink.engine.engine.decode", no_decode)
    for data in (b"\x01\x30" + bytes(30), b"\x01", bytes(64)):
        b.datagram_received(data, ("198.51.100.9", 910), world.now)
    world.drain()
    assert not world.flight
    assert b.counters["dropped.unknown-peer"] == 3 and "dropped.undecodable" not in b.counters


def test_no_kink_message_from_a_peer_is_dropped_undecoded(
    make_world: WorldFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RFC 4430 §4: shorter than the header, or another major version; none is a command a
    # KINK_ERROR answers (§4.2.8: an ACK gets none), so none is decoded (issue 9: a flood of
    # garbage from a peer's address). A CREATE of another version is (its INVMAJ: above).
    world = make_world()
    b = world.host("b").engine

    def no_decode(data: bytes) -> Message:
        raise AssertionError("decoded a datagram that is no KINK message")

    monkeypatch.setattr("kink.engine.engine.decode", no_decode)
    datagrams = (
        b"",
        b"\x01\x10",  # a CREATE's first octets
        b"\x07\x20\x00\x10" + bytes(12),  # Type 7, MjVer 2
        b"\x05\x00\x00\x10" + bytes(12),  # ACK, MjVer 0
        b"\x03\xf0\x00\x10" + bytes(12),  # REPLY, MjVer 15
    )
    for data in datagrams:
        b.datagram_received(data, (A, 910), world.now)
    world.drain()
    assert not world.flight
    assert b.counters["dropped.undecodable"] == len(datagrams)


def test_unknown_type_from_a_peer_is_dropped_undecoded(
    make_world: WorldFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RFC 4430 §4 defines Types 1-6: another is read by nothing, so not decoded (issue 9).
    world = make_world()
    b = world.host("b").engine

    def no_decode(data: bytes) -> Message:
        raise AssertionError("decoded a datagram of an unknown type")

    monkeypatch.setattr("kink.engine.engine.decode", no_decode)
    for kind in (0, 7, 0xFF):
        b.datagram_received(bytes([kind, 0x10, 0, 16, 0, 0, 0, 1]) + bytes(8), (A, 910), world.now)
    world.drain()
    assert not world.flight
    assert b.counters["dropped.unknown-type"] == 3
