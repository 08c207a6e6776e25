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

_K = TypeVar("_K")


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


@dataclass(eq=False)
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
    # What was installed, for kinkctl and restart records (no keys).
    mode: str = "transport"
    transforms: tuple[SaTransform, ...] = ()
    life: SaLifetimes | None = None
    pfs_group: int | None = None  # the KE group when the exchange carried KE (§3.2)
    # DPD (§3.7): per protocol the (inbound, outbound) byte counters last seen, and since when
    # outbound grew without inbound.
    counters: dict[int, tuple[int, int]] = field(default_factory=dict)
    quiet_since: float | None = None

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


class Sadb:
    """Children by id, by peer name, by (peer name, policy), inbound (protocol, spi) and
    outbound (peer, protocol, spi).

    Every exchange asks which children serve one policy (settle's §3.6 newest-wins, an
    ACQUIRE's or keep_up's "has it an SA?"): of_policy answers at the cost of that policy's
    children (one, two while it is rekeyed), of_peer at the cost of the peer's, never of every
    child (issue 9: 10,000+ SAs; one peer may hold most of them, one per policy). A child's
    peer name and policy never change and a peer keeps its name for its life (a rename is a
    new peer), so the keys at add() find the entries again at remove().
    """

    def __init__(self) -> None:
        self.children: dict[int, Child] = {}
        self._by_peer: dict[str, dict[int, Child]] = {}
        self._by_policy: dict[tuple[str, Policy], dict[int, Child]] = {}
        self._inbound: dict[tuple[int, int], Child] = {}
        self._outbound: dict[tuple[str, int, int], Child] = {}
        self._next_id = 1

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def add(self, child: Child) -> None:
        self.children[child.id] = child
        name = child.peer.config.name
        self._by_peer.setdefault(name, {})[child.id] = child
        self._by_policy.setdefault((name, child.policy), {})[child.id] = child
        for sa in child.sas:
            self._inbound[(sa.protocol, sa.inbound_spi)] = child
            self._outbound[(child.peer.config.name, sa.protocol, sa.outbound_spi)] = child

    def remove(self, child: Child) -> None:
        if child.rekey_timer is not None:
            child.rekey_timer.cancel()  # a forgotten child is never rekeyed
            child.rekey_timer = None
        self.children.pop(child.id, None)
        name = child.peer.config.name
        _unindex(self._by_peer, name, child)
        _unindex(self._by_policy, (name, child.policy), child)
        for sa in child.sas:
            if self._inbound.get((sa.protocol, sa.inbound_spi)) is child:
                del self._inbound[(sa.protocol, sa.inbound_spi)]
            key = (child.peer.config.name, sa.protocol, sa.outbound_spi)
            if self._outbound.get(key) is child:
                del self._outbound[key]

    def by_inbound(self, protocol: int, spi: int) -> Child | None:
        return self._inbound.get((protocol, spi))

    def by_outbound(self, peer: str, protocol: int, spi: int) -> Child | None:
        return self._outbound.get((peer, protocol, spi))

    def of_peer(self, peer: str) -> Iterator[Child]:
        """The peer's children in the order they were added, as they are now: callers may
        add or remove children while they go through them."""
        mine = self._by_peer.get(peer)
        return iter(()) if mine is None else iter(list(mine.values()))

    def of_policy(self, peer: str, policy: Policy) -> list[Child]:
        """The peer's children for `policy` (equal selectors and reqid), in the order they
        were added; a list of its own, so callers may add or remove children meanwhile."""
        mine = self._by_policy.get((peer, policy))
        return [] if mine is None else list(mine.values())


def _unindex(index: dict[_K, dict[int, Child]], key: _K, child: Child) -> None:
    mine = index.get(key)
    if mine is not None and mine.get(child.id) is child:
        del mine[child.id]
        if not mine:
            del index[key]
