"""The pairs rekeyed away go in one DELETE per peer (RFC 4430 §3.3, §6.4: "Delete Payloads",
each listing SPIs), held for up to DELETE_HOLD (§3.6, the tests after "the hold"); at most
MAX_DELETE_CHILDREN children a DELETE. The responder answers a DELETE of many children,
INVALID_SPI for those it does not have, and both sides end with the same SAs."""

from dataclasses import replace
from typing import Any

import pytest

from kink.crypto.rfc3961 import Key
from kink.crypto.seal import open_message
from kink.engine.events import Expire, Initiate, PeerRemoved, Rekey, SaDeleted, Terminate
from kink.engine.initiator import DELETE_HOLD, MAX_DELETE_CHILDREN
from kink.engine.sadb import Child
from kink.wire import DeletePayload, Isakmp, MessageType, NotifyPayload, decode
from kink.wire.ipsec_doi import NotifyType
from tests.engine.conftest import ADDRESSES, AH_ESP, KerberosHostFactory, WorldFactory
from tests.engine.harness import Host, World, check_consistent
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


def test_a_lone_rekey_is_deleted_once_the_hold_is_over(make_world: WorldFactory) -> None:
    world = _world(make_world, 1)
    a = world.host("a")
    [old] = a.engine.sadb.children.values()
    a.engine.request(Rekey(peer="b"), world.now)
    world.settle(0)  # the CREATE, its REPLY; no timer
    assert not sent_of(a, MessageType.DELETE)
    # §3.6: the old outbound SA went with the new pair in; the old inbound one waits.
    sa = old.sas[0]
    outbound, inbound = (B, sa.protocol, sa.outbound_spi), (A, sa.protocol, sa.inbound_spi)
    assert outbound not in a.kernel.sas and inbound in a.kernel.sas
    world.advance(DELETE_HOLD * 0.9)
    assert not sent_of(a, MessageType.DELETE)
    world.advance(DELETE_HOLD * 0.2)
    assert len(sent_of(a, MessageType.DELETE)) == 1
    assert not a.engine.deleting
    world.settle()
    assert check_consistent(world) == 2


