"""The command side (RFC 4430 §3.1-§3.4, §9): CREATE, DELETE, STATUS and GETTGT transactions.

Each transaction has one timer T with truncated exponential back-off; every retransmission is
rebuilt with a new authenticator and the same ticket, and every authenticator sent is kept,
since the REPLY may answer any of them (§9). A REPLY with ACKREQ is acknowledged once its SAs are
in (§3.2), and the ACK is regenerated for any retransmission of that REPLY during a full
retransmission cycle (§9). The negotiations a run of inputs starts for a peer go in as few
CREATEs as fit a datagram (§4.2.6). The DELETE of a pair rekeyed away is held for a moment
(DELETE_HOLD, §3.6), so that many such pairs go in one DELETE per peer (§3.3, §6.4).
Unauthenticated replies (a lone KRB_ERROR, KINK_ERROR or TGT_REP) never end a transaction or
touch an SA; only the user-to-user switch acts on them, as policy allows (§3.1, §3.7.1).
A CREATE given up after the responder may have installed its SAs (no REPLY came, or we
rejected the REPLY) is followed by a DELETE of them, so that no pair stays half-open (§3.3).
"""

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from operator import attrgetter
from typing import Final, TypeVar

from kink.crypto.dh import PRIMES, DhExchange
from kink.crypto.entropy import random_bytes
from kink.crypto.errors import CryptoError
from kink.crypto.keymat import SaKeymat
from kink.crypto.rfc3961 import Key
from kink.crypto.seal import open_message
from kink.engine import messages
from kink.engine.config import EngineConfig, PeerConfig, Policy, StartAction, U2u
from kink.engine.core import SPI_DRAWS, EngineCore, Timer
from kink.engine.events import (
    EEXIST,
    AllocateSpi,
    FetchTicket,
    FetchU2uTicket,
    HelperResult,
    InstallSa,
    NegotiationFailed,
    SaDeleted,
    SaLifetimes,
    SaSpec,
    SendDatagram,
    TicketResult,
)
from kink.engine.ids import id_payload
from kink.engine.kerberos import KerberosError, KerberosPort, NeedTicket
from kink.engine.keys import SaPlace, sa_spec, sa_transform
from kink.engine.proposals import (
    Choice,
    NoProposal,
    check_reply,
    configured_life,
    offer,
    params_of,
    protocols_of,
)
from kink.engine.sadb import Child, ChildState, PeerState, SaPair
from kink.wire import (
    ApRep,
    DecodeError,
    DeletePayload,
    ErrorPayload,
    IdPayload,
    Isakmp,
    IsakmpPayloadType,
    KePayload,
    KinkErrorCode,
    KrbError,
    Message,
    MessageType,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    TgtRep,
)
from kink.wire.ipsec_doi import NotifyType
from kink.wire.isakmp import IsakmpPayload, encode_qm

# Enum members bound once: on Python 3.11 reading a member off its class goes through
# EnumType's __getattr__ hook, ~0.9 k instructions against ~0.1 k for a global, and the
# CREATE path reads about thirty per exchange (issue 4).
_CREATE: Final = MessageType.CREATE
_GETTGT: Final = MessageType.GETTGT
_START: Final = StartAction.START

_P = TypeVar("_P")

KRB_AP_ERR_TKT_EXPIRED = 32
KRB_AP_ERR_SKEW = 37
KRB_AP_ERR_USER_TO_USER_REQUIRED = 69
KDC_ERR_MUST_USE_USER2USER = 27
_ISAKMP_HEADER = 8  # a KINK_ISAKMP's generic header and QM version fields (§4.2.6)
_MAX_RESTARTS = 2  # new transactions after an authenticated SKEW / TKT_EXPIRED (§3.5, §9)
# The children one DELETE names. Its Delete payloads take 4 octets per SPI (RFC 2408 §3.15),
# the REPLY's INVALID_SPI Notifies 16 per SPI the responder does not have (§3.3). Measured with
# AH and ESP (two SPIs a child) and an MIT ticket: a DELETE of 1 child 748 octets, of 24 932;
# its REPLY, every SPI unknown, 200 and 936: well under 1,400 octets, no IP fragmentation
# (tests/engine/test_delete_batch.py).
MAX_DELETE_CHILDREN = 24
# How long the DELETE of a rekeyed-away pair may wait for others of its peer (start_delete(
# hold=True)). RFC 4430 §3.6: "to rekey an existing SA, the initiator must CREATE a new SA
# followed by either deleting the old SA with the DELETE flow or letting it time out", and
# "When identical flow selectors are available on different SAs, KINK implementations SHOULD
# choose the SA most recently created": the old outbound SA goes at once and the peer sends on
# the new pair, so only the DELETE exchange and our old inbound SAs wait, as if the DELETE were
# slow. Under load the pairs of many rekeys then go in one DELETE instead of one each (issue 9:
# at 1,000 rekeys/s, half of the messages that wake another process); a lone rekey's DELETE
# leaves this much later. From 480 rekeys/s towards one peer MAX_DELETE_CHILDREN fill before
# the hold is over; at 300/s 15 pairs a DELETE, at 100/s 5. bench/bench_exchange.py showed no
# difference beyond its spread between 20, 50 and 100 ms at 1,000 and 1,500/s; at 300/s the CPU
# per rekey fell with the hold (medians 3.96, 3.37, 3.20, 3.08 ms for none, 20, 50, 100 ms),
# 100 ms saving at most 2% of the datagrams more than 50 ms for twice the wait.
DELETE_HOLD = 0.05
# The KINK_ISAKMP octets (negotiations, §4.2.6) one CREATE carries, as _cuts reckons them from
# the offer, the nonce length, the KE group and the IDs: exactly what each adds to a CREATE;
# a REPLY's are no more (one proposal chosen, Nr and KE as long, the same IDs, or a Notify).
# Measured with an MIT ticket: a CREATE is 708 octets + 104 a negotiation (ESP, IDs), 140 (AH
# and ESP), 240 (ESP, KE of MODP 1024), 368 (ESP, MODP 2048); its REPLY 160 + 84, 120, 240,
# 368. 480 octets: a CREATE of about 1,200 octets at most (4 negotiations of ESP with IDs, 3 of
# AH and ESP, 2 with MODP 1024, 1 with MODP 2048; 1,188-1,204 measured, the AP-REQ varying),
# well under 1,400: no IP fragmentation, and not many SAs delayed by one lost datagram
# (tests/engine/test_create_batch.py).
MAX_CREATE_OCTETS = 480
_KINK_ERROR_REASONS: dict[int, str] = {
    KinkErrorCode.PROTOERR: "the peer found our command malformed",
    KinkErrorCode.INVDOI: "the peer does not support the IPsec DOI",
    KinkErrorCode.INVMAJ: "the peer does not support KINK version 1",
    KinkErrorCode.INTERR: "internal error at the peer",
    KinkErrorCode.BADQMVERS: "the peer does not support Quick Mode 1.0",
    KinkErrorCode.U2UDENIED: "the peer refuses user-to-user",
}


@dataclass(eq=False, slots=True)
class Negotiation:
    """One KINK_ISAKMP of a CREATE: one SA bundle for one policy."""

    policy: Policy
    rekey_of: Child | None
    spis: dict[int, int] = field(default_factory=dict)  # our inbound SPI per protocol
    ni: bytes = b""
    dh: DhExchange | None = None
    offered: SaPayload | None = None
    optimistic: list[SaSpec] = field(default_factory=list)  # inbound SAs installed before CREATE
    acquire_seq: int | None = None  # the kernel ACQUIRE it answers (InstallSa.acquire_seq)


