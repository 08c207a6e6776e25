"""start_action=start keeps the SAs up: a lost pair is negotiated again at once, a failed
attempt again after a bounded, doubling backoff; trap peers wait for the next ACQUIRE."""

import itertools

import pytest

from kink.engine.config import StartAction
from kink.engine.events import Expire, Initiate, KernelEvent, NegotiationFailed, SaGone, Terminate
from kink.wire import MessageType
from tests.engine.conftest import WorldFactory
from tests.engine.harness import InFlight, World, check_consistent

pytestmark = pytest.mark.kdc


def _started(make_world: WorldFactory, action: StartAction) -> World:
    world = make_world(a={"start_action": action})
    if action is StartAction.START:
        world.host("a").engine.start(world.now)
    else:
        world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    return world


def _lose(world: World, how: str) -> None:
    """Take the pair down the way `how` says."""
    if how == "peer-delete":
        world.host("b").engine.request(Terminate(peer="a"), world.now)
        return
    a = world.host("a")
    key, spec = next((k, s) for k, s in a.kernel.sas.items() if s.inbound)
    del a.kernel.sas[key]
    event: KernelEvent
    if how == "gone":
        event = SaGone(spec.protocol, spec.spi, spec.dst)
    else:
        event = Expire(spec.protocol, spec.spi, spec.dst, hard=True)
    a.engine.kernel_event(event, world.now)


@pytest.mark.parametrize("how", ["peer-delete", "gone", "hard-expire"])
def test_start_peer_renegotiates_a_lost_pair(make_world: WorldFactory, how: str) -> None:
    world = _started(make_world, StartAction.START)
    first = world.established("a")[0].child
    _lose(world, how)
    world.settle()
    assert check_consistent(world) == 2
    (child,) = world.host("a").engine.sadb.children.values()
    assert child.id != first and child.initiator


@pytest.mark.parametrize("how", ["peer-delete", "gone"])
def test_trap_peer_waits_for_the_next_acquire(make_world: WorldFactory, how: str) -> None:
    world = _started(make_world, StartAction.TRAP)
    _lose(world, how)
    world.settle()
    assert check_consistent(world) == 0
    assert not world.host("a").engine.sadb.children


def test_failed_renegotiation_backs_off(make_world: WorldFactory) -> None:
    """The peer is down: each CREATE exchange gives up after its retransmissions (31 s with
    the defaults) and the next starts 1, 2, 4 ... 60 s later, never sooner."""
    world = make_world(a={"start_action": StartAction.START})
    starts: dict[bytes, float] = {}

    def fate(item: InFlight) -> str:
        if item.data[0] == MessageType.CREATE:
            starts.setdefault(item.data[8:12], world.now)  # the XID
        return "drop"

    world.fate = fate
    a = world.host("a").engine
    a.start(world.now)
    world.advance(700)
    times = sorted(starts.values())
    cycle = a.config.retransmit_cycle()
    gaps = [round(b - a_ - cycle, 6) for a_, b in itertools.pairwise(times)]
    assert gaps[:8] == [1, 2, 4, 8, 16, 32, 60, 60]
    failed = [n for n in world.host("a").notices if isinstance(n, NegotiationFailed)]
    assert len([n for n in failed if n.command == "CREATE"]) >= len(times) - 1

    world.fate = lambda item: "deliver"  # the peer is back: the next retry succeeds
    world.advance(cycle + 61)
    assert check_consistent(world) == 2
    assert a.peers["b"].backoff == 0  # reset by the success
