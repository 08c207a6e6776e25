"""Sadb's per-peer index (issue 9): of_peer sees exactly that peer's children, in the order
they were added, and stays right through removals, also while a caller walks it."""

from ipaddress import ip_network

from kink.engine.config import PeerConfig, Policy
from kink.engine.events import Selector
from kink.engine.proposals import Lifetime
from kink.engine.sadb import Child, PeerState, Sadb, SaPair

POLICY = Policy(Selector(ip_network("192.0.2.1/32")), Selector(ip_network("192.0.2.2/32")), 1)


def _peer(name: str) -> PeerState:
    return PeerState(PeerConfig(name, "192.0.2.2", f"kink/{name}@TEST", (POLICY,), ()))


def _child(sadb: Sadb, peer: PeerState, spi: int) -> Child:
    child = Child(
        sadb.new_id(), peer, POLICY, True, [SaPair(3, spi, spi + 1)], Lifetime(60, 0), 1, 0.0
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