@dataclass(eq=False, slots=True)
class Transaction:
    kind: MessageType
    peer: PeerState
    negotiations: list[Negotiation] = field(default_factory=list)
    deletes: list[Child] = field(default_factory=list)
    dpd: bool = False
    use_ke: bool = True
    restarts: int = 0
    then: Callable[[bool, float], None] | None = None  # GETTGT: what waits for the ticket
    xid: int = 0
    ticket: object | None = None
    key: Key | None = None
    handles: list[object] = field(default_factory=list)
    attempts: int = 0
    first_sent: float = 0.0
    timer: Timer | None = None
    inner: tuple[Isakmp, ...] = ()
    active: bool = False  # holds one of the peer's slots (EngineConfig.max_outstanding)
    counted: bool = False  # its negotiations are counted in peer.creating
    acked: bool = False  # REPLY with ACKREQ taken; kept to regenerate the ACK (§9)
    reply: bytes = b""
    # A REPLY with ACKREQ (§3.2 steps 4-5): the install results of its SAs still to come; the
    # ACK, the children it brought (established) and what is done about a failed install or a
    # rejected negotiation wait for all of them (_acknowledge).
    installing: int = 0
    new_children: list[Child] = field(default_factory=list)
    failed: list[tuple[Child, str]] = field(default_factory=list)
    rejected: list[Negotiation] = field(default_factory=list)
    done: bool = False
    u2u_tried: bool = False
    plain_tried: bool = False  # a FetchTicket (not user-to-user) went out for it
    denied: bool = False  # GETTGT: answered KINK_U2UDENIED


