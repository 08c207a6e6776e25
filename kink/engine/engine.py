"""The KINK protocol engine (RFC 4430), sans-IO: see kink/engine/__init__.py for its use.

Dispatch happens here. A received datagram is decoded before anything else but a command's
ticket check (KerberosPort.forged_ticket); a datagram that does not decode costs nothing more
(no Kerberos call) and creates no state; only a command whose version or DOI we do not support
gets a lone KINK_ERROR (§4.2.8), computed without crypto.
"""

from dataclasses import dataclass
from heapq import heappop
from typing import Final

from kink.engine import messages
from kink.engine.config import StartAction
from kink.engine.events import (
    Acquire,
    Action,
    Address,
    Expire,
    HelperResult,
    Initiate,
    KernelEvent,
    LocalRequest,
    Rekey,
    SaLifetimes,
    SaTransform,
    Selector,
    SendDatagram,
    Status,
    Terminate,
    TicketResult,
)
from kink.engine.initiator import Transaction
from kink.engine.lifecycle import Lifecycle
from kink.engine.sadb import Child, ChildState, PeerState
from kink.wire import (
    DecodeError,
    ErrorPayload,
    KinkErrorCode,
    MessageType,
    decode,
    peek_ap_req,
)
from kink.wire.constants import HEADER_LENGTH, KINK_MAJOR_VERSION

# Enum members bound once: on Python 3.11 reading a member off its class goes through
# EnumType's __getattr__ hook, ~0.9 k instructions against ~0.1 k for a global, and the
# CREATE path reads about thirty per exchange (issue 4).
_REPLY: Final = MessageType.REPLY

_COMMANDS = frozenset({MessageType.CREATE, MessageType.DELETE, MessageType.STATUS, MessageType.ACK})
_TYPES = frozenset(MessageType)  # as received octets
# The commands a KINK_ERROR may answer (§4.2.8: nothing answers an ACK), as received octets.
_ANSWERED = frozenset({MessageType.CREATE, MessageType.DELETE, MessageType.STATUS})
_UNSUPPORTED = frozenset({KinkErrorCode.INVMAJ, KinkErrorCode.INVDOI, KinkErrorCode.BADQMVERS})


@dataclass(frozen=True, slots=True)
class ChildView:
    """One child (an SA bundle: per protocol an inbound and an outbound SA) for kinkctl.

    spis: (protocol, inbound SPI, outbound SPI) per protocol; local / remote: the selectors
    (network, IP protocol, port; 0 = any); transforms: per protocol the algorithm names and
    key length, never keys; life: what the SAs were installed with (the engine rekeys on time
    itself at rekey_at, an engine time like created; only the initiator rekeys, §3.6);
    pfs_group: the KE group if the exchange had KE, else None."""

    id: int
    peer: str
    initiator: bool
    state: str
    spis: tuple[tuple[int, int, int], ...]
    peer_epoch: int | None
    rekey_at: float | None
    local: Selector | None = None
    remote: Selector | None = None
    mode: str = "transport"
    reqid: int = 0
    transforms: tuple[SaTransform, ...] = ()
    life: SaLifetimes | None = None
    pfs_group: int | None = None
    created: float = 0.0


@dataclass(frozen=True, slots=True)
class PeerView:
    name: str
    epoch: int | None
    transactions: int
    queued: int
    rtt: float | None


@dataclass(frozen=True, slots=True)
class EngineState:
    """For kinkctl and persistence."""

    epoch: int
    peers: tuple[PeerView, ...]
    children: tuple[ChildView, ...]
    reply_cache: int
    counters: dict[str, int]


