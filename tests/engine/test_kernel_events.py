"""Kernel events: a hard expiry or a vanished SA takes the pair down on both sides (§3.3); a
soft expiry in bytes starts the initiator's rekey (§3.6)."""

import pytest

from kink.engine.events import (
    DeleteSa,
    Expire,
    Initiate,
    KernelEvent,
    SaDeleted,
    SaEstablished,
    SaGone,
)
from kink.wire import MessageType
from tests.engine.conftest import WorldFactory
from tests.engine.harness import World, check_consistent

pytestmark = pytest.mark.kdc


def _established(make_world: WorldFactory) -> World:
    world = make_world()
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    return world


@pytest.mark.parametrize("host", ["a", "b"])
@pytest.mark.parametrize("inbound", [True, False])
@pytest.mark.parametrize("kind", ["hard-expire", "gone"])
def test_lost_sa_deletes_the_pair_on_both_sides(
    make_world: WorldFactory, host: str, inbound: bool, kind: str
) -> None:
    world = _established(make_world)
    me = world.host(host)
    key, spec = next((k, s) for k, s in me.kernel.sas.items() if s.inbound == inbound)
    del me.kernel.sas[key]  # what the kernel does at the hard lifetime, or `ip xfrm state del`
    event: KernelEvent
    if kind == "gone":
        event = SaGone(spec.protocol, spec.spi, spec.dst)
    else:
        event = Expire(spec.protocol, spec.spi, spec.dst, hard=True)
    me.engine.kernel_event(event, world.now)
    world.settle()
    assert check_consistent(world) == 0
    for name in ("a", "b"):
        assert not world.host(name).engine.sadb.children
        assert [n for n in world.host(name).notices if isinstance(n, SaDeleted)]
    deletes = [d for d in world.delivered if d.data[0] == MessageType.DELETE]
    assert len(deletes) == 1 and deletes[0].src == me.address
    # the SA that was gone is not deleted a second time
    assert (spec.protocol, spec.spi) not in {
        (x.protocol, x.spi) for x in me.kernel.log if isinstance(x, DeleteSa)
    }


def test_soft_byte_expiry_rekeys(make_world: WorldFactory) -> None:
    world = _established(make_world)
    a = world.host("a")
    spec = next(s for s in a.kernel.sas.values() if not s.inbound)
    a.engine.kernel_event(Expire(spec.protocol, spec.spi, spec.dst, hard=False), world.now)
    world.settle()
    assert check_consistent(world) == 2
    first, second = [n for n in a.notices if isinstance(n, SaEstablished)]
    assert second.rekey_of == first.child
    assert [n.child for n in a.notices if isinstance(n, SaDeleted)] == [first.child]
    assert spec.spi not in {s.spi for s in a.kernel.sas.values()}


def test_soft_expiry_at_the_responder_waits_for_the_initiator(make_world: WorldFactory) -> None:
    """§3.6: the initiator of an SA rekeys it."""
    world = _established(make_world)
    b = world.host("b")
    spec = next(s for s in b.kernel.sas.values() if s.inbound)
    b.engine.kernel_event(Expire(spec.protocol, spec.spi, spec.dst, hard=False), world.now)
    world.settle()
    assert check_consistent(world) == 2
    assert len(world.delivered) == 2  # the CREATE and its REPLY, nothing since
    assert b.engine.counters["soft-expire-responder"] == 1


def test_event_for_an_unknown_sa_is_counted(make_world: WorldFactory) -> None:
    world = _established(make_world)
    a = world.host("a").engine
    a.kernel_event(SaGone(3, 0x1234, "192.0.2.1"), world.now)
    a.kernel_event(Expire(3, 0x1234, "192.0.2.2", hard=True), world.now)
    world.settle()
    assert a.counters["kernel-event-unknown-sa"] == 2
    assert check_consistent(world) == 2