class Initiator(EngineCore):
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
        super().__init__(config, kerberos, epoch=epoch, now=now, rng=rng, spi_rng=spi_rng)
        # Timer callbacks bound once per engine: each timer holds one of these and its
        # transaction or child, not a closure of its own (kink.engine.core.Timer).
        self._timeout_call: Callable[[Transaction, float], None] = self._timeout
        self._rekey_call: Callable[[Child, float], None] = self.rekey
        # The DELETE grace timer's (§3.3), one bound method for all of them, as above.
        self._reap_call: Callable[[Child, float], None] = self._reap_deleted
        # The transactions waiting for the FetchTicket under way for a principal (_fetch_ticket).
        self._fetching: dict[str, list[Transaction]] = {}
        # Per peer (by identity, as in start_delete), the DYING children whose DELETE is held
        # (start_delete(hold=True)), and the one timer that ends the hold.
        self.deleting: dict[PeerState, _Held] = {}
        # False once kinkd stops (stop_holding): a DELETE held then would outlive the daemon.
        self.holding = True
        self._hold_over_call: Callable[[PeerState, float], None] = self._hold_over
        # The CREATEs waiting for the end of the current run of inputs (start_create), one per
        # peer (by identity) and whatever must be equal within a transaction (use_ke,
        # restarts), and the time they were started (the run's).
        self.creates: dict[tuple[PeerState, bool, int], Transaction] = {}
        self._creates_at = now

    # ------------------------------------------------------------------------ starting

    def start_create(
        self,
        peer: PeerState,
        policies: list[Policy],
        now: float,
        *,
        rekey_of: Child | None = None,
        use_ke: bool = True,
        restarts: int = 0,
        acquire_seq: int | None = None,
    ) -> None:
        """CREATE (§3.2) one negotiation per policy. It waits until the engine's actions run
        out (start_waiting_creates, from Engine.next_action): the negotiations a run of inputs
        starts for a peer (ACQUIREs, rekeys, start_action=start, retries) go in one CREATE,
        "any number of KINK_ISAKMP payloads" (§4.2.6), up to MAX_CREATE_OCTETS of them;
        meanwhile they count as under way (in_progress)."""
        self._create(
            peer,
            [Negotiation(p, rekey_of, acquire_seq=acquire_seq) for p in policies],
            now,
            use_ke=use_ke,
            restarts=restarts,
        )

    def _create(
        self,
        peer: PeerState,
        negotiations: list[Negotiation],
        now: float,
        *,
        use_ke: bool = True,
        restarts: int = 0,
    ) -> None:
        creating = peer.creating
        for neg in negotiations:
            if neg.rekey_of is not None:
                neg.rekey_of.rekeying = True
            creating[neg.policy] = creating.get(neg.policy, 0) + 1
        key = (peer, use_ke, restarts)
        txn = self.creates.get(key)
        if txn is None:
            txn = Transaction(_CREATE, peer, use_ke=use_ke, restarts=restarts, counted=True)
            self.creates[key] = txn
        txn.negotiations += negotiations
        self._creates_at = now

    def start_waiting_creates(self) -> None:
        """Start the CREATEs start_create left waiting, each cut to MAX_CREATE_OCTETS of
        KINK_ISAKMP payloads."""
        waiting, self.creates = self.creates, {}
        for txn in waiting.values():
            negotiations = txn.negotiations
            if not negotiations:  # every one dropped (_drop_waiting)
                continue
            cuts = self._cuts(txn)
            if len(cuts) == 1:
                self._start(txn, self._creates_at)
                continue
            first = 0
            for last in cuts:
                part = Transaction(
                    _CREATE,
                    txn.peer,
                    negotiations[first:last],
                    use_ke=txn.use_ke,
                    restarts=txn.restarts,
                    counted=True,
                )
                self._start(part, self._creates_at)
                first = last

    def _cuts(self, txn: Transaction) -> list[int]:
        """Where the negotiations of `txn` are cut into CREATEs: each holds as many as fit in
        MAX_CREATE_OCTETS of KINK_ISAKMP payloads (at least one)."""
        count = len(txn.negotiations)
        if count == 1:
            return [1]  # a lone ACQUIRE or rekey: nothing to reckon
        if txn.peer.one_negotiation:
            return list(range(1, count + 1))
        group = self._group(txn)
        base = _isakmp_octets(txn.peer.config, group, self.config.nonce_length)
        cuts: list[int] = []
        used = 0
        for i, neg in enumerate(txn.negotiations):
            octets = base + _id_octets(neg.policy)
            if used and used + octets > MAX_CREATE_OCTETS:
                cuts.append(i)
                used = 0
            used += octets
        cuts.append(len(txn.negotiations))
        return cuts

    def start_delete(self, children: list[Child], now: float, *, hold: bool = False) -> None:
        """DELETE (§3.3, pessimistic): outbound SAs go now, inbound ones after the REPLY and
        the grace timer. One DELETE per peer lists the SPIs of all its children there ("Delete
        Payloads", §6.4), at most MAX_DELETE_CHILDREN of them. hold (a pair rekeyed away,
        §3.6): the DELETE waits, its outbound SAs gone, until MAX_DELETE_CHILDREN children of
        the peer wait or DELETE_HOLD has passed since the first of them came; a DELETE started
        meanwhile for the peer (not held) takes them with it."""
        by_peer: dict[PeerState, list[Child]] = {}  # by identity: a removed peer's name may
        for child in children:  # be a new peer's already (lifecycle.replace_peer)
            if child.state is ChildState.DYING or child.id not in self.sadb.children:
                continue
            child.state = ChildState.DYING
            self.delete_outbound(child)
            by_peer.setdefault(child.peer, []).append(child)
        for peer, group in by_peer.items():
            if not hold or not self.holding:
                self._start_deletes(peer, self._unhold(peer) + group, now)
                continue
            held = self.deleting.get(peer)
            if held is None:
                timer = self.schedule(now + DELETE_HOLD, self._hold_over_call, peer)
                held = self.deleting[peer] = _Held(timer)
            held.children += group
            if len(held.children) >= MAX_DELETE_CHILDREN:
                self._start_deletes(peer, self._unhold(peer), now)

    def start_held_deletes(self, now: float, peer: PeerState | None = None) -> None:
        """Start now the DELETEs held for `peer`, or every peer's (Terminate, a peer
        removed)."""
        for state in [peer] if peer is not None else list(self.deleting):
            self._start_deletes(state, self._unhold(state), now)

    def stop_holding(self, now: float) -> None:
        """kinkd is stopping: the held DELETEs start now, and a pair rekeyed away from now on
        (a rekey whose REPLY comes during the shutdown) is DELETEd at once, not held past the
        daemon's end; the peer would keep the old pair until it expired (§3.6)."""
        self.holding = False
        self.start_held_deletes(now)

    def _hold_over(self, peer: PeerState, now: float) -> None:
        """DELETE_HOLD has passed since the first of the peer's held children came."""
        self.start_held_deletes(now, peer)

    def _unhold(self, peer: PeerState) -> list[Child]:
        """The children held for `peer` (none if none), no longer held; its timer cancelled."""
        held = self.deleting.pop(peer, None)
        if held is None:
            return []
        held.timer.cancel()
        return held.children

    def dying_sa_gone(self, child: Child, reason: str, now: float) -> None:
        """An SA of a DYING child expired or went (kernel_event). A held one timed out instead
        of being DELETEd (§3.6 "or letting it time out"): it leaves the hold and goes locally,
        so that no DELETE names SPIs gone. Any other's DELETE is under way."""
        held = self.deleting.get(child.peer)
        if held is None or child not in held.children:
            return
        held.children.remove(child)
        if not held.children:
            self._unhold(child.peer)
        self._reap(child, reason, now)

    def _start_deletes(self, peer: PeerState, children: list[Child], now: float) -> None:
        # A child gone meanwhile (removed locally: a new peer epoch, a dead peer) is not named.
        children = [c for c in children if c.id in self.sadb.children]
        for first in range(0, len(children), MAX_DELETE_CHILDREN):
            group = children[first : first + MAX_DELETE_CHILDREN]
            self._start(Transaction(MessageType.DELETE, peer, deletes=group), now)

    def start_status(self, peer: PeerState, now: float, *, dpd: bool = False) -> None:
        if dpd:
            if peer.dpd_pending:
                return
            peer.dpd_pending = True
        self._start(Transaction(MessageType.STATUS, peer, dpd=dpd), now)

    def cancel_commands(
        self, peer: PeerState, now: float, keep: Callable[[Transaction], bool]
    ) -> None:
        """End the commands to `peer` under way or queued, except those `keep` keeps (and
        DELETEs, which are how SAs go, §3.3). A CREATE the responder may have acted on is
        followed by a DELETE of what it installed, as when it is given up (§3.3)."""
        queue = peer.queue
        peer.queue = deque()
        for fn in queue:
            assert isinstance(fn, _Queued)
            if fn.txn.kind is MessageType.DELETE or keep(fn.txn):
                peer.queue.append(fn)
            else:
                self._unstarted(fn.txn)
        for waiting in self.creates.values():
            # Not sent yet: each negotiation is kept or not on its own, as a CREATE of its own.
            if waiting.peer is peer:
                self._drop_waiting(waiting, lambda n: not keep(Transaction(_CREATE, peer, [n])))
        for txn in list(peer.transactions.values()):
            assert isinstance(txn, Transaction)
            if txn.done or txn.kind is MessageType.DELETE or keep(txn):
                continue
            if txn.acked:
                self._finish(txn, now)  # its SAs are in place: only the ACK retention ends
                continue
            if txn.dpd:
                txn.dpd = peer.dpd_pending = False  # cancelled is not a dead peer
            cleanup = txn.kind is _CREATE and txn.attempts > 0
            self._fail(txn, "cancelled", None, now, cleanup=cleanup)

    def cancel_waiting_rekeys(self, children: list[Child]) -> None:
        """The rekeys of `children` (Terminate) still waiting for the end of the run are not
        started: they would bring the pairs back."""
        gone = {child.id for child in children}
        for txn in self.creates.values():
            self._drop_waiting(txn, lambda n: n.rekey_of is not None and n.rekey_of.id in gone)

    def _drop_waiting(self, txn: Transaction, drop: Callable[[Negotiation], bool]) -> None:
        """Take the negotiations `drop` picks out of the waiting CREATE `txn` (start_create):
        no longer under way, their rekeys free to start again."""
        kept: list[Negotiation] = []
        for neg in txn.negotiations:
            if drop(neg):
                if neg.rekey_of is not None:
                    neg.rekey_of.rekeying = False
                _uncount(txn.peer.creating, neg.policy)
            else:
                kept.append(neg)
        txn.negotiations = kept

    def in_progress(self, peer: PeerState, policy: Policy) -> bool:
        """A CREATE for `policy` is under way (not done, not yet ACKed), queued or waiting for
        the end of the run (start_create)."""
        return policy in peer.creating

    def _uncount(self, txn: Transaction) -> None:
        """The CREATE `txn` is done, ACKed or dropped unsent: no longer under way."""
        if not txn.counted:
            return
        txn.counted = False
        creating = txn.peer.creating
        for neg in txn.negotiations:
            _uncount(creating, neg.policy)

    def _unstarted(self, txn: Transaction) -> None:
        """A command dropped from the queue before it was sent: the rekeys it carried may
        start again."""
        self._uncount(txn)
        for neg in txn.negotiations:
            if neg.rekey_of is not None:
                neg.rekey_of.rekeying = False

    def renegotiate(self, peer: PeerState, now: float) -> None:
        """Negotiate every policy of `peer` that has no SA and no exchange under way."""
        wanted = self._missing(peer)
        if wanted:
            self.start_create(peer, wanted, now)

    def _missing(self, peer: PeerState) -> list[Policy]:
        if peer.removed:
            return []
        return [
            p
            for p in self.peer_policies[peer.config.name]
            if not self._has_child(peer, p) and not self.in_progress(peer, p)
        ]

    def keep_up(self, peer: PeerState, now: float, *, failed: bool = False) -> None:
        """start_action=start keeps its SAs up (as strongSwan's does): once a pair is lost
        (SaGone, hard Expire, a DELETE from the peer, a new peer epoch §3.7, a dead peer) the
        missing policies are negotiated again at once; after a failed attempt, again after a
        delay doubling from retry_backoff_initial to retry_backoff_cap (reset by any SA of the
        peer coming up), so that a peer that is down sees no storm. Trap peers wait for the
        next ACQUIRE instead; respond-only peers never initiate."""
        if peer.config.start_action is not _START or not self._missing(peer):
            return
        if peer.retry is not None and not peer.retry.cancelled:
            return  # a retry is due already: it negotiates everything missing
        if not failed:
            self.renegotiate(peer, now)
            return
        config = self.config
        peer.backoff = min(
            2 * peer.backoff if peer.backoff else config.retry_backoff_initial,
            config.retry_backoff_cap,
        )
        self.count("keep-up-retry")

        def retry(now: float) -> None:
            peer.retry = None
            self.renegotiate(peer, now)

        peer.retry = self.schedule(now + peer.backoff, retry)

    def _has_child(self, peer: PeerState, policy: Policy) -> bool:
        return any(
            c.state is not ChildState.DYING for c in self.sadb.of_policy(peer.config.name, policy)
        )

    def _start(self, txn: Transaction, now: float) -> None:
        peer = txn.peer
        capped = txn.kind is not _GETTGT  # GETTGT runs for a parked command
        if capped and peer.active >= self.config.max_outstanding:
            resume = _Queued(self, txn)
            peer.queue.append(resume)
            return
        if capped:
            peer.active += 1
            txn.active = True
        txn.xid = self._new_xid(peer)
        peer.transactions[txn.xid] = txn
        if txn.kind is _GETTGT:
            self._transmit(txn, now)
        else:
            self._with_ticket(txn, now, fetch=True)

    def _new_xid(self, peer: PeerState) -> int:
        # §9 / issue 4: XIDs unique among the peer's outstanding transactions.
        while True:
            xid = peer.next_xid
            peer.next_xid = (xid + 1) & 0xFFFFFFFF
            if xid not in peer.transactions:
                return xid

    # ------------------------------------------------------------------------- tickets

    def _with_ticket(self, txn: Transaction, now: float, *, fetch: bool) -> None:
        peer = txn.peer
        try:
            txn.ticket = self.kerberos.ticket_for(peer.config.principal)
        except NeedTicket:
            if not fetch:
                self._fail(txn, "no ticket after fetching one", None, now)
            elif peer.config.u2u is U2u.REQUIRE:
                self._via_gettgt(txn, now)
            else:
                self._fetch_ticket(txn)
            return
        txn.key = self.kerberos.ticket_key(txn.ticket)
        self._prepare(txn, now)

    def _fetch_ticket(self, txn: Transaction) -> None:
        """One FetchTicket per principal at a time: the transactions that need its ticket
        meanwhile wait for that one (a burst of ACQUIREs towards a peer whose ticket we do not
        have yet would otherwise ask for it once per flow: a worker thread hop and a KDC
        request each, issue 9)."""
        txn.plain_tried = True
        principal = txn.peer.config.principal
        waiting = self._fetching.get(principal)
        if waiting is not None:
            waiting.append(txn)
            return
        self._fetching[principal] = [txn]
        token = next(self._ticket_tokens)
        self.ticket_waiting[token] = lambda r, t: self._tickets_fetched(principal, r, t)
        self.emit(FetchTicket(token, principal))

    def _tickets_fetched(self, principal: str, result: TicketResult, now: float) -> None:
        for txn in self._fetching.pop(principal, ()):
            self._ticket_fetched(txn, result, now)

    def _ticket_fetched(self, txn: Transaction, result: TicketResult, now: float) -> None:
        if txn.done:
            return
        if result.ok:
            self._with_ticket(txn, now, fetch=False)
        elif (
            result.krb5_code == KDC_ERR_MUST_USE_USER2USER
            and txn.peer.config.u2u is U2u.ALLOW
            and not txn.u2u_tried
        ):
            self._via_gettgt(txn, now)  # RFC 4430 §3.1, third trigger
        else:
            self._fail(txn, "no ticket", _krb5_name(result.krb5_code), now)

    def _via_gettgt(self, txn: Transaction, now: float) -> None:
        txn.u2u_tried = True
        gettgt = Transaction(_GETTGT, txn.peer)

        def then(ok: bool, now: float) -> None:
            if txn.done:
                return
            if ok:
                self._with_ticket(txn, now, fetch=False)
            elif gettgt.denied and not txn.plain_tried:
                # §4.2.8: "When KINK_U2UDENIED is received, the initiator MAY retry with the
                # non-User-to-User mode (if it has not yet been tried)."
                self._fetch_ticket(txn)
            else:
                self._fail(txn, "no user-to-user ticket", None, now)

        gettgt.then = then
        self._start(gettgt, now)

    # --------------------------------------------------------------------- preparing

    def _prepare(self, txn: Transaction, now: float) -> None:
        if txn.kind is not _CREATE:
            self._first_send(txn, now)
            return
        peer = txn.peer.config
        # Two ways to an inbound SPI, for one reason: whether its keys are known before the
        # CREATE leaves. The optimistic SA's are (§3.2 step 1: no KE, the first bundle, KEYMAT
        # without Nr): _open draws its SPI and installs it at once. Any other's come with the
        # REPLY (g^xy with KE, Nr when another bundle is chosen), and its SPI must be ours in
        # the kernel meanwhile, or the offer could name an SPI that some other SA takes before
        # ours is in: it is reserved here (XFRM ALLOCSPI, a larval SA) and filled on the REPLY
        # (InstallSa.fills, _install_child).
        optimistic = () if self._group(txn) is not None else _first_bundle(txn.peer)
        needed = [
            (n, p) for n in txn.negotiations for p in protocols_of(peer) if p not in optimistic
        ]
        if not needed:
            self._first_send(txn, now)
            return
        left = [len(needed)]
        errors: list[str] = []
        here, there = self.config.address, peer.address

        # One closure per exchange, bound to each SPI by a partial (C): a factory of closures
        # would cost a Python call more per SPI (issue 4).
        def got(neg: Negotiation, protocol: int, result: HelperResult, now: float) -> None:
            if result.spi is not None:
                neg.spis[protocol] = result.spi
            if result.error is not None:
                errors.append(result.error)
            left[0] -= 1
            if left[0] == 0:
                self._spis_done(txn, errors, now)

        for negotiation, protocol in needed:
            self.emit(
                AllocateSpi(self.token(partial(got, negotiation, protocol)), protocol, there, here)
            )

    def _group(self, txn: Transaction) -> int | None:
        """The KE group the CREATE offers (None: no KE, §3.2)."""
        return txn.peer.config.pfs_group if txn.use_ke else None

    def _spis_done(self, txn: Transaction, errors: list[str], now: float) -> None:
        if txn.done:
            return
        if errors:
            self._fail(txn, f"SPI allocation failed: {errors[0]}", None, now)
        else:
            self._first_send(txn, now)

    def _first_send(self, txn: Transaction, now: float) -> None:
        if txn.kind is _CREATE:
            specs = [spec for neg in txn.negotiations for spec in self._open(txn, neg)]
            self._install_optimistic(txn, specs, 1, now)
            return
        if txn.kind is MessageType.DELETE:
            txn.inner = (Isakmp(_delete_payloads(txn.deletes, inbound=True)),)
        self._transmit(txn, now)

    def _open(self, txn: Transaction, neg: Negotiation) -> list[tuple[Negotiation, SaSpec]]:
        """Ni, the KE, the optimistic SPIs drawn and the offer of one negotiation; the
        optimistic inbound SAs to install before the CREATE leaves (none with KE)."""
        peer = txn.peer
        neg.ni = random_bytes(self.config.nonce_length)  # kink.crypto.entropy: single-use
        group = self._group(txn)
        if group is not None:
            neg.dh = DhExchange(group)
            neg.offered = offer(peer.config, neg.spis, group)
            return []
        bundle = _first_bundle(peer)
        for protocol in bundle:
            neg.spis[protocol] = self.draw_spi(protocol)
        neg.offered = offer(peer.config, neg.spis, None)
        configured = configured_life(peer.config)
        life = self._life(configured.seconds, configured.kilobytes)
        return [(neg, self._optimistic_spec(txn, neg, protocol, life)) for protocol in bundle]

    def _optimistic_spec(
        self, txn: Transaction, neg: Negotiation, protocol: int, life: SaLifetimes
    ) -> SaSpec:
        """RFC 4430 §3.2 step 1: the optimistic inbound SA of `protocol` (the first transform
        of the first proposal, KEYMAT without Nr) for the SPI neg.spis[protocol]."""
        assert txn.key is not None and neg.offered is not None
        proposal = _proposal_of(neg.offered, protocol)  # the first bundle's
        return sa_spec(
            SaKeymat(txn.key, neg.ni, None, None, self.config.aes_prf),
            protocol,
            neg.spis[protocol],
            params_of(proposal.transforms[0]),
            self._place(txn.peer, neg.policy, inbound=True),
            life,
            self.config.replay_window,
        )

    def _install_optimistic(
        self, txn: Transaction, specs: list[tuple[Negotiation, SaSpec]], draw: int, now: float
    ) -> None:
        """Install the optimistic inbound SAs (the `draw`-th SPI of each), then send the CREATE
        (§3.2 step 1): no SPI leaves before its SA is in. An SPI the kernel finds taken
        (EEXIST: an SA under way, someone else's) is drawn again, its SA keyed anew (KEYMAT
        covers the SPI, RFC 4430 §7) and installed, SPI_DRAWS times at most; any other failure
        ends the CREATE before it is sent. Only SAs installed are ever deleted: the SPI of an
        EEXIST is another SA's."""
        if not specs:
            self._send_create(txn, now)
            return
        left = [len(specs)]
        again: list[tuple[Negotiation, SaSpec]] = []
        errors: list[str] = []

        def done(neg: Negotiation, spec: SaSpec, result: HelperResult, now: float) -> None:
            if result.error is None:
                if txn.done:  # given up meanwhile: _fail deleted the ones it knew of
                    self.delete_sa(spec.protocol, spec.spi, spec.src, spec.dst)
                else:
                    neg.optimistic.append(spec)
            elif result.error == EEXIST and draw < SPI_DRAWS:
                again.append((neg, spec))
            else:
                errors.append(result.error)
            left[0] -= 1
            if left[0] or txn.done:
                return
            if errors:
                self._fail(txn, f"optimistic SA install failed: {errors[0]}", None, now)
            elif again:
                redrawn = [(n, self._redrawn_optimistic(txn, n, s)) for n, s in again]
                self._install_optimistic(txn, redrawn, draw + 1, now)
            else:
                self._send_create(txn, now)

        for neg, spec in specs:
            self.emit(InstallSa(self.token(partial(done, neg, spec)), spec))

    def _redrawn_optimistic(self, txn: Transaction, neg: Negotiation, taken: SaSpec) -> SaSpec:
        """The optimistic SA `taken` with a new SPI (and the offer naming it)."""
        protocol = taken.protocol
        neg.spis[protocol] = self.draw_spi(protocol)
        neg.offered = offer(txn.peer.config, neg.spis, None)
        life = SaLifetimes(
            taken.soft_seconds, taken.hard_seconds, taken.soft_bytes, taken.hard_bytes
        )
        return self._optimistic_spec(txn, neg, protocol, life)

    def _send_create(self, txn: Transaction, now: float) -> None:
        txn.inner = tuple(_create_isakmp(neg) for neg in txn.negotiations)
        self._transmit(txn, now)

    def _place(self, peer: PeerState, policy: Policy, *, inbound: bool) -> SaPlace:
        here, there = self.config.address, peer.config.address
        if inbound:
            return SaPlace(
                there, here, True, peer.config.mode, policy.reqid, policy.remote, policy.local
            )
        return SaPlace(
            here, there, False, peer.config.mode, policy.reqid, policy.local, policy.remote
        )

    def _life(self, seconds: int, kilobytes: int) -> SaLifetimes:
        hard_bytes = kilobytes * 1024
        # rng.uniform(0.8, 0.9) written out (random.Random.uniform is a + (b - a) * random()):
        # the same draw and value without its Python frame, three times per exchange.
        soft_bytes = int(hard_bytes * (0.8 + (0.9 - 0.8) * self.rng.random()))
        return SaLifetimes(0, seconds, soft_bytes, hard_bytes)

    # ------------------------------------------------------------------ transmitting

    def _transmit(self, txn: Transaction, now: float) -> None:
        peer = txn.peer
        if txn.kind is _GETTGT:
            data = messages.gettgt(txn.xid, peer.config.principal)
        else:
            try:
                ap_req, handle = self.kerberos.make_ap_req(txn.ticket)
            except KerberosError as exc:
                if (
                    exc.code == KRB_AP_ERR_TKT_EXPIRED
                    and txn.attempts == 0
                    and txn.restarts < _MAX_RESTARTS
                ):
                    # Expired on our own clock before anything went out (§9): a new ticket.
                    self.kerberos.forget_ticket(peer.config.principal)
                    self._restart(txn, now)
                else:
                    self._fail(
                        txn, "cannot make an AP-REQ", exc.name, now, cleanup=txn.attempts > 0
                    )
                return
            txn.handles.append(handle)
            assert txn.key is not None
            data = messages.command(txn.kind, txn.xid, self.epoch, ap_req, txn.key, txn.inner)
        txn.attempts += 1
        if txn.attempts == 1:
            txn.first_sent = now
        self.emit(SendDatagram(data, self.address(peer)))
        delay = self.config.retransmit_delay(txn.attempts)
        txn.timer = self.schedule(now + delay, self._timeout_call, txn)

    def _timeout(self, txn: Transaction, now: float) -> None:
        if txn.done:
            return
        if txn.acked:
            self._finish(txn, now)
        elif txn.attempts >= self.config.max_attempts:
            self._fail(txn, "no reply", None, now, cleanup=True)
        else:
            self._transmit(txn, now)

    def _release(self, txn: Transaction, now: float) -> None:
        """Give back the peer slot and start queued transactions."""
        if not txn.active:
            return
        txn.active = False
        peer = txn.peer
        peer.active -= 1
        while peer.queue and peer.active < self.config.max_outstanding:
            peer.queue.popleft()(now)

    def _finish(self, txn: Transaction, now: float) -> None:
        txn.done = True
        self._uncount(txn)
        if txn.timer is not None:
            txn.timer.cancel()
        if txn.peer.transactions.get(txn.xid) is txn:
            del txn.peer.transactions[txn.xid]
        self._release(txn, now)
        self.forget_if_done(txn.peer)

    def _fail(
        self, txn: Transaction, reason: str, code: str | None, now: float, *, cleanup: bool = False
    ) -> None:
        """End a transaction that did not succeed. cleanup: a CREATE the responder may have
        acted on (its replies were lost): DELETE what it may have installed."""
        if txn.done:
            return
        peer = txn.peer
        self.emit(NegotiationFailed(peer.config.name, txn.kind.name, reason, code))
        self._finish(txn, now)
        if txn.kind is _CREATE:
            for neg in txn.negotiations:
                self._drop_optimistic(neg)
                if neg.rekey_of is not None:
                    neg.rekey_of.rekeying = False
            if cleanup:
                self._delete_orphans(peer, txn.negotiations, now)
            self.keep_up(peer, now, failed=True)
        elif txn.kind is MessageType.DELETE:
            for child in txn.deletes:
                self._reap(child, "deleted (no reply)", now)
        elif txn.kind is MessageType.STATUS and txn.dpd:
            peer.dpd_pending = False
            self._peer_dead(peer, now)
        elif txn.kind is _GETTGT and txn.then is not None:
            txn.then(False, now)

    def _delete_orphans(self, peer: PeerState, negotiations: list[Negotiation], now: float) -> None:
        """A CREATE we gave up on after the responder may have installed its SAs (its REPLY
        was lost, or we rejected the REPLY): DELETE them, or they stay half-open (§3.3). The
        responder knows them by our inbound SPIs, its outbound ones; nothing of them is
        installed here, so the children exist only to be named in the DELETE."""
        orphans = [
            Child(
                self.sadb.new_id(),
                peer,
                neg.policy,
                True,
                [SaPair(protocol, spi, 0) for protocol, spi in neg.spis.items()],
                configured_life(peer.config),
                peer.epoch,
                now,
                state=ChildState.DYING,
            )
            for neg in negotiations
            if neg.spis
        ]
        if orphans:
            self._start(Transaction(MessageType.DELETE, peer, deletes=orphans), now)

    def _drop_optimistic(self, neg: Negotiation) -> None:
        for spec in neg.optimistic:
            self.delete_sa(spec.protocol, spec.spi, spec.src, spec.dst)
        neg.optimistic.clear()

    def _peer_dead(self, peer: PeerState, now: float) -> None:
        """DPD (§3.7) found no answer to STATUS: the peer's SAs lead nowhere."""
        for child in list(self.sadb.of_peer(peer.config.name)):
            self.remove_child(child, "dead-peer", now)
        self.keep_up(peer, now)

    # ----------------------------------------------------------------------- replies

    def on_reply(self, peer: PeerState, msg: Message, data: bytes, now: float) -> None:
        txn = peer.transactions.get(msg.xid)
        if not isinstance(txn, Transaction):
            self.drop("unexpected-reply", self.address(peer))
            return
        if txn.kind is _GETTGT:
            self._gettgt_reply(txn, msg, now)
            return
        ap_rep = first_of(msg.payloads, ApRep)
        if ap_rep is None:
            self._lone_reply(txn, msg, now)
            return
        if txn.acked:
            # A retransmitted REPLY: its ACK was lost; regenerate it (§9). One whose SAs are
            # still being installed gets its ACK when they are in (_acknowledge).
            if data == txn.reply:
                if not txn.installing:
                    self._send_ack(txn, now)
            else:
                self.drop("reply-after-ack", self.address(peer))
            return
        key = self._verify(txn, ap_rep.ap_rep)
        if key is None:
            self.drop("ap-rep-not-verified", self.address(peer))
            return
        try:
            msg = open_message(msg, key, request=txn.kind)
        except (CryptoError, DecodeError):
            # §3.5: no way to report an error in a reply; log it and keep waiting.
            self.drop("bad-reply", self.address(peer))
            return
        if txn.attempts == 1:
            peer.rtt = now - txn.first_sent  # Karn: only unambiguous samples
        self.saw_epoch(peer, ap_rep.epoch, now)
        krb: KrbError | None = None
        error: ErrorPayload | None = None
        isakmps: list[Isakmp] = []
        for p in msg.encrypted or ():  # one pass: this runs for every REPLY (issue 4)
            if isinstance(p, Isakmp):
                isakmps.append(p)
            elif isinstance(p, KrbError):
                krb = krb or p
            elif isinstance(p, ErrorPayload) and p.code != 0:
                # §4.2.8: "When received, the initiator MAY act as if the specific KINK_ERROR
                # payload were not present" for KINK_OK.
                error = error or p
        if krb is not None:
            self._authenticated_krb_error(txn, krb, now)
            return
        if error is not None:
            self._kink_error(txn, error.code, now)
            return
        if txn.kind is _CREATE:
            self._create_reply(txn, msg, isakmps, data, now)
        elif txn.kind is MessageType.DELETE:
            self._finish(txn, now)
            for child in txn.deletes:
                self.schedule(now + self.grace(peer), self._reap_call, child)
        else:
            peer.dpd_pending = False
            self._finish(txn, now)

    def _kink_error(self, txn: Transaction, code: int, now: float) -> None:
        """An authenticated KINK_ERROR (§4.2.8). We speak one KINK version, one DOI and one
        Quick Mode version, so KINK_INVMAJ, KINK_INVDOI and KINK_BADQMVERS leave nothing to
        retry with; KINK_PROTOERR and KINK_INTERR would recur on a retry. The command fails,
        but the reply proves the peer alive (§3.7): it is never taken for a dead peer."""
        if txn.kind is MessageType.STATUS:
            txn.peer.dpd_pending = False
            txn.dpd = False
        reason = _KINK_ERROR_REASONS.get(code, "KINK_ERROR")
        self._fail(txn, reason, _kink_error_name(code), now)

    def _verify(self, txn: Transaction, ap_rep: bytes) -> Key | None:
        # The REPLY may answer any authenticator still outstanding (§9); newest first.
        for handle in reversed(txn.handles):
            try:
                return self.kerberos.verify_ap_rep(handle, ap_rep)
            except KerberosError:
                continue
        return None

    def _lone_reply(self, txn: Transaction, msg: Message, now: float) -> None:
        """A REPLY without AP_REP is unauthenticated (§3.5, §4.2.3): logged and counted; it
        never ends the transaction, except as the u2u policy allows (§3.1, §3.7.1)."""
        peer = txn.peer
        payload = msg.payloads[0] if msg.payloads else None
        if isinstance(payload, KrbError):
            try:
                view = self.kerberos.parse_krb_error(payload.krb_error)
            except KerberosError:
                self.drop("lone-krb-error-undecodable", self.address(peer))
                return
            if (
                view.code == KRB_AP_ERR_USER_TO_USER_REQUIRED
                and peer.config.u2u is U2u.ALLOW
                and not txn.u2u_tried
            ):
                self._switch_ticket(txn, now)
            self.drop(f"lone-krb-error:{view.name}", self.address(peer))
        elif isinstance(payload, TgtRep):
            if peer.config.u2u is not U2u.NEVER and not txn.u2u_tried:
                # §3.7.1: fetch a ticket with the TGT; the old ticket stays until then.
                txn.u2u_tried = True
                self._fetch_u2u(
                    peer, payload.tgt, lambda ok, t: self._retry_with_ticket(txn, ok, t)
                )
            self.drop("lone-tgt-rep", self.address(peer))
        elif isinstance(payload, ErrorPayload):
            self.drop(f"lone-kink-error:{_kink_error_name(payload.code)}", self.address(peer))
        else:
            self.drop("lone-reply", self.address(peer))

    def _switch_ticket(self, txn: Transaction, now: float) -> None:
        txn.u2u_tried = True

        def then(ok: bool, now: float) -> None:
            self._retry_with_ticket(txn, ok, now)

        self._start(Transaction(_GETTGT, txn.peer, then=then), now)

    def _retry_with_ticket(self, txn: Transaction, ok: bool, now: float) -> None:
        """A new ticket arrived for a command under way: a new transaction with it (§9)."""
        if txn.done or not ok:
            return
        self._restart(txn, now)

    def _restart(self, txn: Transaction, now: float) -> None:
        self._finish(txn, now)
        if txn.kind is _CREATE:
            for neg in txn.negotiations:
                self._drop_optimistic(neg)
            self._create(
                txn.peer,
                _renewed(txn.negotiations),
                now,
                use_ke=txn.use_ke,
                restarts=txn.restarts + 1,
            )
        else:
            retry = Transaction(txn.kind, txn.peer, deletes=txn.deletes, dpd=txn.dpd)
            retry.restarts = txn.restarts + 1
            self._start(retry, now)

    def _authenticated_krb_error(self, txn: Transaction, krb: KrbError, now: float) -> None:
        peer = txn.peer
        try:
            view = self.kerberos.parse_krb_error(krb.krb_error)
        except KerberosError:
            self._fail(txn, "undecodable KRB-ERROR", None, now)
            return
        echoed = view.ctime is not None and any(
            self.kerberos.handle_time(h) == (view.ctime, view.cusec) for h in txn.handles
        )
        if view.code == KRB_AP_ERR_SKEW and echoed and txn.restarts < _MAX_RESTARTS:
            # §3.5: authenticated and echoing our time: adopt the responder's clock.
            self.kerberos.adopt_clock_skew(view.stime, view.susec)
            self._restart(txn, now)
        elif view.code == KRB_AP_ERR_TKT_EXPIRED and txn.restarts < _MAX_RESTARTS:
            # §9: a new transaction with a new ticket.
            self.kerberos.forget_ticket(peer.config.principal)
            self._restart(txn, now)
        else:
            self._fail(txn, "KRB-ERROR", view.name, now)

    # ------------------------------------------------------------------------ CREATE

    def _create_reply(
        self, txn: Transaction, msg: Message, isakmps: list[Isakmp], data: bytes, now: float
    ) -> None:
        peer = txn.peer
        if not isakmps or len(isakmps) > len(txn.negotiations):
            self._fail(
                txn, f"{len(isakmps)} KINK_ISAKMP for {len(txn.negotiations)} SAs", None, now
            )
            return
        if len(isakmps) < len(txn.negotiations):
            self._unanswered(txn, len(isakmps), now)
        retry_plain: list[Negotiation] = []
        retry_spi: list[Negotiation] = []
        rejected: list[Negotiation] = []
        for neg, isakmp in zip(txn.negotiations, isakmps, strict=True):
            outcome = self._negotiated(txn, neg, isakmp, msg.ackreq, now)
            if outcome == "retry-without-ke":
                retry_plain.append(neg)
            elif outcome == "retry-spi":
                retry_spi.append(neg)
            elif outcome == "rejected":
                rejected.append(neg)
        if msg.ackreq:
            txn.reply = data
            txn.acked = True
            self._uncount(txn)
            self._release(txn, now)
            if txn.timer is not None:
                txn.timer.cancel()
            txn.timer = self.schedule(now + self.config.retransmit_cycle(), self._timeout_call, txn)
            txn.rejected = rejected
            if not txn.installing:
                self._acknowledge(txn, now)
        else:
            self._finish(txn, now)
            # The responder installed what we rejected.
            self._delete_orphans(peer, rejected, now)
        for group, use_ke in ((retry_plain, False), (retry_spi, txn.use_ke)):
            if group and txn.restarts < _MAX_RESTARTS:
                self._create(peer, _renewed(group), now, use_ke=use_ke, restarts=txn.restarts + 1)
        self.keep_up(peer, now, failed=True)  # a no-op unless a wanted policy went without SA

    def _unanswered(self, txn: Transaction, answered: int, now: float) -> None:
        """A REPLY that answers only the first `answered` negotiations of the CREATE: a peer
        that takes one KINK_ISAKMP per message (racoon2's kinkd answers the first and ignores
        the others, though §4.2.6 allows "any number"). It installed nothing for the others:
        they are negotiated anew, one per CREATE to that peer from now on."""
        peer = txn.peer
        peer.one_negotiation = True
        self.count("create-partly-answered")
        rest = txn.negotiations[answered:]
        del txn.negotiations[answered:]
        for neg in rest:
            self._drop_optimistic(neg)
            if txn.counted:
                _uncount(peer.creating, neg.policy)
        self._create(peer, _renewed(rest), now, use_ke=txn.use_ke, restarts=txn.restarts)

    def _negotiated(
        self, txn: Transaction, neg: Negotiation, isakmp: Isakmp, ackreq: bool, now: float
    ) -> str:
        sa: SaPayload | None = None
        nonce: NoncePayload | None = None
        ke: KePayload | None = None
        ids: list[IdPayload] = []
        for p in isakmp.payloads:  # one pass (issue 4); check_message allows one of each
            if isinstance(p, SaPayload):
                sa = sa or p
            elif isinstance(p, NoncePayload):
                nonce = nonce or p
            elif isinstance(p, KePayload):
                ke = ke or p
            elif isinstance(p, IdPayload):
                ids.append(p)
        if sa is None:
            return self._refused(txn, neg, isakmp)
        assert neg.offered is not None and txn.key is not None
        try:
            choice = check_reply(neg.offered, sa)
            gxy = self._shared_secret(neg, ke)
        except (NoProposal, CryptoError) as exc:
            self._negotiation_failed(txn, neg, str(exc), "NO-PROPOSAL-CHOSEN")
            return "rejected"
        if ids and ids != [id_payload(neg.policy.local), id_payload(neg.policy.remote)]:
            self._negotiation_failed(
                txn, neg, "the reply changed IDci/IDcr", "INVALID-ID-INFORMATION"
            )
            return "rejected"
        nr = nonce.data if nonce is not None else None
        three_way = not choice.optimistic or nr is not None or gxy is not None
        if three_way and not ackreq:
            self._negotiation_failed(txn, neg, "3-way reply without ACKREQ (§3.2)", None)
            return "rejected"
        self._install_child(txn, neg, choice, nr, gxy, three_way, ackreq, now)
        return "ok"

    def _shared_secret(self, neg: Negotiation, ke: KePayload | None) -> bytes | None:
        if neg.dh is None:
            if ke is not None:
                raise CryptoError("KE in the reply to a CREATE without KE")
            return None
        if ke is None:
            raise CryptoError("no KE in the reply to a CREATE with KE")
        return neg.dh.shared_secret(ke.data)

    def _refused(self, txn: Transaction, neg: Negotiation, isakmp: Isakmp) -> str:
        notifies = [p for p in isakmp.payloads if isinstance(p, NotifyPayload)]
        errors = [n for n in notifies if n.notify_type < 16384]
        first = errors[0] if errors else None
        name = _notify_name(first.notify_type) if first is not None else None
        self._negotiation_failed(txn, neg, "refused by the responder", name)
        if first is None:
            return "failed"
        if (
            first.notify_type == NotifyType.INVALID_PAYLOAD_TYPE
            and first.data == bytes((IsakmpPayloadType.KE,))
            and neg.dh is not None
            and not txn.peer.config.pfs_required
        ):
            return "retry-without-ke"  # §3.2: "MAY retry without a KE payload"
        if first.notify_type == NotifyType.INVALID_SPI:
            return "retry-spi"
        return "failed"

    def _negotiation_failed(
        self, txn: Transaction, neg: Negotiation, reason: str, code: str | None
    ) -> None:
        self.emit(NegotiationFailed(txn.peer.config.name, "CREATE", reason, code))
        self._drop_optimistic(neg)
        if neg.rekey_of is not None:
            neg.rekey_of.rekeying = False

    def _install_child(
        self,
        txn: Transaction,
        neg: Negotiation,
        choice: Choice,
        nr: bytes | None,
        gxy: bytes | None,
        three_way: bool,
        ackreq: bool,
        now: float,
    ) -> None:
        """Install the child a REPLY brought (§3.2 steps 4, 5). With ACKREQ its install
        results go to _acked_install and the child is established with the ACK."""
        peer = txn.peer
        assert txn.key is not None
        inputs = SaKeymat(txn.key, neg.ni, nr, gxy, self.config.aes_prf)
        life = self._life(choice.lifetime.seconds, choice.lifetime.kilobytes)
        # The optimistic inbound SA was keyed with the configured lifetime (§3.2); compared by
        # its numbers, with no Lifetime built and compared in Python (issue 4).
        lifetime, config = choice.lifetime, peer.config
        lowered = (lifetime.seconds, lifetime.kilobytes) != (
            config.lifetime_seconds,
            config.lifetime_kilobytes,
        )
        child = Child(
            self.sadb.new_id(),
            peer,
            neg.policy,
            True,
            [SaPair(n.protocol, neg.spis[n.protocol], n.peer_spi) for n in choice.protocols],
            choice.lifetime,
            peer.epoch,
            now,
            three_way=three_way,
            rekey_of=neg.rekey_of.id if neg.rekey_of is not None else None,
            mode=peer.config.mode,
            transforms=tuple(sa_transform(n.protocol, n.params) for n in choice.protocols),
            life=life,
            pfs_group=neg.dh.group if gxy is not None and neg.dh is not None else None,
        )
        optimistic = {s.protocol: s for s in neg.optimistic}
        neg.optimistic.clear()
        on_result = partial(self._acked_install, txn, child) if ackreq else None
        installs = 0
        # The inbound place only when an inbound SA is (re)keyed here: an optimistic CREATE
        # keeps the one installed before it went out.
        inbound: SaPlace | None = None
        outbound = self._place(peer, neg.policy, inbound=False)
        for n, pair in zip(choice.protocols, child.sas, strict=True):
            previous = optimistic.pop(n.protocol, None)
            if previous is None or three_way or lowered:
                if inbound is None:
                    inbound = self._place(peer, neg.policy, inbound=True)
                # §3.2: "A replaces an inbound SA (B->A) if non-optimistic".
                spec = sa_spec(
                    inputs,
                    n.protocol,
                    pair.inbound_spi,
                    n.params,
                    inbound,
                    life,
                    self.config.replay_window,
                )
                # No optimistic SA: its SPI was reserved (AllocateSpi, _prepare): fill it.
                self.install(
                    spec,
                    child,
                    update=previous is not None,
                    fills=previous is None,
                    on_result=on_result,
                )
                installs += 1
            spec = sa_spec(
                inputs,
                n.protocol,
                pair.outbound_spi,
                n.params,
                outbound,
                life,
                self.config.replay_window,
            )
            self.install(spec, child, acquire_seq=neg.acquire_seq, on_result=on_result)
            installs += 1
            pair.inbound = pair.outbound = True
        for spec in optimistic.values():  # an optimistic protocol the chosen bundle lacks
            self.delete_sa(spec.protocol, spec.spi, spec.src, spec.dst)
        self.sadb.add(child)
        if ackreq:
            txn.installing += installs
            txn.new_children.append(child)
        else:
            self.established(child, now)

    def _acked_install(
        self, txn: Transaction, child: Child, result: HelperResult, now: float
    ) -> None:
        """The install result of an SA of a REPLY with ACKREQ: the last one lets the ACK go."""
        if result.error is not None:
            txn.failed.append((child, f"install failed: {result.error}"))
        txn.installing -= 1
        if not txn.installing:
            self._acknowledge(txn, now)

    def _acknowledge(self, txn: Transaction, now: float) -> None:
        """§3.2 steps 4-5: the ACK leaves once the REPLY's SAs are in, since on the ACK the
        responder installs its outbound SA and sends with it to our inbound one. "The initiator
        MUST always generate an ACK if the ACKREQ bit is set": a failed install too gets its
        ACK, and then its child is taken down as any failed install's (child_failed). The
        children are established (and what they replace deleted, §3.6) only now: a DELETE of
        the pair a child replaces must not overtake the ACK, or the responder would be left
        without an outbound SA until the ACK came."""
        self._send_ack(txn, now)
        new_children, txn.new_children = txn.new_children, []
        for child in new_children:
            # Gone meanwhile (a DELETE, remove_peer, a new peer epoch): nothing to establish.
            if child.state is ChildState.LARVAL and child.id in self.sadb.children:
                self.established(child, now)
        failed, txn.failed = txn.failed, []
        for child, reason in failed:
            self.child_failed(child, reason, now)
        rejected, txn.rejected = txn.rejected, []
        # The responder installed what we rejected: DELETE it (after the ACK it asked for).
        self._delete_orphans(txn.peer, rejected, now)

    def _send_ack(self, txn: Transaction, now: float) -> None:
        try:
            ap_req, _handle = self.kerberos.make_ap_req(txn.ticket)
        except KerberosError:
            self.drop("ack-not-made", self.address(txn.peer))
            return
        assert txn.key is not None
        data = messages.command(MessageType.ACK, txn.xid, self.epoch, ap_req, txn.key)
        self.emit(SendDatagram(data, self.address(txn.peer)))

    # ------------------------------------------------------------------------ GETTGT

    def _gettgt_reply(self, txn: Transaction, msg: Message, now: float) -> None:
        payload = msg.payloads[0] if len(msg.payloads) == 1 else None
        if isinstance(payload, TgtRep):
            self._finish(txn, now)
            then = txn.then
            assert then is not None
            self._fetch_u2u(txn.peer, payload.tgt, then)
        elif isinstance(payload, ErrorPayload):
            # §4.2.8 KINK_U2UDENIED: the peer will not hand out its TGT.
            txn.denied = payload.code == KinkErrorCode.U2UDENIED
            self._fail(txn, "GETTGT refused", _kink_error_name(payload.code), now)
        else:
            self.drop("bad-gettgt-reply", self.address(txn.peer))

    def _fetch_u2u(self, peer: PeerState, tgt: bytes, then: Callable[[bool, float], None]) -> None:
        token = next(self._ticket_tokens)
        self.ticket_waiting[token] = lambda result, now: then(result.ok, now)
        self.emit(FetchU2uTicket(token, peer.config.principal, tgt))

    # ---------------------------------------------------------------------- settling

    def settle(self, child: Child, now: float) -> None:
        """§3.6: the newest SA wins. A rekeyed child's predecessor is deleted now that the new
        one is in place; of two children for one policy negotiated by both sides at once, the
        one initiated by the greater principal goes, deleted by its initiator only, so that
        both sides reach the same single pair."""
        if child.initiator:
            self._schedule_rekey(child, now)
        losers: list[Child] = []
        for other in self.sadb.of_policy(child.peer.config.name, child.policy):
            if other is child or other.state is not ChildState.INSTALLED:
                continue
            loser = self._loser(child, other)
            if loser.initiator:
                losers.append(loser)
        if losers:
            # Held to go with the other pairs rekeyed away meanwhile: one DELETE exchange per
            # peer for many rekeys rather than one each (§3.3, §3.6, §6.4).
            self.start_delete(losers, now, hold=True)

    def _loser(self, new: Child, other: Child) -> Child:
        if new.initiator == other.initiator:
            return other if other.created <= new.created else new
        ours, theirs = (new, other) if new.initiator else (other, new)
        return ours if self.config.principal > new.peer.config.principal else theirs

    def _schedule_rekey(self, child: Child, now: float) -> None:
        # §3.6: soft lifetime = hard lifetime minus a random time between T-retrans and
        # T-rekey, so that peers do not synchronise.
        seconds = child.lifetime.seconds
        if not seconds:
            return
        low = self.config.retransmit_cycle()
        high = max(self.config.rekey_margin, 2 * low)
        # rng.uniform(a, b) written out (a + (b - a) * random(), as random.Random.uniform): the
        # same draw and value without its Python frame, once per rekey scheduled (see _life).
        if seconds > 2 * high:
            soft = seconds - (low + (high - low) * self.rng.random())
        else:
            soft = seconds * (0.75 + (0.9 - 0.75) * self.rng.random())
        child.rekey_at = now + soft
        child.rekey_timer = self.schedule(child.rekey_at, self._rekey_call, child)

    def rekey(self, child: Child, now: float) -> None:
        if (
            child.state is not ChildState.INSTALLED
            or child.rekeying
            or child.id not in self.sadb.children
        ):
            return
        self.start_create(child.peer, [child.policy], now, rekey_of=child)

    def child_failed(self, child: Child, reason: str, now: float) -> None:
        if child.id not in self.sadb.children or child.state is ChildState.DYING:
            return
        self.emit(NegotiationFailed(child.peer.config.name, "CREATE", reason, None))
        self.start_delete([child], now)
        self.keep_up(child.peer, now, failed=True)

    def _reap_deleted(self, child: Child, now: float) -> None:
        """The grace timer of a DELETEd child is over (§3.3): its inbound SAs go too."""
        self._reap(child, "deleted", now)

    def _reap(self, child: Child, reason: str, now: float) -> None:
        if child.id not in self.sadb.children:
            return
        self.delete_outbound(child)
        self.delete_inbound(child)
        self.sadb.remove(child)
        self.emit(SaDeleted(child.peer.config.name, child.id, reason))
        self.forget_if_done(child.peer)


