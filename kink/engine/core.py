"""State and plumbing shared by the initiator and responder sides of the Engine: the action
queue, timers, helper tokens, peers, epochs (§3.7) and the SA bookkeeping both sides use."""

import heapq
import itertools
import random
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from ipaddress import ip_network
from typing import ClassVar, Final, TypeVar, overload

from kink.crypto.entropy import PooledRandom
from kink.engine.config import EngineConfig, PeerConfig, Policy
from kink.engine.events import (
    Action,
    Address,
    DeleteSa,
    Dropped,
    HelperResult,
    InstallSa,
    PeerEpochChanged,
    PeerRemoved,
    SaDeleted,
    SaEstablished,
    SaSpec,
    Selector,
    TicketResult,
    UpdateSa,
)
from kink.engine.kerberos import KerberosPort
from kink.engine.ratelimit import ReplyLimiter
from kink.engine.sadb import Child, ChildState, PeerState, Sadb

# Enum members bound once: on Python 3.11 reading a member off its class goes through
# EnumType's __getattr__ hook, ~0.9 k instructions against ~0.1 k for a global, and the
# CREATE path reads about thirty per exchange (issue 4).
_INSTALLED: Final = ChildState.INSTALLED
_DYING: Final = ChildState.DYING

HelperCallback = Callable[[HelperResult, float], None]
_T = TypeVar("_T")


class Timer:
    """One scheduled call: fn(now), or fn(arg, now) when scheduled with an argument. Slotted,
    and with the argument beside a shared bound method rather than inside a closure per
    timer: every child keeps a rekey timer for its lifetime (~320 octets less per SA pair,
    issue 9), and every exchange builds two or three (issue 4). The engine's heap holds it as
    (when, seq, timer) (TimerEntry): heapq compares those tuples in C, where a Timer.__lt__
    was a Python call per comparison, ~40 per rekey (issue 9); its time is there only (the
    entry costs 48 octets more per timer than a Timer ordered by itself)."""

    __slots__ = ("arg", "cancelled", "fn")

    def __init__(self, fn: Callable[..., None], arg: object) -> None:
        self.fn = fn
        self.arg = arg
        self.cancelled = False

    def __repr__(self) -> str:
        state = ", cancelled" if self.cancelled else ""
        return f"Timer({self.fn!r}{state})"

    def fire(self, now: float) -> None:
        if self.arg is _NO_ARG:
            self.fn(now)
        else:
            self.fn(self.arg, now)

    def cancel(self) -> None:
        # A cancelled timer waits in the heap until it is due or pruned; dropping its callback
        # and argument lets go at once of what they hold (a transaction, a child, an entry).
        self.cancelled = True
        self.fn = _never_called
        self.arg = _NO_ARG


_NO_ARG = object()  # a Timer's arg when fn takes `now` alone
# An entry of the engine's timer heap: (when, seq, timer), ordered by when and then by the
# order of scheduling (seq, unique: the timer itself is never compared).
TimerEntry = tuple[float, int, Timer]


def _never_called(now: float) -> None:
    raise AssertionError("a cancelled timer fired")


# RFC 4303 §2.1: SPI 0 is reserved for local use and 1-255 by IANA; our inbound SPIs are drawn
# uniformly from the rest (EngineCore.draw_spi).
SPI_MIN, SPI_END = 0x100, 0x1_0000_0000
# An inbound SA is tried with at most this many SPIs, then its exchange fails as for any failed
# install: a drawn SPI is taken in the kernel (EEXIST) with a probability of (SAs held) / 2**32,
# so that three in a row are not chance (a kernel or helper gone wrong).
SPI_DRAWS = 3

# The heap is pruned of cancelled timers when it has doubled since the last pruning, so that
# cancelled retransmission timers (one per exchange, due seconds later) cost O(1) amortised
# and do not pile up under a high exchange rate.
_MIN_PRUNE = 64


