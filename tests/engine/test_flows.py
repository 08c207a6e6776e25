"""DELETE, STATUS and epochs, §9 transport rules, unauthenticated input, rekeying, GETTGT."""

import pytest

from kink.engine.config import StartAction, U2u
from kink.engine.events import (
    Dropped,
    Initiate,
    InstallSa,
    NegotiationFailed,
    PeerEpochChanged,
    Rekey,
    SaDeleted,
    Status,
    Terminate,
)
from kink.engine.messages import lone_reply
from kink.wire import ErrorPayload, KinkErrorCode, KrbError, TgtRep
from tests.engine.conftest import WorldFactory
from tests.engine.harness import InFlight, check_consistent, children_per_policy

pytestmark = pytest.mark.kdc


def _established(make_world: WorldFactory, **kw: object) -> "World":
    world = make_world(**kw)
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    return world


def test_delete_both_sides_after_grace(make_world: WorldFactory) -> None:
    world = _established(make_world)
    world.host("a").engine.request(Terminate(peer="b"), world.now)
    world.settle()
    assert check_consistent(world) == 0
    for name in ("a", "b"):
        assert [n.reason for n in world.host(name).notices if isinstance(n, SaDeleted)]
        assert not world.host(name).engine.sadb.children


def test_delete_reply_lost_is_answered_from_the_cache(make_world: WorldFactory) -> None:
    world = _established(make_world)
    lost: list[int] = []

    def fate(item: InFlight) -> str:
        if item.src == "192.0.2.2" and not lost:
            lost.append(item.seq)
            return "drop"
        return "deliver"

    world.fate = fate
    world.host("a").engine.request(Terminate(peer="b"), world.now)
    world.settle()
    assert lost and check_consistent(world) == 0
    assert world.host("b").engine.counters["retransmitted-command"] == 1


def test_retransmitted_create_gets_the_same_reply(make_world: WorldFactory) -> None:
    world = make_world()
    dropped: list[bytes] = []

    def fate(item: InFlight) -> str:
        if item.src == "192.0.2.2" and not dropped:
            dropped.append(item.data)
            return "drop"
        return "deliver"

    world.fate = fate
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    creates = [d for d in world.delivered if d.src == "192.0.2.1"]
    assert len(creates) == 2 and creates[0].data != creates[1].data  # new authenticator
    replies = [d.data for d in world.delivered if d.src == "192.0.2.2"]
    assert replies == dropped  # the same REPLY, from the cache
    log = world.host("b").kernel.log
    inbound = [x for x in log if isinstance(x, InstallSa) and x.spec.inbound]
    assert len(inbound) == 1  # never a second SA


def test_lost_ack_is_regenerated(make_world: WorldFactory) -> None:
    world = make_world(engine_b={"responder_nonce": True})
    acks: list[int] = []

    def fate(item: InFlight) -> str:
        if item.src == "192.0.2.1" and item.data[0] == 5 and not acks:
            acks.append(item.seq)
            return "drop"
        return "deliver"

    world.fate = fate
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert acks and check_consistent(world) == 2
    assert sum(1 for d in world.delivered if d.data[0] == 5) == 1


def test_status_records_epoch(make_world: WorldFactory) -> None:
    world = make_world()
    world.host("a").engine.request(Status("b"), world.now)
    world.settle()
    assert world.host("a").engine.peers["b"].epoch == 2000
    assert world.host("b").engine.peers["a"].epoch == 1000


def test_epoch_change_invalidates_and_renegotiates(make_world: WorldFactory) -> None:
    world = _established(make_world, a={"start_action": StartAction.START})
    # b restarts: new epoch, empty kernel and engine.
    restarted = make_world(epochs=(1000, 3000))
    world.hosts["192.0.2.2"] = restarted.host("b")
    world.host("a").engine.request(Status("b"), world.now)
    world.settle()
    changed = [n for n in world.host("a").notices if isinstance(n, PeerEpochChanged)]
    assert changed and changed[0].new == 3000
    assert check_consistent(world) == 2  # renegotiated
    assert len(world.established("a")) == 2


def test_dpd_on_suspicion_declares_dead_peer(make_world: WorldFactory) -> None:
    world = _established(make_world, engine={"dpd_delay": 10})
    engine = world.host("a").engine
    child = next(iter(engine.sadb.children.values()))
    protocol, spi_in = child.sas[0].protocol, child.sas[0].inbound_spi
    engine.sa_activity(protocol, spi_in, 0, 100, world.now)
    world.settle()
    assert not world.delivered[2:]  # no keepalives without suspicion
    del world.hosts["192.0.2.2"]  # b vanishes
    world.now += 11
    engine.sa_activity(protocol, spi_in, 0, 200, world.now)
    world.settle()
    reasons = [n.reason for n in world.host("a").notices if isinstance(n, SaDeleted)]
    assert reasons == ["dead-peer"]
    assert not engine.sadb.children and not world.host("a").kernel.sas


