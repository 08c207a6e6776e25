"""A restart that finds its SAs in the kernel keeps its epoch and its SAs (RFC 4430 §3.7,
issue 6): child_records() -> JSON -> restore() in a new Engine, which then rekeys, deletes and
matches kernel events for them as if it had made them."""

import json
import random
from dataclasses import replace
from typing import Any

import pytest

from kink.engine import ChildRecord, Engine, RecordError
from kink.engine.events import (
    AllocateSpi,
    DeleteSa,
    Initiate,
    InstallSa,
    PeerEpochChanged,
    SaDeleted,
    SaEstablished,
    SaGone,
    Terminate,
    UpdateSa,
)
from kink.engine.sadb import ChildState
from kink.wire import MessageType
from tests.engine.conftest import KerberosHostFactory, WorldFactory
from tests.engine.harness import Host, InFlight, World, check_consistent, deliver_all

pytestmark = pytest.mark.kdc


def _restart(world: World, name: str, kerberos_host: KerberosHostFactory, elapsed: float) -> Host:
    """Replace host `name`'s engine by a new one (same epoch, new Kerberos state, the kernel
    as it was), restored from the old one's records through JSON."""
    old = world.host(name)
    saved = json.dumps([r.to_dict() for r in old.engine.child_records(world.now)])
    world.now += elapsed  # the daemon is down meanwhile
    fresh = kerberos_host(name, fresh=True)
    engine = Engine(old.engine.config, fresh.port, epoch=old.engine.epoch, now=world.now)
    records = [ChildRecord.from_dict(d) for d in json.loads(saved)]
    assert engine.restore(records, world.now, elapsed=elapsed) == []
    # Nothing installed or deleted in the kernel; nothing sent but the DELETE (or the ticket
    # fetch it starts with) of children that awaited their ACK (§3.3).
    sa_actions = (AllocateSpi, InstallSa, UpdateSa, DeleteSa)
    assert not any(isinstance(action, sa_actions) for action in engine.actions)
    assert bool(engine.actions) == any(r.awaiting_ack for r in records)
    host = Host(name, old.address, engine, old.kernel, fresh.credentials)
    world.hosts[old.address] = host
    return host


def _established(make_world: WorldFactory) -> World:
    world = make_world(a={"lifetime_seconds": 1200})
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle(0)
    assert check_consistent(world) == 2
    return world


