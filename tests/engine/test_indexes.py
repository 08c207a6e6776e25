"""The engine's indexes (issue 9: per-exchange costs independent of the number of SAs) stay in
step with what they index, through real exchanges: the SADB's per-peer, per-policy and per-SPI
indexes through CREATE, rekey, collision and DELETE; the per-peer policies by selectors
(Responder._authorize's exact match, §10) through add_peer, replace_peer and remove_peer; the
per-peer count of CREATEs under way (Initiator.in_progress) through queueing, ACKs, failures
and cancellation. Each is compared with a walk of everything, as the engine did before it had
them."""

from dataclasses import replace
from ipaddress import ip_network

import pytest

from kink.engine import Engine
from kink.engine.config import Policy
from kink.engine.events import Acquire, Initiate, Selector, Terminate
from kink.engine.initiator import Transaction, _Queued
from kink.wire import MessageType
from tests.engine.conftest import WorldFactory
from tests.engine.harness import World, check_consistent, children_per_policy

pytestmark = pytest.mark.kdc


def _policies(count: int, *, mirror: bool, reqid: int = 1) -> tuple[Policy, ...]:
    out = []
    for i in range(count):
        ours, theirs = (
            Selector(ip_network(f"10.1.{i}.0/24")),
            Selector(ip_network(f"10.2.{i}.0/24")),
        )
        local, remote = (theirs, ours) if mirror else (ours, theirs)
        out.append(Policy(local, remote, reqid + i))
    return tuple(out)


def check_indexes(engine: Engine) -> None:
    """Every index of `engine` says what a walk of all children / policies says, and keeps no
    entry for what is gone."""
    sadb = engine.sadb
    children = list(sadb.children.values())
    names = {c.peer.config.name for c in children} | set(engine.peers)
    for name in names:
        assert list(sadb.of_peer(name)) == [c for c in children if c.peer.config.name == name]
    keys = {(c.peer.config.name, c.policy) for c in children}
    keys |= {(name, p) for name, policies in engine.peer_policies.items() for p in policies}
    for name, policy in keys:
        walked = [c for c in children if c.peer.config.name == name and c.policy == policy]
        assert sadb.of_policy(name, policy) == walked
    assert set(sadb._by_policy) == {(c.peer.config.name, c.policy) for c in children}
    assert set(sadb._by_peer) == {c.peer.config.name for c in children}
    for child in children:
        for sa in child.sas:
            assert sadb.by_inbound(sa.protocol, sa.inbound_spi) is child
            assert sadb.by_outbound(child.peer.config.name, sa.protocol, sa.outbound_spi) is child
    assert set(engine.policies_by_ids) == set(engine.peer_policies)
    for name, policies in engine.peer_policies.items():
        first: dict[tuple[Selector, Selector], Policy] = {}
        for p in policies:
            if p.send_ids:
                first.setdefault((p.local, p.remote), p)
        assert engine.policies_by_ids[name] == first
    for peer in [*engine.peers.values(), *engine.leaving]:
        walked_creating: dict[Policy, int] = {}
        txns = [t for t in peer.transactions.values() if isinstance(t, Transaction)]
        txns = [t for t in txns if not t.done and not t.acked]
        txns += [fn.txn for fn in peer.queue if isinstance(fn, _Queued)]
        assert all(isinstance(fn, _Queued) for fn in peer.queue)
        for txn in txns:
            for neg in txn.negotiations:
                walked_creating[neg.policy] = walked_creating.get(neg.policy, 0) + 1
        assert peer.creating == walked_creating


def _check(world: World) -> None:
    for host in world.hosts.values():
        check_indexes(host.engine)


def _world(make_world: WorldFactory, count: int = 3, **kw: object) -> World:
    life = {"lifetime_seconds": 600}
    return make_world(
        a={"policies": _policies(count, mirror=False), **life},
        b={"policies": _policies(count, mirror=True), **life},
        **kw,
    )


def test_sadb_indexes_follow_create_rekey_and_delete(make_world: WorldFactory) -> None:
    world = _world(make_world)
    _check(world)
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle(0)
    assert check_consistent(world) == 6  # an inbound and an outbound SA per child
    _check(world)
    world.advance(600)  # every pair rekeyed (§3.6), the old ones DELETEd
    world.settle()
    assert check_consistent(world) == 6
    assert len(world.established("a")) == 6
    _check(world)
    world.host("a").engine.request(Terminate(peer="b"), world.now)
    world.settle()
    assert check_consistent(world) == 0
    _check(world)
    for host in world.hosts.values():
        assert not host.engine.sadb.children


