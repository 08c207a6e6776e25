"""The KINK protocol engine (RFC 4430), sans-IO: see kink/engine/__init__.py for its use.

Dispatch happens here. A received datagram is decoded before anything else; a datagram that
does not decode costs nothing more (no Kerberos call) and creates no state; only a command whose
version or DOI we do not support gets a lone KINK_ERROR (§4.2.8), computed without crypto.
"""

from dataclasses import dataclass

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
    Status,
    Terminate,
    TicketResult,
)
from kink.engine.initiator import Transaction
from kink.engine.responder import Responder
from kink.engine.sadb import Child, ChildState
from kink.wire import DecodeError, ErrorPayload, KinkErrorCode, MessageType, decode

_COMMANDS = frozenset({MessageType.CREATE, MessageType.DELETE, MessageType.STATUS, MessageType.ACK})
_UNSUPPORTED = frozenset({KinkErrorCode.INVMAJ, KinkErrorCode.INVDOI, KinkErrorCode.BADQMVERS})


@dataclass(frozen=True, slots=True)
class ChildView:
    id: int
    peer: str
    initiator: bool
    state: str
    spis: tuple[tuple[int, int, int], ...]
    peer_epoch: int | None
    rekey_at: float | None


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


class Engine(Responder):
    """Engine(config, kerberos, *, epoch, now, rng=None); feed it inputs, drain next_action()
    after each, and call handle_timer() when next_timer() is due."""

    # ----------------------------------------------------------------------- inputs

    def datagram_received(self, data: bytes, peer_address: Address, now: float) -> None:
        peer = self.peers_by_address.get(peer_address[0])
        try:
            msg = decode(data)
        except DecodeError as exc:
            header = exc.header
            if (
                peer is not None
                and header is not None
                and header.type in _COMMANDS
                and header.type != MessageType.ACK
                and exc.kink_error in _UNSUPPORTED
            ):
                # §4.2.8: "A responder SHOULD return a KINK error with KINK_INVMAJ ...".
                reply = messages.lone_reply(header.xid, ErrorPayload(exc.kink_error))
                from kink.engine.events import SendDatagram

                self.emit(SendDatagram(reply, self.address(peer)))
            self.drop("undecodable", peer_address)
            return
        if peer is None:
            self.drop("unknown-peer", peer_address)
            return
        if msg.type == MessageType.REPLY:
            self.on_reply(peer, msg, data, now)
        elif msg.type in _COMMANDS:
            self.on_command(peer, msg, data, now)
        elif msg.type == MessageType.GETTGT:
            self.on_gettgt(peer, msg, now)
        else:
            self.drop("unknown-type", peer_address)

    def handle_timer(self, now: float) -> None:
        import heapq

        while self.timers and self.timers[0].when <= now:
            timer = heapq.heappop(self.timers)
            if not timer.cancelled:
                timer.fn(now)

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

    def _by_outbound_address(self, protocol: int, spi: int, dst: str) -> Child | None:
        peer = self.peers_by_address.get(dst)
        if peer is None:
            return None
        return self.sadb.by_outbound(peer.config.name, protocol, spi)

    def _acquire(self, event: Acquire, now: float) -> None:
        found = self.policies.get(event.reqid)
        if found is None:
            self.count("acquire-unknown-policy")
            return
        peer, policy = found
        if self._has_child(peer, policy) or self.in_progress(peer, policy):
            self.count("acquire-coalesced")  # a burst for one flow: one exchange
            return
        self.start_create(peer, [policy], now)

    def request(self, req: LocalRequest, now: float) -> None:
        if isinstance(req, Initiate):
            self.renegotiate(self.peers[req.peer], now)
        elif isinstance(req, Status):
            self.start_status(self.peers[req.peer], now)
        elif isinstance(req, Terminate):
            self.start_delete(self._select(req.peer, req.spi), now)
        elif isinstance(req, Rekey):
            for child in self._select(req.peer, req.spi):
                if child.initiator or req.spi is not None:
                    child.rekeying = False
                    self.rekey(child, now)

    def _select(self, peer: str | None, spi: int | None) -> list[Child]:
        out = []
        for child in list(self.sadb.children.values()):
            if child.state is not ChildState.INSTALLED:
                continue
            if peer is not None and child.peer.config.name != peer:
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
        """Traffic counters the daemon polls (cumulative, inbound SA and its outbound twin).
        §3.7: DPD only on suspicion: outbound traffic with nothing coming back for dpd_delay
        sends one STATUS; no periodic keepalives."""
        child = self.sadb.by_inbound(protocol, inbound_spi)
        if child is None or child.state is not ChildState.INSTALLED:
            return
        got_in, sent_out = bytes_in > child.bytes_in, bytes_out > child.bytes_out
        child.bytes_in, child.bytes_out = bytes_in, bytes_out
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
        return self.actions.popleft() if self.actions else None

    def next_timer(self) -> float | None:
        import heapq

        while self.timers and self.timers[0].cancelled:
            heapq.heappop(self.timers)
        return self.timers[0].when if self.timers else None

    def snapshot(self) -> EngineState:
        peers = tuple(
            PeerView(
                p.config.name,
                p.epoch,
                sum(
                    1 for t in p.transactions.values() if isinstance(t, Transaction) and not t.done
                ),
                len(p.queue),
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
            )
            for c in self.sadb.children.values()
        )
        return EngineState(self.epoch, peers, children, len(self.answers), dict(self.counters))