class _Held:
    """The children of one peer whose DELETE is held (Initiator.start_delete), and the timer
    that ends the hold."""

    __slots__ = ("children", "timer")

    def __init__(self, timer: Timer) -> None:
        self.children: list[Child] = []
        self.timer = timer


class _Queued:
    """A transaction waiting for a slot of its peer."""

    def __init__(self, engine: Initiator, txn: Transaction) -> None:
        self.engine = engine
        self.txn = txn

    def __call__(self, now: float) -> None:
        self.engine._start(self.txn, now)


def _renewed(negotiations: list[Negotiation]) -> list[Negotiation]:
    """The negotiations of a CREATE started anew (§3.2, §9): the same policies, each for the
    child it rekeys and the ACQUIRE it answers."""
    return [Negotiation(n.policy, n.rekey_of, acquire_seq=n.acquire_seq) for n in negotiations]


def _first_bundle(peer: PeerState) -> tuple[int, ...]:
    """The protocols of the first proposal: those of the optimistic SAs (§3.2 step 1)."""
    proposals = peer.config.proposals
    # map() over an attrgetter rather than a generator expression, whose frame is resumed
    # once per protocol (twice per CREATE, issue 9).
    return tuple(map(_PROTOCOL, proposals[0].transforms)) if proposals else ()