def test_sadb_indexes_follow_a_rekey_under_way(make_world: WorldFactory) -> None:
    """Mid-rekey a policy has two children, old and new: of_policy lists both until the old
    one's DELETE is done."""
    world = _world(make_world, count=1)
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle(0)
    a = world.host("a").engine
    (old,) = a.sadb.children.values()
    assert old.rekey_at is not None
    world.fate = lambda item: "drop" if item.data[0] == MessageType.DELETE else "deliver"
    world.advance(old.rekey_at - world.now + 0.001)
    world.drain()
    (policy,) = a.peer_policies["b"]
    both = a.sadb.of_policy("b", policy)
    assert len(both) == 2 and both[0] is old
    _check(world)


def test_sadb_indexes_follow_a_collision(make_world: WorldFactory) -> None:
    world = _world(make_world)
    world.host("a").engine.request(Initiate("b"), world.now)
    world.host("b").engine.request(Initiate("a"), world.now)
    world.settle()
    assert check_consistent(world) == 6
    for host in world.hosts.values():
        assert set(children_per_policy(host).values()) == {1}
    _check(world)


def test_policy_index_follows_peer_changes(make_world: WorldFactory) -> None:
    world = _world(make_world)
    a, b = world.host("a").engine, world.host("b").engine
    b.replace_peer(replace(b.peers["a"].config, policies=_policies(2, mirror=True)), world.now)
    _check(world)
    a.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 4  # the third policy is no longer b's: refused (§10)
    _check(world)
    config = b.peers["a"].config
    b.remove_peer("a", world.now)
    world.settle()
    assert "a" not in b.policies_by_ids
    _check(world)
    b.add_peer(config, world.now)
    _check(world)


def test_equal_selectors_configured_twice_grant_the_first(make_world: WorldFactory) -> None:
    """Two configured policies with the same selectors: the CREATE gets the first one's reqid,
    as the walk of the policies in configured order gave it (§10)."""
    (ours,) = _policies(1, mirror=False)
    (theirs,) = _policies(1, mirror=True, reqid=7)
    world = make_world(a={"policies": (ours,)}, b={"policies": (theirs, replace(theirs, reqid=8))})
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    assert {s.reqid for s in world.host("b").kernel.sas.values()} == {7}
    _check(world)


def test_creating_count_follows_queue_acks_and_completion(make_world: WorldFactory) -> None:
    """One CREATE per policy (an ACQUIRE per run of inputs) through a one-slot queue, 3-way
    (b adds Nr, §3.2): each is counted while queued and under way, and no longer once ACKed."""
    world = _world(make_world, engine={"max_outstanding": 1}, engine_b={"responder_nonce": True})
    a = world.host("a").engine
    for policy in a.peer_policies["b"]:
        a.kernel_event(Acquire(policy.reqid), world.now)
        a.kernel_event(Acquire(policy.reqid), world.now)  # coalesced: counted once
        world.drain()
    assert sorted(a.peers["b"].creating.values()) == [1, 1, 1]
    assert len(a.peers["b"].queue) == 2
    _check(world)
    steps = 0
    while world.step():  # one flight of datagrams at a time, without timers
        steps += 1
        _check(world)
    assert steps == 7  # CREATE, REPLY, ACK + the next CREATE (its slot freed by the ACK)...
    world.settle()
    assert check_consistent(world) == 6
    assert not a.peers["b"].creating
    assert a.counters["acquire-coalesced"] == 3
    _check(world)


def test_creating_count_follows_failures_and_cancellation(make_world: WorldFactory) -> None:
    """CREATEs that get no REPLY fail after their retransmissions; queued ones the peer's
    new settings no longer allow are dropped (replace_peer): neither stays counted."""
    world = _world(make_world, engine={"max_outstanding": 1})
    a = world.host("a").engine
    world.fate = lambda item: "drop"
    for policy in a.peer_policies["b"]:  # a CREATE each: an ACQUIRE per run of inputs
        a.kernel_event(Acquire(policy.reqid), world.now)
        world.drain()
    assert len(a.peers["b"].creating) == 3
    config = a.peers["b"].config
    a.replace_peer(replace(config, policies=config.policies[:1]), world.now)
    _check(world)
    assert len(a.peers["b"].creating) == 1
    world.settle()
    _check(world)
    assert not a.peers["b"].creating and not a.sadb.children
