"""The engine's own view of SAs and peers (RFC 4430 §3.6, §3.7).

A Child is what one KINK_ISAKMP negotiates: one SA bundle, i.e. per protocol an inbound and an
outbound SA, with the policy it serves, who initiated it (only the initiator rekeys, §3.6),
and the peer's epoch when it was created (§3.7: a changed epoch invalidates it).
"""

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, TypeVar

from kink.engine.config import PeerConfig, Policy
from kink.engine.events import SaLifetimes, SaTransform
from kink.engine.proposals import Lifetime

if TYPE_CHECKING:
    from kink.engine.core import Timer


class ChildState(Enum):
    LARVAL = "larval"  # being installed
    INSTALLED = "installed"
    DYING = "dying"  # DELETE sent or received; inbound SAs go after the grace timer


@dataclass(eq=False, slots=True)
class SaPair:
    protocol: int
    inbound_spi: int
    outbound_spi: int
    inbound: bool = False  # installed in the kernel
    outbound: bool = False
    counters: tuple[int, int] | None = None  # DPD: the last (inbound, outbound) byte counts


class SaCounters:
    """Child.counters: per protocol the (inbound, outbound) byte counters last seen (DPD,
    §3.7), kept on the child's SaPair of that protocol. A dict per child was ~300 octets once
    the daemon's traffic poll had sampled it, i.e. for every child (issue 9)."""

    __slots__ = ("_sas",)

    def __init__(self, sas: list[SaPair]) -> None:
        self._sas = sas

    def get(self, protocol: int, default: tuple[int, int]) -> tuple[int, int]:
        for sa in self._sas:
            if sa.protocol == protocol and sa.counters is not None:
                return sa.counters
        return default

    def __setitem__(self, protocol: int, counters: tuple[int, int]) -> None:
        for sa in self._sas:
            if sa.protocol == protocol:
                sa.counters = counters
                return
        raise KeyError(protocol)  # a protocol the child has no SA of


# A Child has slots, not a __dict__: 100,000s of them live as long as their SAs (issue 9).
# (A weak reference slot too: tests check that nothing holds a forgotten child.)
@dataclass(eq=False, slots=True, weakref_slot=True)
class Child:
    id: int
    peer: "PeerState"
    policy: Policy
    initiator: bool
    sas: list[SaPair]
    lifetime: Lifetime
    peer_epoch: int | None
    created: float
    three_way: bool = False
    rekey_of: int | None = None
    state: ChildState = ChildState.LARVAL
    rekey_at: float | None = None
    rekey_timer: "Timer | None" = None  # cancelled when the child is forgotten
    rekeying: bool = False
    # What was installed, for kinkctl and restart records (no keys). Equal ones are shared
    # between children (Sadb.add).
    mode: str = "transport"
    transforms: tuple[SaTransform, ...] = ()
    life: SaLifetimes | None = None
    pfs_group: int | None = None  # the KE group when the exchange carried KE (§3.2)
    # DPD (§3.7): since when outbound grew without inbound (the counters: SaPair).
    quiet_since: float | None = None

    @property
    def counters(self) -> SaCounters:
        """Per protocol the (inbound, outbound) byte counters last seen (DPD, §3.7)."""
        return SaCounters(self.sas)

    def spis(self) -> tuple[tuple[int, int, int], ...]:
        return tuple((s.protocol, s.inbound_spi, s.outbound_spi) for s in self.sas)


