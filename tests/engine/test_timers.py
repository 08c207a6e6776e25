"""Timers let go of what they hold: a forgotten child, a finished transaction (the engine's
memory must not grow with the number of exchanges done, only with the ones under way)."""

import gc
import weakref

import pytest

from kink.engine.events import Initiate
from tests.engine.conftest import WorldFactory
from tests.engine.harness import check_consistent

pytestmark = pytest.mark.kdc


def test_removed_child_and_finished_exchange_are_released(make_world: WorldFactory) -> None:
    world = make_world()
    a = world.host("a").engine
    a.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    (child,) = a.sadb.children.values()
    assert child.rekey_timer is not None and not child.rekey_timer.cancelled
    gone = weakref.ref(child)
    a.remove_child(child, "test", world.now)
    world.drain()
    del child
    gc.collect()
    # Neither the rekey timer (hours away) nor the cancelled retransmission timer of the
    # CREATE keeps the child alive.
    assert gone() is None


def test_cancelled_timers_are_pruned(make_world: WorldFactory) -> None:
    engine = make_world().host("a").engine
    base = len(engine.timers)
    live = sum(not timer.cancelled for _, _, timer in engine.timers)
    for i in range(1000):
        engine.schedule(1e6 + i, lambda now: None).cancel()
    # Pruning runs when the heap has doubled: the heap stays within a small multiple of the
    # live timers (at least the 64 below which it is not pruned), instead of 1000 entries.
    assert len(engine.timers) <= 2 * max(64, base + 1)
    assert sum(not timer.cancelled for _, _, timer in engine.timers) == live