class Engine(Lifecycle):
    """Engine(config, kerberos, *, epoch, now, rng=None, spi_rng=None); feed it inputs, drain
    next_action() after each, and call handle_timer() when next_timer() is due. rng: XIDs and
    jitter; spi_rng: our inbound SPIs (the OS's CSPRNG unless given, kink.engine.core).

    Changing it while it runs (kink.engine.lifecycle): add_peer, remove_peer, replace_peer,
    reconfigure; across a restart of the daemon: child_records, then restore in the new one."""

    # ----------------------------------------------------------------------- inputs

    def datagram_received(self, data: bytes, peer_address: Address, now: float) -> None:
        peer = self.peers_by_address.get(peer_address[0])
        if peer is None and not self.leaving:
            # No peer (nor a removed one whose DELETE awaits its REPLY, _reply_owner) has this
            # address: nothing it sends is answered or read (RFC 4430 §10), so it is dropped
            # before it is decoded (issue 9: a flood from spoofed sources).
            self.drop("unknown-peer", peer_address)
            return
        if len(data) < HEADER_LENGTH or (
            data[1] >> 4 != KINK_MAJOR_VERSION and data[0] not in _ANSWERED
        ):
            # No KINK message (RFC 4430 §4: shorter than its header, or MjVer not 1), and not
            # a command whose unsupported version gets a KINK_ERROR (§4.2.8, below): dropped
            # without the DecodeError decode() would build and raise, ~10 k instructions
            # (issue 9: nearly every datagram of a garbage flood).
            self.drop("undecodable", peer_address)
            return
        if data[0] not in _TYPES:
            # §4 defines Types 1-6 (the rest are reserved or private use): nothing here reads
            # another, so it is not decoded either (issue 9).
            self.drop("unknown-type", peer_address)
            return
        if peer is not None and data[0] in _COMMANDS:
            # A command's ticket is checked before the message is decoded (issue 9: decoding a
            # CREATE costs a fifth of the one decryption that refuses a forged ticket), with
            # only its header read: refused as accept() would refuse it (RFC 4430 §3.5), with
            # no state. Never accepted before decoding: a corrupted copy of a genuine command
            # would put its authenticator into the replay cache, and the genuine one would be
            # refused as a replay. A ticket found valid here is not decrypted again by accept().
            ap_req = peek_ap_req(data)
            if ap_req is not None:
                forged = self.kerberos.forged_ticket(ap_req, now)
                if forged is not None:
                    xid = int.from_bytes(data[8:12])  # RFC 4430 §4: the header's XID
                    self.kerberos_refusal(peer, data[0], xid, data, forged, now)
                    return
        try:
            msg = decode(data)
        except DecodeError as exc:
            header = exc.header
            if (
                peer is not None
                and header is not None
                and header.type in _ANSWERED
                and exc.kink_error in _UNSUPPORTED
                and self.may_answer_unauthenticated(self.address(peer), now)
            ):
                # §4.2.8: "A responder SHOULD return a KINK error with KINK_INVMAJ ...".
                reply = messages.lone_reply(header.xid, ErrorPayload(exc.kink_error))
                self.emit(SendDatagram(reply, self.address(peer)))
            self.drop("undecodable", peer_address)
            return
        if msg.type == _REPLY:
            peer = self._reply_owner(peer, peer_address[0], msg.xid)
        if peer is None:
            self.drop("unknown-peer", peer_address)
            return
        if msg.type == _REPLY:
            self.on_reply(peer, msg, data, now)
        elif msg.type in _COMMANDS:
            self.on_command(peer, msg, data, now)
        else:  # GETTGT: the other types were dropped before decoding
            self.on_gettgt(peer, msg, now)

    def _reply_owner(self, peer: PeerState | None, address: str, xid: int) -> PeerState | None:
        """The peer whose transaction a REPLY answers: a removed peer's DELETE (remove_peer)
        still gets its REPLY, even once another peer took the address."""
        if peer is not None and xid in peer.transactions:
            return peer
        for gone in self.leaving:
            if gone.config.address == address and xid in gone.transactions:
                return gone
        return peer

    def handle_timer(self, now: float) -> None:
        timers = self.timers
        while timers and timers[0][0] <= now:
            timer = heappop(timers)[2]
            if not timer.cancelled:
                timer.fire(now)
            # A timer's call may have pruned the heap (schedule): a new list.
            timers = self.timers

    def helper_result(self, result: HelperResult, now: float) -> None:
        callback = self.waiting.pop(result.token, None)
        if callback is None:
            self.count("unknown-helper-token")
            return
        callback(result, now)

    def ticket_result(self, result: TicketResult, now: float) -> None:
        callback = self.ticket_waiting.pop(result.token, None)
        if callback is None:
            self.count("unknown-ticket-token")
            return
        callback(result, now)

    def kernel_event(self, event: KernelEvent, now: float) -> None:
        if isinstance(event, Acquire):
            self._acquire(event, now)
            return
        if event.dst == self.config.address:
            child = self.sadb.by_inbound(event.protocol, event.spi)
        else:
            child = self._by_outbound_address(event.protocol, event.spi, event.dst)
        if child is None:
            self.count("kernel-event-unknown-sa")
            return
        if isinstance(event, Expire) and not event.hard:
            if child.initiator:
                self.rekey(child, now)  # soft lifetime in bytes (§3.6)
            else:
                self.count("soft-expire-responder")  # §3.6: the initiator rekeys
            return
        # A hard expiry or an SA deleted under us: the pair is broken; take it down on both
        # sides rather than leave it half-open (§3.3).
        for pair in child.sas:
            if pair.protocol == event.protocol and event.spi in (
                pair.inbound_spi,
                pair.outbound_spi,
            ):
                if event.spi == pair.inbound_spi:
                    pair.inbound = False
                else:
                    pair.outbound = False
        if child.state is not ChildState.DYING:
            self.start_delete([child], now)
            self.keep_up(child.peer, now)  # start_action=start: a new pair at once
        else:
            self.dying_sa_gone(child, "expired" if isinstance(event, Expire) else "gone", now)

    def _by_outbound_address(self, protocol: int, spi: int, dst: str) -> Child | None:
        peers = [self.peers_by_address.get(dst)] + [
            p for p in self.leaving if p.config.address == dst
        ]
        for peer in peers:
            if peer is not None:
                child = self.sadb.by_outbound(peer.config.name, protocol, spi)
                if child is not None:
                    return child
        return None

    def _acquire(self, event: Acquire, now: float) -> None:
        found = self.policies.get(event.reqid)
        if found is None:
            self.count("acquire-unknown-policy")
            return
        peer, policy = found
        if self._has_child(peer, policy) or self.in_progress(peer, policy):
            self.count("acquire-coalesced")  # a burst for one flow: one exchange
            return
        self.start_create(peer, [policy], now, acquire_seq=event.seq)

    def request(self, req: LocalRequest, now: float) -> None:
        if isinstance(req, Initiate):
            self.renegotiate(self.peers[req.peer], now)
        elif isinstance(req, Status):
            self.start_status(self.peers[req.peer], now)
        elif isinstance(req, Terminate):
            children = self._select(req.peer, req.spi)
            self.start_delete(children, now)
            self.cancel_waiting_rekeys(children)
            # The pairs rekeyed away whose DELETE is held (any peer's: they would go within
            # DELETE_HOLD anyway) go now, with these if of the same peer: the daemon's shutdown
            # waits for every child to be gone.
            self.start_held_deletes(now)
        elif isinstance(req, Rekey):
            for child in self._select(req.peer, req.spi):
                if child.initiator or req.spi is not None:
                    child.rekeying = False
                    self.rekey(child, now)

    def _select(self, peer: str | None, spi: int | None) -> list[Child]:
        out = []
        # A peer named: its children only (Sadb.of_peer), not a walk of every child (issue 9).
        children = self.sadb.children.values() if peer is None else self.sadb.of_peer(peer)
        for child in list(children):
            if child.state is not ChildState.INSTALLED:
                continue
            if spi is not None and all(
                spi not in (s.inbound_spi, s.outbound_spi) for s in child.sas
            ):
                continue
            out.append(child)
        return out

    def sa_activity(
        self, protocol: int, inbound_spi: int, bytes_in: int, bytes_out: int, now: float
    ) -> None:
        """Dead peer detection input (RFC 4430 §3.7: only on suspicion, never periodic
        keepalives): the kernel's byte counters of one protocol of a child, as read now.

        protocol, inbound_spi: one (protocol, inbound SPI) of a child (ChildView.spis);
        bytes_in: the cumulative byte counter of that inbound SA; bytes_out: that of its outbound
        twin (the outbound SPI on the same line of ChildView.spis). Counters are cumulative, as
        XFRM keeps them (curlft.bytes); the engine keeps the last sample per child and protocol
        (0 before the first: a new SA counts from 0) and looks only at whether each grew. Poll
        every few seconds (well under config.dpd_delay, e.g. a third of it); calling for each
        protocol of a bundle is fine.

        Outbound bytes that grow while inbound ones do not, for dpd_delay, send one STATUS to
        the peer; any inbound growth clears the suspicion; a STATUS with no REPLY after its
        retransmissions takes the peer's SAs down (and start_action=start negotiates anew).
        A rekey makes a new child with new SPIs, whose counters start from 0: samples go to the
        new SPIs from then on (the old child's stop mattering once it is deleted). A counter
        lower than the last sample (an SA re-created, an engine restored from records) is a new
        baseline: nothing is inferred from that sample. SPIs the engine does not know, or of a
        child not installed, are ignored."""
        child = self.sadb.by_inbound(protocol, inbound_spi)
        if child is None or child.state is not ChildState.INSTALLED:
            return
        last = child.counters.get(protocol, (0, 0))  # a new SA counts from 0
        child.counters[protocol] = (bytes_in, bytes_out)
        if bytes_in < last[0] or bytes_out < last[1]:
            return  # a counter reset: a new baseline
        got_in, sent_out = bytes_in > last[0], bytes_out > last[1]
        if got_in:
            child.quiet_since = None
        elif sent_out and child.quiet_since is None:
            child.quiet_since = now
        if child.quiet_since is not None and now - child.quiet_since >= self.config.dpd_delay:
            child.quiet_since = None
            self.start_status(child.peer, now, dpd=True)

    def start(self, now: float) -> None:
        """Negotiate with every peer whose start_action is START."""
        for peer in self.peers.values():
            if peer.config.start_action is StartAction.START:
                self.renegotiate(peer, now)

    # ---------------------------------------------------------------------- outputs

    def next_action(self) -> Action | None:
        actions = self.actions
        while not actions and self.creates:
            # The run of inputs is over: the negotiations it started go, one CREATE per peer
            # (Initiator.start_create, RFC 4430 §4.2.6). Starting them may start others (a
            # CREATE failing at once, keep_up).
            self.start_waiting_creates()
        return actions.popleft() if actions else None

    def next_timer(self) -> float | None:
        timers = self.timers
        while timers and timers[0][2].cancelled:
            heappop(timers)
        return timers[0][0] if timers else None

    def snapshot(self) -> EngineState:
        peers = tuple(
            PeerView(
                p.config.name,
                p.epoch,
                sum(
                    1 for t in p.transactions.values() if isinstance(t, Transaction) and not t.done
                ),
                # Queued: waiting for a slot, or for the end of the run (start_create).
                len(p.queue)
                + sum(1 for t in self.creates.values() if t.peer is p and t.negotiations),
                p.rtt,
            )
            for p in self.peers.values()
        )
        children = tuple(
            ChildView(
                c.id,
                c.peer.config.name,
                c.initiator,
                c.state.value,
                c.spis(),
                c.peer_epoch,
                c.rekey_at,
                c.policy.local,
                c.policy.remote,
                c.mode,
                c.policy.reqid,
                c.transforms,
                c.life,
                c.pfs_group,
                c.created,
            )
            for c in self.sadb.children.values()
        )
        return EngineState(self.epoch, peers, children, len(self.answers), dict(self.counters))