def test_unauthenticated_replies_tear_nothing_down(make_world: WorldFactory) -> None:
    world = make_world()
    a = world.host("a").engine
    a.request(Initiate("b"), world.now)
    world.drain()
    xid = a.snapshot().peers[0].transactions and next(iter(a.peers["b"].transactions))
    forged = [
        lone_reply(xid, KrbError(b"\x7e\x03\x02\x01\x00")),
        lone_reply(xid, ErrorPayload(KinkErrorCode.PROTOERR)),
        lone_reply(xid, TgtRep(b"junk")),
        b"\x03\x10garbage",
    ]
    for data in forged:
        a.datagram_received(data, ("192.0.2.2", 910), world.now)
    world.settle()
    assert check_consistent(world) == 2
    dropped = [n.cause for n in world.host("a").notices if isinstance(n, Dropped)]
    assert "undecodable" in dropped and "lone-tgt-rep" in dropped
    assert any(c.startswith("lone-kink-error") for c in dropped)


def test_garbage_costs_no_kerberos(make_world: WorldFactory) -> None:
    world = make_world()
    b = world.host("b").engine
    b.datagram_received(
        b"\x01\x10\x00\x40\x00\x00\x00\x01" + bytes(56), ("192.0.2.1", 910), world.now
    )
    b.datagram_received(b"\x01\x10", ("192.0.2.1", 910), world.now)
    status = b"\x06\x10\x00\x10\x00\x00\x00\x01" + bytes(8)
    b.datagram_received(status, ("198.51.100.9", 910), world.now)
    world.drain()
    assert not world.flight and not b.answers
    assert b.counters["dropped.undecodable"] == 2 and b.counters["dropped.unknown-peer"] == 1


def test_unsupported_major_version_gets_lone_kink_error(make_world: WorldFactory) -> None:
    world = make_world()
    b = world.host("b").engine
    b.datagram_received(b"\x01\x20\x00\x10" + bytes(12), ("192.0.2.1", 910), world.now)
    world.drain()
    (reply,) = world.flight
    assert reply.data[0] == 3 and reply.data[-4:] == (3).to_bytes(4, "big")


def test_rekey_replaces_the_old_pair(make_world: WorldFactory) -> None:
    world = _established(make_world, a={"lifetime_seconds": 600}, b={"lifetime_seconds": 600})
    world.advance(600)
    world.settle()
    assert check_consistent(world) == 2
    a_est = world.established("a")
    assert len(a_est) == 2 and a_est[1].rekey_of == a_est[0].child
    reasons = [n.reason for n in world.host("a").notices if isinstance(n, SaDeleted)]
    assert reasons == ["deleted"]


def test_rekey_collision_leaves_one_pair(make_world: WorldFactory) -> None:
    world = _established(make_world)
    for name in ("a", "b"):
        engine = world.host(name).engine
        child = next(iter(engine.sadb.children.values()))
        engine.request(Rekey(spi=child.sas[0].inbound_spi), world.now)
    world.settle()
    assert check_consistent(world) == 2
    for name in ("a", "b"):
        assert set(children_per_policy(world.host(name)).values()) == {1}


def test_simultaneous_create_leaves_one_pair(make_world: WorldFactory) -> None:
    world = make_world()
    world.host("a").engine.request(Initiate("b"), world.now)
    world.host("b").engine.request(Initiate("a"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    for name in ("a", "b"):
        assert set(children_per_policy(world.host(name)).values()) == {1}


def test_user_to_user_required(make_world: WorldFactory) -> None:
    world = make_world(a={"u2u": U2u.REQUIRE}, b={"give_tgt": True}, u2u_b=True)
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    assert any(d.data[0] == 4 for d in world.delivered)  # GETTGT


def test_user_to_user_allowed_after_kdc_refusal(make_world: WorldFactory) -> None:
    world = make_world(a={"u2u": U2u.ALLOW}, b={"give_tgt": True}, u2u_b=True)
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2


def test_gettgt_denied(make_world: WorldFactory) -> None:
    world = make_world(a={"u2u": U2u.REQUIRE}, u2u_b=True)
    a = world.host("a")
    a.credentials.forget_ticket(a.engine.peers["b"].config.principal)
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 0
    codes = [n.code for n in world.host("a").notices if isinstance(n, NegotiationFailed)]
    assert "KINK_U2UDENIED" in codes


from tests.engine.harness import World  # noqa: E402