@dataclass(eq=False)
class PeerState:
    config: PeerConfig
    epoch: int | None = None
    next_xid: int = 0
    # initiator transactions by XID (kink.engine.initiator.Transaction), and the queue of
    # transactions waiting for the per-peer cap (issue 4, §9)
    transactions: dict[int, object] = field(default_factory=dict)
    queue: deque[Callable[[float], None]] = field(default_factory=deque)
    # per policy, the negotiations of CREATEs under way (not done, not yet ACKed) or queued:
    # "is one under way?" costs no walk of the transactions, which a high rate of 3-way
    # CREATEs fills with ACKed ones kept to regenerate their ACK (§9), nor of the queue
    # (issue 9). Kept by kink.engine.initiator.
    creating: dict[Policy, int] = field(default_factory=dict)
    active: int = 0
    rtt: float | None = None
    dpd_pending: bool = False
    removed: bool = False  # Engine.remove_peer: only its DELETE exchange still runs
    # start_action=start: the delay of the next retry after a failed renegotiation (0: none
    # failed since the last success) and the timer of the retry pending.
    backoff: float = 0.0
    retry: "Timer | None" = None
    # The peer answered only the first KINK_ISAKMP of a CREATE of several (racoon2's kinkd
    # takes the first, "duplicate KINK_ISAKMP; currently not supported, ignored"): one
    # negotiation per CREATE to it from then on (kink.engine.initiator).
    one_negotiation: bool = False


# Distinct values Sadb.add shares at most (per kind): the values children hold come from the
# configuration (transforms, modes, lifetimes), so a handful are in use; a bound all the same,
# since nothing is ever dropped from the tables.
_SHARED_MAX = 1024

_Life = tuple[int, int, int, int]


class Sadb:
    """Children by id, by peer name, by (peer name, policy), inbound (protocol, spi) and
    outbound (peer, protocol, spi).

    Every exchange asks which children serve one policy (settle's §3.6 newest-wins, an
    ACQUIRE's or keep_up's "has it an SA?"): of_policy answers at the cost of that policy's
    children (one, two while it is rekeyed), of_peer at the cost of the peer's, never of every
    child (issue 9: 10,000+ SAs; one peer may hold most of them, one per policy). A child's
    peer name and policy never change and a peer keeps its name for its life (a rename is a
    new peer), so the keys at add() find the entries again at remove().

    Memory (issue 9: 100,000 SA pairs in a few hundred MB): an index entry holding one child
    holds the child itself, not a dict of one (most policies, and many peers, have one child
    at a time); the SPI indexes are keyed by the SPIs the SaPairs hold, with no tuple per
    child; and the mode, lifetimes and transforms of children are shared when equal (add).
    """

    def __init__(self) -> None:
        self.children: dict[int, Child] = {}
        self._by_peer: dict[str, Child | dict[int, Child]] = {}
        self._by_policy: dict[tuple[str, Policy], Child | dict[int, Child]] = {}
        self._inbound: dict[int, dict[int, Child]] = {}  # protocol -> inbound SPI -> child
        # protocol -> outbound SPI -> child, or its children by peer name when peers chose
        # the same SPI (an SPI is unique per destination only, RFC 4301 §4.1)
        self._outbound: dict[int, dict[int, Child | dict[str, Child]]] = {}
        self._transforms: dict[tuple[SaTransform, ...], tuple[SaTransform, ...]] = {}
        self._lives: dict[_Life, SaLifetimes] = {}
        self._lifetimes: dict[tuple[int, int], Lifetime] = {}
        self._modes: dict[str, str] = {}
        self._next_id = 1

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def add(self, child: Child) -> None:
        self._share(child)
        self.children[child.id] = child
        name = child.peer.config.name
        _index(self._by_peer, name, child)
        _index(self._by_policy, (name, child.policy), child)
        for sa in child.sas:
            self._inbound.setdefault(sa.protocol, {})[sa.inbound_spi] = child
            out = self._outbound.setdefault(sa.protocol, {})
            held = out.get(sa.outbound_spi)
            if held is None or (isinstance(held, Child) and held.peer.config.name == name):
                out[sa.outbound_spi] = child
            elif isinstance(held, Child):
                out[sa.outbound_spi] = {held.peer.config.name: held, name: child}
            else:
                held[name] = child

    def remove(self, child: Child) -> None:
        if child.rekey_timer is not None:
            child.rekey_timer.cancel()  # a forgotten child is never rekeyed
            child.rekey_timer = None
        self.children.pop(child.id, None)
        name = child.peer.config.name
        _unindex(self._by_peer, name, child)
        _unindex(self._by_policy, (name, child.policy), child)
        for sa in child.sas:
            inbound = self._inbound.get(sa.protocol)
            if inbound is not None and inbound.get(sa.inbound_spi) is child:
                del inbound[sa.inbound_spi]
            out = self._outbound.get(sa.protocol)
            if out is not None:
                _drop_outbound(out, sa.outbound_spi, name, child)

    def by_inbound(self, protocol: int, spi: int) -> Child | None:
        inbound = self._inbound.get(protocol)
        return None if inbound is None else inbound.get(spi)

    def by_outbound(self, peer: str, protocol: int, spi: int) -> Child | None:
        out = self._outbound.get(protocol)
        held = None if out is None else out.get(spi)
        if isinstance(held, dict):
            return held.get(peer)
        return held if held is not None and held.peer.config.name == peer else None

    def of_peer(self, peer: str) -> Iterator[Child]:
        """The peer's children in the order they were added, as they are now: callers may
        add or remove children while they go through them."""
        return iter(_listed(self._by_peer.get(peer)))

    def of_policy(self, peer: str, policy: Policy) -> list[Child]:
        """The peer's children for `policy` (equal selectors and reqid), in the order they
        were added; a list of its own, so callers may add or remove children meanwhile."""
        return _listed(self._by_policy.get((peer, policy)))

    def _share(self, child: Child) -> None:
        """The child's mode, lifetimes and transforms: those of an earlier child if equal.
        A restored child's come from its own record (a state file's text), a negotiated
        one's from its own exchange; kept per child they were ~400 octets of each."""
        # The lifetime keyed by its two numbers (issue 4: two children per exchange): a
        # Lifetime's generated __hash__ and __eq__ would run in Python for every lookup.
        child.mode = _shared(self._modes, child.mode, child.mode)
        lifetime = child.lifetime
        child.lifetime = _shared(self._lifetimes, (lifetime.seconds, lifetime.kilobytes), lifetime)
        child.transforms = _shared(self._transforms, child.transforms, child.transforms)
        life = child.life
        if life is not None:
            key = (life.soft_seconds, life.hard_seconds, life.soft_bytes, life.hard_bytes)
            child.life = _shared(self._lives, key, life)


