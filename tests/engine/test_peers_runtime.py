"""Peers and host settings changed while the engine runs (kink.engine.lifecycle): add_peer,
remove_peer (DELETE of its SAs, RFC 4430 §3.3), replace_peer and reconfigure."""

from dataclasses import replace
from ipaddress import ip_network

import pytest

from kink.engine import ConfigChangeError, Engine
from kink.engine.config import Policy, StartAction
from kink.engine.events import (
    Initiate,
    NegotiationFailed,
    PeerRemoved,
    Rekey,
    SaDeleted,
    SaEstablished,
    Selector,
)
from kink.wire import MessageType
from tests.engine.conftest import WorldFactory
from tests.engine.harness import World, check_consistent

pytestmark = pytest.mark.kdc

A, B = "192.0.2.1", "192.0.2.2"


def _established(make_world: WorldFactory, **kw: object) -> World:
    world = make_world(**kw)
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    return world


def _kinds(world: World, src: str) -> list[int]:
    return [d.data[0] for d in world.delivered if d.src == src]


@pytest.mark.parametrize("side", ["a", "b"])
def test_remove_peer_deletes_its_sas_on_both_sides(make_world: WorldFactory, side: str) -> None:
    world = _established(make_world)
    me = world.host(side)
    other = "b" if side == "a" else "a"
    engine: Engine = me.engine
    engine.remove_peer(other, world.now)
    assert other not in engine.peers and not engine.policies and not engine.config.peers
    world.settle()
    assert check_consistent(world) == 0
    assert MessageType.DELETE in _kinds(world, me.address)
    assert [n for n in me.notices if isinstance(n, PeerRemoved)] == [PeerRemoved(other)]
    assert not engine.leaving and not engine.sadb.children
    assert [n.reason for n in world.host(other).notices if isinstance(n, SaDeleted)]


def test_remove_peer_cancels_its_transactions(make_world: WorldFactory) -> None:
    world = make_world()
    world.fate = lambda item: "drop"  # the peer is down
    a = world.host("a")
    a.engine.request(Initiate("b"), world.now)
    world.step()
    assert a.kernel.sas  # the optimistic inbound SA (§3.2)
    a.engine.remove_peer("b", world.now)
    world.settle()
    failed = [n for n in a.notices if isinstance(n, NegotiationFailed)]
    assert failed[0].command == "CREATE" and failed[0].reason == "cancelled"
    assert not a.kernel.sas and not a.engine.leaving
    assert PeerRemoved("b") in a.notices
    # the DELETE of what b may have installed went out (to nobody): nothing half-open
    assert MessageType.DELETE in [data[0] for data in a.sent]


def test_remove_then_add_peer(make_world: WorldFactory) -> None:
    world = _established(make_world)
    a = world.host("a").engine
    config = a.peers["b"].config
    reqid = a.peer_policies["b"][0].reqid
    a.remove_peer("b", world.now)
    world.settle()
    with pytest.raises(ValueError, match="no peer"):
        a.remove_peer("b", world.now)
    a.add_peer(replace(config, start_action=StartAction.START), world.now)
    assert a.peer_policies["b"][0].reqid == reqid  # the lowest free one again
    with pytest.raises(ValueError, match="exists"):
        a.add_peer(config, world.now)
    with pytest.raises(ValueError, match="address"):
        a.add_peer(replace(config, name="b2"), world.now)
    world.settle()  # start_action=start: negotiated at once
    assert check_consistent(world) == 2
    assert len(world.established("a")) == 2


def test_replace_peer_keeps_sas_until_rekey(make_world: WorldFactory) -> None:
    world = _established(make_world)
    a = world.host("a")
    before = dict(a.engine.sadb.children)
    sent = len(world.delivered)
    a.engine.replace_peer(replace(a.engine.peers["b"].config, lifetime_seconds=600), world.now)
    world.settle(0)
    assert a.engine.sadb.children == before and len(world.delivered) == sent
    assert a.engine.config.peers[0].lifetime_seconds == 600
    a.engine.request(Rekey(peer="b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    (child,) = a.engine.sadb.children.values()
    assert child.lifetime.seconds == 600  # the rekey used the new settings


def test_replace_peer_with_other_selectors_renegotiates(make_world: WorldFactory) -> None:
    def host(address: str, protocol: int = 0) -> Selector:
        return Selector(ip_network(address), protocol)

    any_ = Policy(host(A), host(B), reqid=0x4B490100)
    tcp = Policy(host(A, 6), host(B, 6), reqid=0x4B490100)
    wide = Policy(host(B), host(A), reqid=0x4B490200)  # b grants narrower selectors (§10)
    world = _established(
        make_world,
        a={"policies": (any_,), "start_action": StartAction.START},
        b={"policies": (wide,)},
    )
    a = world.host("a")
    a.engine.replace_peer(replace(a.engine.peers["b"].config, policies=(tcp,)), world.now)
    world.settle()
    assert check_consistent(world) == 2
    (child,) = a.engine.sadb.children.values()
    assert child.policy == tcp
    assert MessageType.DELETE in _kinds(world, A)
    assert [n.reason for n in a.notices if isinstance(n, SaDeleted)] == ["deleted"]


def test_replace_peer_with_another_principal_is_remove_and_add(make_world: WorldFactory) -> None:
    world = _established(make_world)
    a = world.host("a")
    config = a.engine.peers["b"].config
    a.engine.replace_peer(replace(config, principal="other@ENGINE.TEST"), world.now)
    assert a.engine.peers["b"].config.principal == "other@ENGINE.TEST"
    world.settle()
    assert check_consistent(world) == 0  # the old principal's SAs went with DELETE
    assert PeerRemoved("b") in a.notices


def test_reconfigure_host_knobs_and_peers(make_world: WorldFactory) -> None:
    world = _established(make_world)
    a = world.host("a").engine
    config = a.config
    with pytest.raises(ConfigChangeError, match="address"):
        a.reconfigure(replace(config, address="192.0.2.9"), world.now)
    twice = replace(config, peers=config.peers * 2)
    with pytest.raises(ConfigChangeError, match="twice"):
        a.reconfigure(twice, world.now)
    assert a.config == config and len(a.sadb.children) == 1  # nothing changed

    done = a.reconfigure(replace(config, retransmit_initial=0.5, dpd_delay=5.0), world.now)
    assert done.unchanged == ("b",) and not (done.added or done.removed or done.changed)
    assert a.config.retransmit_initial == 0.5 and a.config.peers == config.peers
    assert len(a.sadb.children) == 1

    done = a.reconfigure(replace(config, peers=()), world.now)
    assert done.removed == ("b",)
    world.settle()
    assert check_consistent(world) == 0

    start = replace(config.peers[0], start_action=StartAction.START)
    done = a.reconfigure(replace(config, peers=(start,)), world.now)
    assert done.added == ("b",)
    world.settle()
    assert check_consistent(world) == 2
    assert [n for n in world.host("a").notices if isinstance(n, SaEstablished)]
