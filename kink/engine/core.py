"""State and plumbing shared by the initiator and responder sides of the Engine: the action
queue, timers, helper tokens, peers, epochs (§3.7) and the SA bookkeeping both sides use."""

import heapq
import itertools
import random
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import ip_network

from kink.engine.config import EngineConfig, PeerConfig, Policy, StartAction
from kink.engine.events import (
    Action,
    Address,
    DeleteSa,
    Dropped,
    HelperResult,
    InstallSa,
    PeerEpochChanged,
    SaDeleted,
    SaEstablished,
    SaSpec,
    Selector,
    TicketResult,
    UpdateSa,
)
from kink.engine.kerberos import KerberosPort
from kink.engine.sadb import Child, ChildState, PeerState, Sadb

_DEFAULT_REQID = 0x4B000  # reqids of the implicit host-to-host policies
HelperCallback = Callable[[HelperResult, float], None]


@dataclass(order=True)
class Timer:
    when: float
    seq: int
    fn: Callable[[float], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class Join:
    """Waits for `count` helper results, then calls `done(errors)` once."""

    __slots__ = ("_done", "_errors", "_left")

    def __init__(self, count: int, done: Callable[[list[str], float], None]) -> None:
        self._left = count
        self._errors: list[str] = []
        self._done = done

    def arrived(self, result: HelperResult, now: float) -> None:
        if result.error is not None:
            self._errors.append(result.error)
        self._left -= 1
        if self._left == 0:
            self._done(self._errors, now)


class EngineCore(ABC):
    def __init__(
        self,
        config: EngineConfig,
        kerberos: KerberosPort,
        *,
        epoch: int,
        now: float,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.kerberos = kerberos
        self.epoch = epoch
        self.rng = rng if rng is not None else random.Random()
        self.sadb = Sadb()
        self.peers: dict[str, PeerState] = {p.name: PeerState(p) for p in config.peers}
        self.peers_by_address: dict[str, PeerState] = {
            p.config.address: p for p in self.peers.values()
        }
        self.policies: dict[int, tuple[PeerState, Policy]] = {}
        self.peer_policies: dict[str, tuple[Policy, ...]] = {}
        for index, peer in enumerate(self.peers.values()):
            peer.next_xid = self.rng.randrange(1 << 32)
            policies = effective_policies(peer.config, config.address, _DEFAULT_REQID + index)
            self.peer_policies[peer.config.name] = policies
            for policy in policies:
                self.policies[policy.reqid] = (peer, policy)
        self.actions: deque[Action] = deque()
        self.timers: list[Timer] = []
        self._timer_seq = itertools.count()
        self._tokens = itertools.count(1)
        self._ticket_tokens = self._tokens
        self.waiting: dict[int, HelperCallback] = {}
        self.ticket_waiting: dict[int, Callable[[TicketResult, float], None]] = {}
        self.counters: dict[str, int] = {}
        self.created = now

    # ------------------------------------------------------------------------- plumbing

    def emit(self, action: Action) -> None:
        self.actions.append(action)

    def token(self, callback: HelperCallback) -> int:
        token = next(self._tokens)
        self.waiting[token] = callback
        return token

    def schedule(self, when: float, fn: Callable[[float], None]) -> Timer:
        timer = Timer(when, next(self._timer_seq), fn)
        heapq.heappush(self.timers, timer)
        return timer

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def drop(self, cause: str, peer: Address) -> None:
        self.count(f"dropped.{cause}")
        self.emit(Dropped(cause, peer))

    def address(self, peer: PeerState) -> Address:
        return (peer.config.address, peer.config.port)

    def grace(self, peer: PeerState) -> float:
        """The DELETE grace timer (RFC 4430 §3.3): configured, else 2 x the measured RTT."""
        if self.config.delete_grace is not None:
            return self.config.delete_grace
        if peer.rtt is None:
            return self.config.delete_grace_default
        return 2 * peer.rtt

    # ---------------------------------------------------------------------------- epochs

    def saw_epoch(self, peer: PeerState, epoch: int, now: float) -> None:
        """RFC 4430 §3.7: record the peer's epoch from an authenticated AP-REQ / AP-REP; a
        changed one means the peer lost its SAs: every SA created under the old epoch goes,
        and the ones we want are negotiated again."""
        old = peer.epoch
        peer.epoch = epoch
        if old is None or old == epoch:
            return
        self.emit(PeerEpochChanged(peer.config.name, old, epoch))
        stale = [c for c in self.sadb.of_peer(peer.config.name) if c.peer_epoch != epoch]
        for child in stale:
            self.remove_child(child, "peer-epoch", now)
        if stale and peer.config.start_action is StartAction.START:
            self.renegotiate(peer, now)

    @abstractmethod
    def renegotiate(self, peer: PeerState, now: float) -> None:
        """Negotiate again the policies we want with `peer` (its start_action is START)."""

    # -------------------------------------------------------------------------- children

    def install(self, spec: SaSpec, child: Child, *, update: bool = False) -> int:
        def done(result: HelperResult, now: float) -> None:
            if result.error is not None:
                self.child_failed(child, f"install failed: {result.error}", now)

        token = self.token(done)
        self.emit(UpdateSa(token, spec) if update else InstallSa(token, spec))
        return token

    def delete_sa(self, protocol: int, spi: int, src: str, dst: str) -> None:
        self.emit(DeleteSa(self.token(_ignore), protocol, spi, src, dst))

    def delete_outbound(self, child: Child) -> None:
        us, them = self.config.address, child.peer.config.address
        for sa in child.sas:
            if sa.outbound:
                sa.outbound = False
                self.delete_sa(sa.protocol, sa.outbound_spi, us, them)

    def delete_inbound(self, child: Child) -> None:
        us, them = self.config.address, child.peer.config.address
        for sa in child.sas:
            if sa.inbound:
                sa.inbound = False
                self.delete_sa(sa.protocol, sa.inbound_spi, them, us)

    def remove_child(self, child: Child, reason: str, now: float) -> None:
        """Delete both directions locally at once (no message) and forget the child."""
        if child.id not in self.sadb.children:
            return
        self.delete_outbound(child)
        self.delete_inbound(child)
        self.sadb.remove(child)
        child.state = ChildState.DYING
        self.emit(SaDeleted(child.peer.config.name, child.id, reason))

    @abstractmethod
    def child_failed(self, child: Child, reason: str, now: float) -> None:
        """An SA of `child` could not be installed: take the child down on both sides."""

    def established(self, child: Child, now: float) -> None:
        """A child is in place on our side: notify, and settle rekeys and duplicates (§3.6)."""
        child.state = ChildState.INSTALLED
        self.emit(
            SaEstablished(
                child.peer.config.name,
                child.id,
                child.initiator,
                child.spis(),
                child.three_way,
                child.rekey_of,
            )
        )
        self.settle(child, now)

    @abstractmethod
    def settle(self, child: Child, now: float) -> None:
        """After `child` is in place: delete what it replaces or duplicates (§3.6)."""


def _ignore(result: HelperResult, now: float) -> None:
    """Deleting an SA that is already gone is not an error worth acting on."""


def effective_policies(peer: PeerConfig, local_address: str, reqid: int) -> tuple[Policy, ...]:
    """The peer's policies; none configured means host to host between the two addresses,
    without ID payloads (RFC 4430 §5.3), under `reqid`."""
    if peer.policies:
        return peer.policies
    local = Selector(ip_network(local_address))
    remote = Selector(ip_network(peer.address))
    return (Policy(local, remote, reqid=reqid, send_ids=False),)
