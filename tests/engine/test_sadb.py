"""Sadb's per-peer and per-policy indexes (issue 9): of_peer / of_policy see exactly that
peer's (and policy's) children, in the order they were added, and stay right through removals,
also while a caller walks them."""

from dataclasses import replace
from ipaddress import ip_network

from kink.engine.config import PeerConfig, Policy
from kink.engine.events import Selector
from kink.engine.proposals import Lifetime
from kink.engine.sadb import Child, PeerState, Sadb, SaPair

POLICY = Policy(Selector(ip_network("192.0.2.1/32")), Selector(ip_network("192.0.2.2/32")), 1)
OTHER = Policy(POLICY.local, POLICY.remote, 2)  # equal selectors, another reqid


def _peer(name: str) -> PeerState:
    return PeerState(PeerConfig(name, "192.0.2.2", f"kink/{name}@TEST", (POLICY,), ()))


def _child(sadb: Sadb, peer: PeerState, spi: int, policy: Policy = POLICY) -> Child:
    child = Child(
        sadb.new_id(), peer, policy, True, [SaPair(3, spi, spi + 1)], Lifetime(60, 0), 1, 0.0
    )
    sadb.add(child)
    return child


def test_of_peer_sees_only_that_peers_children_in_order() -> None:
    sadb = Sadb()
    b, c = _peer("b"), _peer("c")
    b1, c1, b2 = _child(sadb, b, 0x100), _child(sadb, c, 0x200), _child(sadb, b, 0x300)
    assert list(sadb.of_peer("b")) == [b1, b2]
    assert list(sadb.of_peer("c")) == [c1]
    assert list(sadb.of_peer("nobody")) == []


def test_of_peer_follows_removals() -> None:
    sadb = Sadb()
    b = _peer("b")
    b1, b2 = _child(sadb, b, 0x100), _child(sadb, b, 0x300)
    sadb.remove(b1)
    assert list(sadb.of_peer("b")) == [b2]
    sadb.remove(b2)
    assert list(sadb.of_peer("b")) == []
    sadb.remove(b2)  # twice: nothing left to undo
    assert list(sadb.of_peer("b")) == [] and not sadb.children
    b3 = _child(sadb, b, 0x500)
    assert list(sadb.of_peer("b")) == [b3]


def test_of_peer_may_be_walked_while_children_come_and_go() -> None:
    sadb = Sadb()
    b = _peer("b")
    first = [_child(sadb, b, spi) for spi in (0x100, 0x300, 0x500)]
    seen = []
    for child in sadb.of_peer("b"):
        seen.append(child)
        sadb.remove(child)
        _child(sadb, b, child.sas[0].inbound_spi + 0x1000)
    assert seen == first
    assert [c.sas[0].inbound_spi for c in sadb.of_peer("b")] == [0x1100, 0x1300, 0x1500]


def test_of_policy_sees_only_that_peers_children_of_that_policy() -> None:
    sadb = Sadb()
    b, c = _peer("b"), _peer("c")
    b1 = _child(sadb, b, 0x100)
    c1 = _child(sadb, c, 0x200)
    b_other = _child(sadb, b, 0x300, OTHER)
    b2 = _child(sadb, b, 0x500)  # a rekey of b1: both serve POLICY until b1 goes (§3.6)
    assert sadb.of_policy("b", POLICY) == [b1, b2]
    assert sadb.of_policy("b", OTHER) == [b_other]
    assert sadb.of_policy("c", POLICY) == [c1]
    assert sadb.of_policy("c", OTHER) == [] and sadb.of_policy("nobody", POLICY) == []
    # equal policies built anew find the same children
    again = Policy(Selector(ip_network("192.0.2.1/32")), Selector(ip_network("192.0.2.2/32")), 1)
    assert sadb.of_policy("b", again) == [b1, b2]


def test_of_policy_follows_removals_and_keeps_nothing_of_the_gone() -> None:
    sadb = Sadb()
    b = _peer("b")
    b1, b2 = _child(sadb, b, 0x100), _child(sadb, b, 0x300)
    listed = sadb.of_policy("b", POLICY)
    sadb.remove(b1)
    assert listed == [b1, b2]  # a list of its own
    assert sadb.of_policy("b", POLICY) == [b2]
    sadb.remove(b2)
    sadb.remove(b2)  # twice: nothing left to undo
    assert sadb.of_policy("b", POLICY) == []
    assert not sadb._by_policy and not sadb._by_peer
    b3 = _child(sadb, b, 0x700)
    assert sadb.of_policy("b", POLICY) == [b3]


def test_a_child_of_a_removed_peer_does_not_unindex_its_successors() -> None:
    """A removed peer's name may be a new peer's already (replace_peer): removing the old
    peer's child leaves the new one's indexed."""
    sadb = Sadb()
    old, new = _peer("b"), _peer("b")
    gone, kept = _child(sadb, old, 0x100), _child(sadb, new, 0x300)
    sadb.remove(gone)
    assert sadb.of_policy("b", POLICY) == [kept] and list(sadb.of_peer("b")) == [kept]


def test_policy_hash_is_made_once_and_follows_its_fields() -> None:
    """Policy keeps its hash (Sadb.of_policy, PeerState.creating); a replace() is a new policy
    with its own, and equal policies hash alike, as the indexes need."""
    other = replace(POLICY, reqid=2)
    assert other == OTHER and hash(other) == hash(OTHER)
    assert replace(other, reqid=1) == POLICY and hash(replace(other, reqid=1)) == hash(POLICY)
    assert hash(POLICY) == hash((POLICY.local, POLICY.remote, POLICY.reqid, POLICY.send_ids))
    assert "_hash" not in repr(POLICY)
