"""Sadb's compact indexes and shared values (issue 9: memory per SA pair): peers that chose the
same outbound SPI are told apart, and children hold one copy of equal modes, transforms and
lifetimes."""

import copy
from dataclasses import replace
from ipaddress import ip_network

import pytest

from kink.engine.config import PeerConfig, Policy
from kink.engine.events import SaLifetimes, SaTransform, Selector
from kink.engine.proposals import Lifetime
from kink.engine.sadb import Child, PeerState, Sadb, SaPair
from tests.support.hashseed import unpickled_from_another_seed

POLICY = Policy(Selector(ip_network("192.0.2.1/32")), Selector(ip_network("192.0.2.2/32")), 1)
ESP = 3


def _peer(name: str) -> PeerState:
    return PeerState(PeerConfig(name, "192.0.2.2", f"kink/{name}@TEST", (POLICY,), ()))


def _child(sadb: Sadb, peer: PeerState, spi_in: int, spi_out: int) -> Child:
    child = Child(
        sadb.new_id(),
        peer,
        POLICY,
        True,
        [SaPair(ESP, spi_in, spi_out)],
        Lifetime(60, 0),
        1,
        0.0,
        # Built anew for each child, as a state file's records and exchanges make them.
        mode="".join(["tun", "nel"]),
        transforms=(SaTransform(ESP, "".join(["cbc", "(aes)"]), 128, None, "hmac(sha1)", 96),),
        life=SaLifetimes(0, 3600, 0, 0),
    )
    sadb.add(child)
    return child


def test_peers_with_the_same_outbound_spi_are_told_apart() -> None:
    sadb = Sadb()
    b, c, d = _peer("b"), _peer("c"), _peer("d")
    b1, c1 = _child(sadb, b, 0x100, 0x900), _child(sadb, c, 0x200, 0x900)
    assert sadb.by_outbound("b", ESP, 0x900) is b1
    assert sadb.by_outbound("c", ESP, 0x900) is c1
    assert sadb.by_outbound("d", ESP, 0x900) is None
    d1 = _child(sadb, d, 0x300, 0x900)
    sadb.remove(b1)
    assert sadb.by_outbound("b", ESP, 0x900) is None
    assert sadb.by_outbound("c", ESP, 0x900) is c1
    assert sadb.by_outbound("d", ESP, 0x900) is d1
    sadb.remove(d1)
    assert sadb.by_outbound("c", ESP, 0x900) is c1
    assert sadb.by_outbound("d", ESP, 0x900) is None
    sadb.remove(c1)
    assert sadb.by_outbound("c", ESP, 0x900) is None
    assert sadb.by_inbound(ESP, 0x200) is None


def test_a_removed_peers_child_leaves_its_successors_spi() -> None:
    """replace_peer: the old and the new peer of a name; the newer child of the SPI wins, and
    removing the old one leaves it."""
    sadb = Sadb()
    old, new = _peer("b"), _peer("b")
    gone = _child(sadb, old, 0x100, 0x900)
    kept = _child(sadb, new, 0x200, 0x900)
    assert sadb.by_outbound("b", ESP, 0x900) is kept
    sadb.remove(gone)
    assert sadb.by_outbound("b", ESP, 0x900) is kept
    assert sadb.by_inbound(ESP, 0x200) is kept and sadb.by_inbound(ESP, 0x100) is None


def test_equal_values_of_children_are_held_once() -> None:
    sadb = Sadb()
    b = _peer("b")
    first, second = _child(sadb, b, 0x100, 0x101), _child(sadb, b, 0x200, 0x201)
    assert second.mode is first.mode and first.mode == "tunnel"
    assert second.transforms is first.transforms
    assert second.life is first.life and second.lifetime is first.lifetime
    other = Child(
        sadb.new_id(),
        b,
        POLICY,
        True,
        [SaPair(ESP, 0x300, 0x301)],
        Lifetime(60, 0),
        1,
        0.0,
        life=SaLifetimes(0, 7200, 0, 0),
    )
    sadb.add(other)
    assert other.life == SaLifetimes(0, 7200, 0, 0) and other.life is not first.life
    assert other.transforms == () and other.mode == "transport"


def test_counters_are_kept_per_protocol_on_the_sa_pairs() -> None:
    sadb = Sadb()
    child = _child(sadb, _peer("b"), 0x100, 0x101)
    child.sas.append(SaPair(2, 0x200, 0x201))  # AH too
    assert child.counters.get(ESP, (0, 0)) == (0, 0)  # no sample yet
    child.counters[ESP] = (10, 20)
    child.counters[2] = (1, 2)
    assert child.counters.get(ESP, (0, 0)) == (10, 20) and child.sas[0].counters == (10, 20)
    assert child.counters.get(2, (0, 0)) == (1, 2)
    with pytest.raises(KeyError):
        child.counters[51] = (1, 1)  # no SA of that protocol


def test_sa_transform_hashes_by_value_in_every_process() -> None:
    """SaTransform keeps its hash (the SADB's shared-values table); a copy, or one pickled in a
    process with another hash seed (its names are str), is hashed anew, and replace() makes
    a transform with its own."""
    transform = SaTransform(ESP, "cbc(aes)", 128, None, "hmac(sha1)", 96)
    assert {transform: 1}[SaTransform(ESP, "cbc(aes)", 128, None, "hmac(sha1)", 96)] == 1
    other = replace(transform, protocol=2)
    assert hash(other) == hash(SaTransform(2, "cbc(aes)", 128, None, "hmac(sha1)", 96))
    assert copy.deepcopy(transform) == transform and "_hash" not in repr(transform)
    script = (
        "import pickle, sys\n"
        "from kink.engine.events import SaTransform\n"
        "t = SaTransform(3, 'cbc(aes)', 128, None, 'hmac(sha1)', 96)\n"
        "hash(t)\n"
        "sys.stdout.buffer.write(pickle.dumps(t))\n"
    )
    travelled = unpickled_from_another_seed(script)
    assert travelled == transform
    assert {transform: 1}[travelled] == 1