_PROTOCOL = attrgetter("protocol")


def _proposal_of(sa: SaPayload, protocol: int) -> Proposal:
    """The first proposal of `protocol` in an offer (of the first bundle that has it)."""
    for proposal in sa.proposals:
        if proposal.protocol == protocol:
            return proposal
    raise ValueError(f"no proposal of protocol {protocol}")


def _create_isakmp(neg: Negotiation) -> Isakmp:
    """One negotiation's KINK_ISAKMP of a CREATE (RFC 4430 §3.2, §5.3)."""
    assert neg.offered is not None
    payloads: list[IsakmpPayload] = [neg.offered, NoncePayload(neg.ni)]
    if neg.dh is not None:
        payloads.append(KePayload(neg.dh.public_bytes()))
    if neg.policy.send_ids:
        payloads += [id_payload(neg.policy.local), id_payload(neg.policy.remote)]
    return Isakmp(tuple(payloads))


def first_of(payloads: Iterable[object], kind: type[_P]) -> _P | None:
    """The first of `payloads` that is a `kind`, or None (a loop rather than next() over a
    generator, whose frame costs more: this runs for every message, issue 4)."""
    for p in payloads:
        if isinstance(p, kind):
            return p
    return None


def _isakmp_octets(peer: PeerConfig, group: int | None, nonce_length: int) -> int:
    """The octets of one negotiation's KINK_ISAKMP in a CREATE to `peer` (_create_isakmp),
    without its IDs: its header (§4.2.6), the offer, Ni and, with KE, g^x."""
    payloads: list[IsakmpPayload] = [
        offer(peer, dict.fromkeys(protocols_of(peer), 0), group),
        NoncePayload(bytes(nonce_length)),
    ]
    prime = PRIMES.get(group) if group is not None else None
    if prime is not None:
        payloads.append(KePayload(bytes((prime.bit_length() + 7) // 8)))
    return _ISAKMP_HEADER + (len(encode_qm(payloads)) + 3) // 4 * 4


@lru_cache(maxsize=4096)  # a policy's are reckoned for each CREATE of several (8 us each)
def _id_octets(policy: Policy) -> int:
    """The octets of IDci and IDcr in a negotiation of `policy` (none unless it sends IDs)."""
    if not policy.send_ids:
        return 0
    return len(encode_qm((id_payload(policy.local), id_payload(policy.remote))))


def _uncount(creating: dict[Policy, int], policy: Policy) -> None:
    """One CREATE negotiation of `policy` fewer under way (PeerState.creating)."""
    left = creating.pop(policy) - 1  # one Policy hash when it was the last one
    if left:
        creating[policy] = left


def _delete_payloads(children: list[Child], *, inbound: bool) -> tuple[IsakmpPayload, ...]:
    """Delete payloads listing our inbound SPIs per protocol (§3.3, §6.4)."""
    by_protocol: dict[int, list[bytes]] = {}
    for child in children:
        for sa in child.sas:
            spi = sa.inbound_spi if inbound else sa.outbound_spi
            by_protocol.setdefault(sa.protocol, []).append(spi.to_bytes(4, "big"))
    return tuple(DeletePayload(p, tuple(spis)) for p, spis in by_protocol.items())


def _notify_name(code: int) -> str:
    try:
        return NotifyType(code).name.replace("_", "-")
    except ValueError:
        return str(code)


def _kink_error_name(code: int) -> str:
    try:
        return "KINK_" + KinkErrorCode(code).name
    except ValueError:
        return str(code)


def _krb5_name(code: int | None) -> str | None:
    if code is None:
        return None
    from kink.krb5.errors import error_name

    return error_name(code) or str(code)