def test_restored_initiator_rekeys_and_deletes(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = _established(make_world)
    (old,) = world.host("a").engine.sadb.children.values()
    assert old.rekey_at is not None
    a = _restart(world, "a", kerberos_host, elapsed=60.0)
    (child,) = a.engine.sadb.children.values()
    assert child.spis() == old.spis() and child.policy == old.policy
    assert child.rekey_at == pytest.approx(old.rekey_at)  # the same deadline, 60 s later
    assert a.engine.peers["b"].epoch == 2000
    view = a.engine.snapshot().children[0]
    assert view.state == "installed" and view.transforms == old.transforms
    check_consistent(world)

    world.advance(old.rekey_at - world.now + 1)  # the soft lifetime: a rekey (§3.6)
    world.settle()
    assert check_consistent(world) == 2
    (new,) = [n for n in a.notices if isinstance(n, SaEstablished)]
    assert new.rekey_of == child.id
    assert [n.child for n in a.notices if isinstance(n, SaDeleted)] == [child.id]
    b = world.host("b")
    assert not [n for n in b.notices if isinstance(n, PeerEpochChanged)]  # same epoch

    a.engine.request(Terminate(peer="b"), world.now)
    world.settle()
    assert check_consistent(world) == 0


def test_restored_responder_deletes_on_kernel_event(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = _established(make_world)
    b = _restart(world, "b", kerberos_host, elapsed=5.0)
    (child,) = b.engine.sadb.children.values()
    assert not child.initiator and child.rekey_at is None
    spec = next(s for s in b.kernel.sas.values() if s.inbound)
    del b.kernel.sas[(spec.dst, spec.protocol, spec.spi)]
    b.engine.kernel_event(SaGone(spec.protocol, spec.spi, spec.dst), world.now)
    world.settle()
    assert check_consistent(world) == 0
    assert [d.src for d in world.delivered if d.data[0] == MessageType.DELETE] == [b.address]


def test_restored_responder_deletes_a_child_awaiting_its_ack(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    """A 3-way CREATE (§3.2): b's engine restarts after its REPLY, the ACK delayed until its
    next engine runs. The child is known again and DELETEd (§3.3): a drops the pair it
    installed on the REPLY, b its inbound SA, and the late ACK finds nothing."""
    world = make_world(engine_b={"responder_nonce": True})
    held: list[InFlight] = []

    def hold_ack(item: InFlight) -> str:
        if item.data[0] == MessageType.ACK:
            held.append(item)
            return "drop"
        return "deliver"

    world.fate = hold_ack
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle(0)
    a, b = world.host("a"), world.host("b")
    assert [s.inbound for s in b.kernel.sas.values()] == [True]  # the outbound waits (§3.2)
    assert len(a.kernel.sas) == 2 and len(held) == 1
    (waiting,) = b.engine.sadb.children.values()
    assert waiting.state is ChildState.LARVAL
    (record,) = b.engine.child_records(world.now)
    assert record.awaiting_ack and record.spis == waiting.spis()

    b = _restart(world, "b", kerberos_host, elapsed=1.0)
    (child,) = b.engine.sadb.children.values()
    assert child.state is ChildState.DYING and child.spis() == waiting.spis()
    world.fate = deliver_all
    world.drain()
    ack = held[0]
    b.engine.datagram_received(ack.data, (ack.src, 910), world.now)
    world.settle()
    assert [d.src for d in world.delivered if d.data[0] == MessageType.DELETE] == [b.address]
    assert not a.engine.sadb.children and not b.engine.sadb.children
    assert not a.kernel.sas and not b.kernel.sas
    assert check_consistent(world) == 0
    assert [n.child for n in b.notices if isinstance(n, SaDeleted)] == [child.id]


def test_restored_child_awaiting_its_ack_goes_when_the_reply_was_lost(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    """As above, but b's REPLY was lost: a holds only its optimistic inbound SA (§3.2) and
    answers the DELETE with INVALID-SPI; its retransmitted CREATE meets b's next engine, which
    answers it anew."""
    world = make_world(engine_b={"responder_nonce": True})
    world.fate = lambda item: "drop" if item.src == "192.0.2.2" else "deliver"
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle(0)
    for host in (world.host("a"), world.host("b")):
        assert [s.inbound for s in host.kernel.sas.values()] == [True]
    b = _restart(world, "b", kerberos_host, elapsed=1.0)
    (restored,) = b.engine.sadb.children.values()
    world.fate = deliver_all
    world.settle()
    assert check_consistent(world) == 2  # one pair: an inbound SA on either side
    assert [n.three_way for n in world.established("a")] == [True]
    assert len(world.established("b")) == 1 and len(b.kernel.sas) == 2
    assert [d.src for d in world.delivered if d.data[0] == MessageType.DELETE] == [b.address]
    assert [n.child for n in b.notices if isinstance(n, SaDeleted)] == [restored.id]


def test_restore_returns_what_it_cannot_take(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = _established(make_world)
    a = world.host("a").engine
    (record,) = a.child_records(world.now)
    assert a.restore([record], world.now) == [record]  # its SPIs are known already
    unknown = replace(record, peer="nobody")
    other = Engine(
        a.config, kerberos_host("a").port, epoch=1000, now=world.now, rng=random.Random(1)
    )
    assert other.restore([unknown, record], world.now) == [unknown]
    assert other.next_action() is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: "not a record",
        lambda d: {k: v for k, v in d.items() if k != "spis"},
        lambda d: {**d, "spis": [[3, 1]]},
        lambda d: {**d, "reqid": -1},
        lambda d: {**d, "initiator": "yes"},
        lambda d: {**d, "local": {"network": "300.0.0.0/8"}},
        lambda d: {**d, "mode": "beet"},
        lambda d: {**d, "spis": []},
        lambda d: {**d, "transforms": [{"protocol": 3}]},
        lambda d: {**d, "age": None},
        lambda d: {**d, "awaiting_ack": "yes"},
    ],
)
def test_damaged_records_raise_record_error(make_world: WorldFactory, damage: Any) -> None:
    world = _established(make_world)
    (record,) = world.host("a").engine.child_records(world.now)
    data = json.loads(json.dumps(record.to_dict()))
    assert ChildRecord.from_dict(data) == record
    with pytest.raises(RecordError):
        ChildRecord.from_dict(damage(data))


def test_records_from_before_awaiting_ack_are_of_established_children(
    make_world: WorldFactory,
) -> None:
    world = _established(make_world)
    (record,) = world.host("b").engine.child_records(world.now)
    assert not record.awaiting_ack
    older = {k: v for k, v in record.to_dict().items() if k != "awaiting_ack"}
    assert ChildRecord.from_dict(json.loads(json.dumps(older))) == record