def test_removing_the_peer_takes_the_waiting_children_with_it(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = _world(make_world, 3)
    a = world.host("a")
    old = _rekey_all(world)
    world.settle(0)  # the rekeys' exchanges, no timer
    assert a.engine.deleting  # the old pairs' DELETE is held
    new = [c.sas[0].inbound_spi for c in a.engine.sadb.children.values() if c.rekey_of]
    a.engine.remove_peer("b", world.now)
    world.settle(0)
    [delete] = sent_of(a, MessageType.DELETE)
    assert sorted(_named(delete, session_key(kerberos_host))) == sorted(old + new)
    world.settle()
    assert any(isinstance(n, PeerRemoved) for n in a.notices)
    assert check_consistent(world) == 0
    assert not a.engine.sadb.children and not a.engine.leaving


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


# ---------------------------------------------------------------- the hold (§3.6)
# The DELETE of a pair rekeyed away is held (Initiator.start_delete(hold=True), RFC 4430 §3.6:
# the old SA may be deleted "or" left to time out, and the newest SA is the one used): it leaves
# DELETE_HOLD after the first of its peer's held children came, with every child held for that
# peer meanwhile, or at once when MAX_DELETE_CHILDREN wait. A DELETE for another reason
# (Terminate, the peer removed) takes the held children with it; a held child that times out
# (hard expiry) goes locally and is named by no DELETE.


def _rekey_apart(world: World, children: list[Child], gap: float) -> None:
    """Rekey each of a's `children` in a run of inputs of its own, `gap` seconds apart, each
    exchange run to its end but no timer fired."""
    a = world.host("a")
    for child in children:
        a.engine.request(Rekey(spi=child.sas[0].inbound_spi), world.now)
        world.settle(0)
        world.now += gap


def _deletes(world: World, kerberos_host: KerberosHostFactory) -> list[list[int]]:
    """The SPIs each DELETE a sent names, in order."""
    key = session_key(kerberos_host)
    return [_named(d, key) for d in sent_of(world.host("a"), MessageType.DELETE)]


def _expire(host: Host, protocol: int, spi: int, now: float) -> None:
    """The kernel's hard expiry of one of host's inbound SAs: gone, and the engine told."""
    host.kernel.sas.pop((host.address, protocol, spi), None)
    host.engine.kernel_event(Expire(protocol, spi, host.address, True), now)


def _inbound(children: list[Child]) -> list[int]:
    return sorted(c.sas[0].inbound_spi for c in children)


def test_rekeys_in_separate_runs_within_the_hold_go_in_one_delete(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = _world(make_world, 3)
    a = world.host("a")
    old = list(a.engine.sadb.children.values())
    start = world.now
    _rekey_apart(world, old, DELETE_HOLD / 4)
    assert not _deletes(world, kerberos_host)
    # The hold runs from the first child held, not the last (held DELETE_HOLD / 2 ago).
    world.advance(start + DELETE_HOLD * 1.01 - world.now)
    [delete] = _deletes(world, kerberos_host)
    assert sorted(delete) == _inbound(old)
    world.settle()
    assert len(_deletes(world, kerberos_host)) == 1
    assert check_consistent(world) == 6
    assert len(a.engine.sadb.children) == 3


def test_the_cap_starts_the_delete_at_once(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    count = MAX_DELETE_CHILDREN + 1
    world = _world(make_world, count)
    old = list(world.host("a").engine.sadb.children.values())
    _rekey_apart(world, old, 0.0)
    # The 24th child held sent the DELETE of all 24 at once; the 25th waits for the hold.
    assert [sorted(d) for d in _deletes(world, kerberos_host)] == [_inbound(old[:-1])]
    world.advance(DELETE_HOLD)
    assert [sorted(d) for d in _deletes(world, kerberos_host)[1:]] == [_inbound(old[-1:])]
    world.settle()
    assert check_consistent(world) == 2 * count


def test_terminate_takes_the_held_children_with_it(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = _world(make_world, 2)
    a = world.host("a")
    old = list(a.engine.sadb.children.values())
    _rekey_apart(world, old, 0.0)
    new = [c for c in a.engine.sadb.children.values() if c not in old]
    a.engine.request(Terminate(peer="b"), world.now)
    world.settle(0)  # no timer: not the hold's
    [delete] = _deletes(world, kerberos_host)
    assert sorted(delete) == _inbound(old + new)
    assert not a.engine.deleting
    world.settle()
    assert check_consistent(world) == 0


def test_shutdown_deletes_the_held_children_of_every_peer(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    # kinkd's shutdown with delete_on_stop sends Terminate() and waits until no child is left
    # (kink.daemon.runner._shutdown): the held ones go at once with the rest.
    world = _world(make_world, 2)
    a = world.host("a")
    old = list(a.engine.sadb.children.values())
    _rekey_apart(world, old[:1], 0.0)
    a.engine.request(Terminate(), world.now)
    world.settle(0)
    [delete] = _deletes(world, kerberos_host)
    assert len(delete) == 3 and set(_inbound(old)) <= set(delete)
    assert not a.engine.deleting
    world.settle()
    assert not a.engine.sadb.children
    assert check_consistent(world) == 0


def test_a_peer_moved_elsewhere_takes_the_held_children_with_it(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    # Another address: remove_peer + add_peer (kink.engine.lifecycle.replace_peer); the old
    # peer's DELETE, to its old address, names the held pairs too.
    world = _world(make_world, 2)
    a = world.host("a")
    old = list(a.engine.sadb.children.values())
    _rekey_apart(world, old, 0.0)
    new = [c for c in a.engine.sadb.children.values() if c not in old]
    a.engine.replace_peer(replace(a.engine.peers["b"].config, address="192.0.2.9"), world.now)
    world.settle(0)
    [delete] = _deletes(world, kerberos_host)
    assert sorted(delete) == _inbound(old + new)
    assert not a.engine.deleting


def test_held_children_removed_meanwhile_are_not_named(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    # A new peer epoch (§3.7) takes down every pair of the old one locally, the held ones too.
    world = _world(make_world, 2)
    a = world.host("a")
    old = list(a.engine.sadb.children.values())
    _rekey_apart(world, old, 0.0)
    peer = a.engine.peers["b"]
    assert peer.epoch is not None
    a.engine.saw_epoch(peer, peer.epoch + 1, world.now)
    world.advance(DELETE_HOLD)
    assert not _deletes(world, kerberos_host)
    assert all(c.id not in a.engine.sadb.children for c in old)


def test_a_held_child_that_expires_goes_locally_and_is_not_named(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = _world(make_world, 2)
    a = world.host("a")
    old = list(a.engine.sadb.children.values())
    _rekey_apart(world, old, 0.0)
    expired = old[0].sas[0]
    a.notices.clear()
    _expire(a, expired.protocol, expired.inbound_spi, world.now)
    world.settle(0)
    [gone] = [n for n in a.notices if isinstance(n, SaDeleted)]
    assert (gone.child, gone.reason) == (old[0].id, "expired")
    assert old[0].id not in a.engine.sadb.children
    assert not any(spi == expired.inbound_spi for _, _, spi in a.kernel.sas)
    world.advance(DELETE_HOLD)
    assert [sorted(d) for d in _deletes(world, kerberos_host)] == [_inbound(old[1:])]


def test_the_last_held_child_expiring_ends_the_hold(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = _world(make_world, 1)
    a = world.host("a")
    [old] = a.engine.sadb.children.values()
    _rekey_apart(world, [old], 0.0)
    expired = old.sas[0]
    _expire(a, expired.protocol, expired.inbound_spi, world.now)
    assert not a.engine.deleting
    due = a.engine.next_timer()
    assert due is None or due > world.now + DELETE_HOLD  # the hold's timer cancelled
    world.advance(DELETE_HOLD)
    assert not _deletes(world, kerberos_host)
    # Only the new pair is left here; b's old one times out as ours did (same lifetime).
    assert [c.id for c in a.engine.sadb.children.values()] != [old.id]
    assert len(a.engine.sadb.children) == 1 and len(a.kernel.sas) == 2


def test_a_rekey_that_ends_after_the_stop_began_is_deleted_at_once(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    # kinkd's shutdown (kink.daemon.runner._shutdown) calls stop_holding: a rekey whose REPLY
    # comes afterwards must not hold its DELETE past the daemon's end.
    world = _world(make_world, 2)
    a = world.host("a")
    old = list(a.engine.sadb.children.values())
    _rekey_apart(world, old[:1], 0.0)
    a.engine.stop_holding(world.now)
    world.settle(0)
    assert [sorted(d) for d in _deletes(world, kerberos_host)] == [_inbound(old[:1])]
    _rekey_apart(world, old[1:], 0.0)  # no timer fired: not the hold's end
    assert [sorted(d) for d in _deletes(world, kerberos_host)[1:]] == [_inbound(old[1:])]
    assert not a.engine.deleting
    world.settle()
    assert check_consistent(world) == 4