_K = TypeVar("_K")
_V = TypeVar("_V")


def _shared(table: dict[_K, _V], key: _K, value: _V) -> _V:
    """The value kept for `key`, or `value` (kept for it, unless the table is full)."""
    kept = table.get(key)
    if kept is not None:
        return kept
    if len(table) < _SHARED_MAX:
        table[key] = value
    return value


# _index and _unindex hash the key once when a policy has one child (issue 4: a Policy's
# __hash__ runs in Python, and every exchange adds and removes a child on each side).


def _index(index: dict[_K, Child | dict[int, Child]], key: _K, child: Child) -> None:
    held = index.setdefault(key, child)
    if held is child:
        return
    if isinstance(held, dict):
        held[child.id] = child
    else:
        index[key] = {held.id: held, child.id: child}


def _unindex(index: dict[_K, Child | dict[int, Child]], key: _K, child: Child) -> None:
    held = index.pop(key, None)
    if held is None or held is child:
        return
    if isinstance(held, dict):
        if held.get(child.id) is child:
            del held[child.id]
        # one child again (a rekey is over): held alone (a dict holds two or more)
        index[key] = next(iter(held.values())) if len(held) == 1 else held
    else:
        index[key] = held  # another child's entry, put back


def _drop_outbound(
    out: dict[int, Child | dict[str, Child]], spi: int, name: str, child: Child
) -> None:
    held = out.get(spi)
    if held is child:
        del out[spi]
    elif isinstance(held, dict) and held.get(name) is child:
        del held[name]
        if len(held) == 1:  # one peer's SPI again
            out[spi] = next(iter(held.values()))


def _listed(held: Child | dict[int, Child] | None) -> list[Child]:
    if held is None:
        return []
    return list(held.values()) if isinstance(held, dict) else [held]
