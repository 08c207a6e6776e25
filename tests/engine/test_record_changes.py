"""Engine.record_changes (issue 9): applied in order, the changes it reports give at every
point what child_records would, through establishment, rekey, DELETE, a 3-way CREATE awaiting
its ACK and the removal of a peer, at the cost of what changed; and Engine.has_children, the
per-peer count kept beside it."""

from collections.abc import Iterable
from dataclasses import replace

import pytest

from kink.engine import ChildRecord, Engine
from kink.engine.events import Initiate, Terminate
from kink.engine.sadb import ChildState
from kink.wire import MessageType
from tests.engine.conftest import WorldFactory
from tests.engine.harness import InFlight, World, check_consistent, deliver_all

pytestmark = pytest.mark.kdc


class Saved:
    """What a daemon saving record_changes() after each step holds: records by child id,
    each with the time it was recorded at."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.records: dict[int, tuple[ChildRecord, float]] = {}
        self.written = 0  # records handed out so far

    def check(self, now: float) -> int:
        changes = self.engine.record_changes(now)
        for child_id in changes.gone:
            self.records.pop(child_id, None)
        self.records.update((i, (r, now)) for i, r in changes.records.items())
        self.written += len(changes.records)
        assert _absolute(self.records.values()) == _absolute(
            (r, now) for r in self.engine.child_records(now)
        )
        return len(self.records)


def _absolute(records: Iterable[tuple[ChildRecord, float]]) -> dict[object, object]:
    """Records by SPIs, with the wall clock times they were created and are to be rekeyed
    at in place of their age and time to rekey (as of the time they were recorded)."""
    return {
        r.spis: (
            replace(r, age=0.0, rekey_in=None),
            round(at - r.age, 6),
            None if r.rekey_in is None else round(at + r.rekey_in, 6),
        )
        for r, at in records
    }


def _saved(world: World) -> dict[str, Saved]:
    return {name: Saved(world.host(name).engine) for name in ("a", "b")}


def test_changes_follow_establishment_rekey_and_delete(make_world: WorldFactory) -> None:
    world = make_world(a={"lifetime_seconds": 1200})
    saved = _saved(world)
    assert saved["a"].check(world.now) == 0
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle(0)
    assert check_consistent(world) == 2
    assert saved["a"].check(world.now) == saved["b"].check(world.now) == 1
    written = saved["a"].written
    world.advance(30.0)
    assert saved["a"].check(world.now) == 1
    assert saved["a"].written == written  # nothing changed: nothing recorded again
    engine = world.host("a").engine
    (child,) = engine.sadb.children.values()
    also = engine.record_changes(world.now, also=[child.id, 999_999])  # asked for: recorded
    assert list(also.records) == [child.id] and also.gone == [999_999]

    (old,) = world.host("a").engine.sadb.children.values()
    assert old.rekey_at is not None
    rekeyed = False
    while not rekeyed:  # step by step: the old child DYING while the new one is in place
        world.advance(1.0 if world.now + 1 < old.rekey_at else 0.05)
        for name in ("a", "b"):
            saved[name].check(world.now)
        rekeyed = old.state is ChildState.DYING
    assert old.id not in saved["a"].records
    world.settle()
    assert check_consistent(world) == 2
    assert saved["a"].check(world.now) == saved["b"].check(world.now) == 1

    world.host("a").engine.request(Terminate(peer="b"), world.now)
    world.drain()
    assert saved["a"].check(world.now) == 0  # DYING: no longer taken over
    assert world.host("a").engine.has_children("b")  # until it is gone
    world.settle()
    assert check_consistent(world) == 0
    assert saved["a"].check(world.now) == saved["b"].check(world.now) == 0
    assert not world.host("a").engine.has_children("b")
    assert not world.host("b").engine.has_children("a")


def test_changes_follow_a_child_awaiting_its_ack(make_world: WorldFactory) -> None:
    world = make_world(engine_b={"responder_nonce": True})
    saved = _saved(world)
    held: list[InFlight] = []

    def hold_ack(item: InFlight) -> str:
        if item.data[0] == MessageType.ACK:
            held.append(item)
            return "drop"
        return "deliver"

    world.fate = hold_ack
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle(0)
    assert len(held) == 1
    assert saved["b"].check(world.now) == 1
    ((record, _),) = saved["b"].records.values()
    assert record.awaiting_ack
    world.fate = deliver_all
    ack = held[0]
    world.host("b").engine.datagram_received(ack.data, (ack.src, 910), world.now)
    world.drain()
    assert saved["b"].check(world.now) == 1
    ((record, _),) = saved["b"].records.values()
    assert not record.awaiting_ack


def test_a_removed_peers_children_are_gone_at_once(make_world: WorldFactory) -> None:
    world = make_world()
    saved = _saved(world)
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle(0)
    assert saved["a"].check(world.now) == 1
    engine = world.host("a").engine
    engine.reconfigure(replace(engine.config, peers=()), world.now)
    assert saved["a"].check(world.now) == 0
    world.settle()
    assert saved["a"].check(world.now) == saved["b"].check(world.now) == 0
