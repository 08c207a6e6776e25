"""The pairs rekeyed away in one run of inputs go in one DELETE per peer (RFC 4430 §3.3, §6.4:
"Delete Payloads", each listing SPIs), started once the engine's actions run out
(Engine.next_action); at most MAX_DELETE_CHILDREN children a DELETE. The responder answers a
DELETE of many children, INVALID_SPI for those it does not have, and both sides end with the
same SAs."""

from typing import Any

import pytest

from kink.crypto.rfc3961 import Key
from kink.crypto.seal import open_message
from kink.engine.events import Initiate, PeerRemoved, Rekey, Terminate
from kink.engine.initiator import MAX_DELETE_CHILDREN
from kink.wire import DeletePayload, Isakmp, MessageType, NotifyPayload, decode
from kink.wire.ipsec_doi import NotifyType
from tests.engine.conftest import ADDRESSES, AH_ESP, KerberosHostFactory, WorldFactory
from tests.engine.harness import World, check_consistent
from tests.engine.many_policies import port_policies, sent_of, session_key

pytestmark = pytest.mark.kdc

A, B = ADDRESSES["a"], ADDRESSES["b"]
MTU_BUDGET = 1400  # octets a KINK datagram should stay well under (no IP fragmentation)


def _world(make_world: WorldFactory, count: int, **extra: Any) -> World:
    """a and b with `count` pairs established between them."""
    world = make_world(
        a={"policies": port_policies(A, B, count, ours=True), **extra},
        b={"policies": port_policies(B, A, count, ours=False), **extra},
    )
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2 * count * (2 if extra else 1)
    return world


def _isakmp(data: bytes, key: Key) -> list[object]:
    msg = decode(data)
    reply = msg.type == MessageType.REPLY
    opened = open_message(msg, key, request=MessageType.DELETE if reply else None)
    return [p for i in opened.encrypted or () if isinstance(i, Isakmp) for p in i.payloads]


def _named(data: bytes, key: Key) -> list[int]:
    """The SPIs a DELETE (or its REPLY) lists in its Delete payloads."""
    return [
        int.from_bytes(spi, "big")
        for p in _isakmp(data, key)
        if isinstance(p, DeletePayload)
        for spi in p.spis
    ]


def _rekey_all(world: World) -> list[int]:
    """Rekey every pair of a's in one request; the old pairs' inbound SPIs."""
    a = world.host("a")
    old = [c.sas[0].inbound_spi for c in a.engine.sadb.children.values()]
    a.engine.request(Rekey(peer="b"), world.now)
    return old


def test_rekeys_settled_in_one_run_go_in_one_delete(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = _world(make_world, 4)
    world.batched = True  # the REPLYs reach a in one run, as kinkd's reader hands them over
    old = _rekey_all(world)
    world.settle()
    a = world.host("a")
    [delete] = sent_of(a, MessageType.DELETE)
    assert sorted(_named(delete, session_key(kerberos_host))) == sorted(old)
    assert len(world.established("a")) == 8
    assert check_consistent(world) == 8
    for host in world.hosts.values():
        assert len(host.engine.sadb.children) == 4


def test_a_lone_rekey_deletes_in_the_run_of_its_reply(make_world: WorldFactory) -> None:
    world = _world(make_world, 1)
    world.host("a").engine.request(Rekey(peer="b"), world.now)
    world.step()  # a's CREATE to b; b's REPLY back
    world.step()  # the REPLY to a: the DELETE leaves in the same run, as before
    assert len(sent_of(world.host("a"), MessageType.DELETE)) == 1
    world.settle()
    assert check_consistent(world) == 2


def test_removing_the_peer_takes_the_waiting_children_with_it(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = _world(make_world, 3)
    a = world.host("a")
    old = _rekey_all(world)
    world.step()  # the CREATEs to b; its REPLYs back
    replies, world.flight = world.flight, []
    for item in replies:
        a.engine.datagram_received(item.data, (item.src, 910), world.now)
    assert a.engine.deleting  # the old pairs wait for the run's end
    new = [c.sas[0].inbound_spi for c in a.engine.sadb.children.values() if c.rekey_of]
    a.engine.remove_peer("b", world.now)
    world.settle()
    [delete] = sent_of(a, MessageType.DELETE)
    assert sorted(_named(delete, session_key(kerberos_host))) == sorted(old + new)
    assert any(isinstance(n, PeerRemoved) for n in a.notices)
    assert check_consistent(world) == 0


def test_a_waiting_child_is_dying_and_not_saved(make_world: WorldFactory) -> None:
    world = _world(make_world, 2)
    a = world.host("a")
    a.engine.record_changes(world.now)  # from here on, changes only
    old = {c.id for c in a.engine.sadb.children.values()}
    _rekey_all(world)
    world.step()
    replies, world.flight = world.flight, []
    for item in replies:
        a.engine.datagram_received(item.data, (item.src, 910), world.now)
    assert a.engine.deleting
    states = {c.id: c.state for c in a.engine.snapshot().children}
    assert {states[i] for i in old} == {"dying"}
    changes = a.engine.record_changes(world.now)
    assert set(changes.gone) == old
    assert {r.initiator for r in changes.records.values()} == {True}
    assert len(changes.records) == 2 and not set(changes.records) & old
    world.settle()
    assert check_consistent(world) == 4


def test_a_delete_names_at_most_the_cap_and_fits_a_datagram(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    count = 2 * MAX_DELETE_CHILDREN + 1
    world = _world(make_world, count, proposals=(AH_ESP,))  # two SPIs a child
    a, b = world.host("a"), world.host("b")
    # b forgets every pair on its own: its REPLYs are INVALID_SPI for each SPI, the largest.
    for child in list(b.engine.sadb.children.values()):
        b.engine.remove_child(child, "test", world.now)
    world.drain()
    a.engine.request(Terminate(peer="b"), world.now)
    world.settle()
    deletes, key = sent_of(a, MessageType.DELETE), session_key(kerberos_host)
    assert [len(_named(d, key)) // 2 for d in deletes] == [
        MAX_DELETE_CHILDREN,
        MAX_DELETE_CHILDREN,
        1,
    ]
    replies = [d for d in b.sent if decode(d).type == MessageType.REPLY][-3:]
    invalid = [
        p
        for r in replies
        for p in _isakmp(r, key)
        if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.INVALID_SPI
    ]
    assert len(invalid) == 2 * count
    assert max(len(d) for d in deletes + replies) < MTU_BUDGET - 200
    assert check_consistent(world) == 0
    assert not a.engine.sadb.children


def test_a_delete_some_of_whose_spis_are_gone_takes_down_the_rest(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = _world(make_world, 4)
    a, b = world.host("a"), world.host("b")
    gone = list(b.engine.sadb.children.values())[:2]
    for child in gone:
        b.engine.remove_child(child, "test", world.now)
    world.drain()
    kept = [c.sas[0].inbound_spi for c in b.engine.sadb.children.values()]
    a.engine.request(Terminate(peer="b"), world.now)
    world.settle()
    key = session_key(kerberos_host)
    [delete] = sent_of(a, MessageType.DELETE)
    assert len(_named(delete, key)) == 4
    reply = [d for d in b.sent if decode(d).type == MessageType.REPLY][-1]
    payloads = _isakmp(reply, key)
    assert sorted(_named(reply, key)) == sorted(kept)
    assert sum(isinstance(p, NotifyPayload) for p in payloads) == 2
    assert check_consistent(world) == 0
    assert not a.engine.sadb.children and not b.engine.sadb.children