class EngineCore(ABC):
    # The SA database's class: Lifecycle's notes the children that change (record_changes).
    SADB: ClassVar[type[Sadb]] = Sadb

    def __init__(
        self,
        config: EngineConfig,
        kerberos: KerberosPort,
        *,
        epoch: int,
        now: float,
        rng: random.Random | None = None,
        spi_rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.kerberos = kerberos
        self.epoch = epoch
        self.rng = rng if rng is not None else random.Random()
        # Inbound SPIs come from the OS's CSPRNG: an off-path attacker who could predict them
        # could aim forged packets or DELETEs at them (rng, a Mersenne Twister, is only for
        # what may be guessed: XIDs, jitter), through kink.crypto.entropy's buffer (SPIs are
        # public: one getrandom(2) per 4 KiB, not per SPI). Tests pass a seeded random.Random.
        self.spi_rng = spi_rng if spi_rng is not None else PooledRandom()
        self.sadb = self.SADB()
        # The peer tables: change them only through register / unregister (Engine.add_peer,
        # remove_peer, replace_peer, reconfigure). Removed peers whose DELETE is under way
        # are in `leaving` only.
        self.peers: dict[str, PeerState] = {}
        self.peers_by_address: dict[str, PeerState] = {}
        self.policies: dict[int, tuple[PeerState, Policy]] = {}
        self.peer_policies: dict[str, tuple[Policy, ...]] = {}
        # Per peer, its policies with IDs by their (local, remote) selectors, the first
        # configured of equal ones: a CREATE's IDs find theirs at once (§10), not by a walk of
        # every policy of the peer (issue 9: one peer may have thousands).
        self.policies_by_ids: dict[str, dict[tuple[Selector, Selector], Policy]] = {}
        self.leaving: list[PeerState] = []
        for peer in config.peers:
            self.register(PeerState(peer))
        self.actions: deque[Action] = deque()
        # Emitting an action is appending it: the deque's own append, bound once, spares a
        # Python frame per action (about sixteen per CREATE exchange, issue 4).
        self.emit: Callable[[Action], None] = self.actions.append
        self.timers: list[TimerEntry] = []
        self._prune_at = _MIN_PRUNE
        self._timer_seq = itertools.count()
        self._tokens = itertools.count(1)
        self._ticket_tokens = self._tokens
        self.waiting: dict[int, HelperCallback] = {}
        self.ticket_waiting: dict[int, Callable[[TicketResult, float], None]] = {}
        self.counters: dict[str, int] = {}
        # Lone replies (KINK_ERROR, KRB_ERROR, TGT_REP) answer what nobody authenticated.
        self.reply_limiter = ReplyLimiter()
        self.created = now

    # ------------------------------------------------------------------------- plumbing

    def token(self, callback: HelperCallback) -> int:
        token = next(self._tokens)
        self.waiting[token] = callback
        return token

    @overload
    def schedule(self, when: float, fn: Callable[[float], None]) -> Timer: ...

    @overload
    def schedule(self, when: float, fn: Callable[[_T, float], None], arg: _T) -> Timer: ...

    def schedule(self, when: float, fn: Callable[..., None], arg: object = _NO_ARG) -> Timer:
        """Call fn(now), or fn(arg, now), once `when` has come (Engine.handle_timer)."""
        timer = Timer(fn, arg)
        if len(self.timers) >= self._prune_at:
            self.timers = [e for e in self.timers if not e[2].cancelled]
            heapq.heapify(self.timers)
            self._prune_at = max(_MIN_PRUNE, 2 * len(self.timers))
        heapq.heappush(self.timers, (when, next(self._timer_seq), timer))
        return timer

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def may_answer_unauthenticated(self, peer: Address, now: float) -> bool:
        """Whether a lone reply to a message nobody authenticated may go to `peer` now; if
        `peer` or all sources together are over their limit (kink.engine.ratelimit) it is
        counted and must be dropped. Ask before building the reply: that is the work saved."""
        refused = self.reply_limiter.refusal(peer[0], now)
        if refused is None:
            return True
        self.count("rate-limited.lone-reply." + refused)
        return False

    def drop(self, cause: str, peer: Address) -> None:
        self.count("dropped." + cause)
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

    # ----------------------------------------------------------------------------- peers

    def register(self, state: PeerState, implicit_reqid: int | None = None) -> None:
        """Make a peer known by name, address and policies (RFC 4430 §10: the selectors its
        principal may negotiate). A peer without policies gets the host-to-host one under
        `implicit_reqid`, else the lowest free reqid from config.reqid_base. ValueError if the
        name, the address or a configured reqid is taken."""
        peer = state.config
        self.check_free(peer)
        state.next_xid = self.rng.randrange(1 << 32)
        # free_reqid() walks every policy: only a peer without policies needs one (startup
        # with 10,000 configured peers spent 9.8 s here, issue 9).
        reqid = implicit_reqid
        if reqid is None:
            reqid = 0 if peer.policies else self.free_reqid()
        self.peers[peer.name] = state
        self.peers_by_address[peer.address] = state
        self.set_policies(state, effective_policies(peer, self.config.address, reqid))

    def sync_config(self) -> None:
        """Keep config.peers what the peer tables hold (after a peer came, went or changed)."""
        self.config = replace(self.config, peers=tuple(p.config for p in self.peers.values()))

    def check_free(self, peer: PeerConfig, *, replacing: PeerState | None = None) -> None:
        """ValueError unless the peer's name, address and configured reqids are free (those of
        `replacing` excepted)."""
        if peer.name in self.peers and self.peers[peer.name] is not replacing:
            raise ValueError(f"peer {peer.name!r} exists")
        other = self.peers_by_address.get(peer.address)
        if other is not None and other is not replacing:
            raise ValueError(f"address {peer.address} is peer {other.config.name!r}'s")
        for policy in peer.policies:
            owner = self.policies.get(policy.reqid)
            if owner is not None and owner[0] is not replacing:
                raise ValueError(
                    f"peer {peer.name!r}: reqid {policy.reqid:#x} is peer "
                    f"{owner[0].config.name!r}'s"
                )

    def free_reqid(self) -> int:
        """The lowest reqid from config.reqid_base that no policy has or is configured with."""
        taken = set(self.policies)
        taken.update(p.reqid for peer in self.config.peers for p in peer.policies)
        reqid = self.config.reqid_base
        while reqid in taken:
            reqid += 1
        return reqid

    def set_policies(self, state: PeerState, policies: tuple[Policy, ...]) -> None:
        for policy in self.peer_policies.get(state.config.name, ()):
            if self.policies.get(policy.reqid, (None,))[0] is state:
                del self.policies[policy.reqid]
        self.peer_policies[state.config.name] = policies
        by_ids: dict[tuple[Selector, Selector], Policy] = {}
        for policy in policies:
            self.policies[policy.reqid] = (state, policy)
            if policy.send_ids:
                by_ids.setdefault((policy.local, policy.remote), policy)
        self.policies_by_ids[state.config.name] = by_ids

    def unregister(self, state: PeerState) -> None:
        """Forget a peer's name, address and policies; what it still has to finish (its
        DELETE) runs on from `leaving` until forget_if_done."""
        name = state.config.name
        self.set_policies(state, ())
        del self.peer_policies[name]
        del self.policies_by_ids[name]
        del self.peers[name]
        if self.peers_by_address.get(state.config.address) is state:
            del self.peers_by_address[state.config.address]
        self.sync_config()
        state.removed = True
        if state.retry is not None:
            state.retry.cancel()
            state.retry = None
        self.leaving.append(state)

    def forget_if_done(self, state: PeerState) -> None:
        """A removed peer is forgotten once no transaction, queued command or SA is left."""
        if not state.removed or state not in self.leaving:
            return
        if state.transactions or state.queue:
            return
        if any(c.peer is state for c in self.sadb.of_peer(state.config.name)):
            return
        self.leaving.remove(state)
        self.emit(PeerRemoved(state.config.name))

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
        if stale:
            self.keep_up(peer, now)

    @abstractmethod
    def keep_up(self, peer: PeerState, now: float, *, failed: bool = False) -> None:
        """start_action=start: negotiate again what `peer` lost (after a failure: later)."""

    # -------------------------------------------------------------------------- children

    def draw_spi(self, protocol: int) -> int:
        """A new inbound SPI for `protocol`, uniform over SPI_MIN..2**32-1, that no child of ours
        uses inbound. The kernel may still hold it (an SA under way, someone else's): its
        InstallSa then fails with EEXIST and the caller draws again, at most SPI_DRAWS times."""
        while True:
            spi = self.spi_rng.randrange(SPI_MIN, SPI_END)
            if self.sadb.by_inbound(protocol, spi) is None:
                return spi

    def install(
        self,
        spec: SaSpec,
        child: Child,
        *,
        update: bool = False,
        acquire_seq: int | None = None,
        fills: bool = False,
        on_result: HelperCallback | None = None,
    ) -> int:
        """Install (or update) one SA of `child`; a failure takes the child down
        (child_failed), unless on_result is given: it then gets the result instead (the SAs of
        a REPLY the ACK waits for, kink.engine.initiator)."""
        if on_result is None:

            def on_result(result: HelperResult, now: float) -> None:
                if result.error is not None:
                    self.child_failed(child, f"install failed: {result.error}", now)

        token = self.token(on_result)
        self.emit(UpdateSa(token, spec) if update else InstallSa(token, spec, acquire_seq, fills))
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
        child.state = _DYING
        self.emit(SaDeleted(child.peer.config.name, child.id, reason))
        self.forget_if_done(child.peer)

    @abstractmethod
    def child_failed(self, child: Child, reason: str, now: float) -> None:
        """An SA of `child` could not be installed: take the child down on both sides."""

    def established(self, child: Child, now: float) -> None:
        """A child is in place on our side: notify, and settle rekeys and duplicates (§3.6)."""
        child.state = _INSTALLED
        child.peer.backoff = 0.0  # a success ends the start_action=start backoff
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
