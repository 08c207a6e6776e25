"""Two (or more) engines back to back in memory: a controllable clock, a network that can lose,
duplicate and reorder datagrams, and a recording SA backend that acts like the kernel (SPI
allocation, EEXIST on a taken SPI, deletes) and feeds helper_result back."""

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from kink.engine import Engine
from kink.engine.events import (
    EEXIST,
    Action,
    AllocateSpi,
    DeleteSa,
    FetchTicket,
    FetchU2uTicket,
    HelperResult,
    InstallSa,
    SaEstablished,
    SaSpec,
    SendDatagram,
    TicketResult,
    UpdateSa,
)
from kink.krb5.credentials import Credentials
from kink.krb5.errors import Krb5Error

SaKey = tuple[str, int, int]  # (dst, protocol, spi): what identifies an SA in the kernel


@dataclass
class Kernel:
    """The recording SA backend of one host, as XFRM answers: an SPI held by anything (an SA,
    a larval one from ALLOCSPI, another owner's) cannot be added again (EEXIST); only a larval
    SA can be filled (InstallSa.fills, UPDSA)."""

    rng: random.Random
    larval: set[SaKey] = field(default_factory=set)
    sas: dict[SaKey, SaSpec] = field(default_factory=dict)
    # SAs of another owner (another daemon, a manual one): a test puts them here; kink may
    # collide with them (EEXIST) but must never delete them.
    others: set[SaKey] = field(default_factory=set)
    log: list[Action] = field(default_factory=list)

    def taken(self, key: SaKey) -> bool:
        return key in self.sas or key in self.larval or key in self.others

    def allocate(self, action: AllocateSpi) -> HelperResult:
        while True:
            spi = self.rng.randrange(0x100, 0xFFFFFFFF)
            key = (action.dst, action.protocol, spi)
            if not self.taken(key):
                self.larval.add(key)
                return HelperResult(action.token, spi=spi)

    def install(self, action: InstallSa) -> HelperResult:
        s = action.spec
        key = (s.dst, s.protocol, s.spi)
        if action.fills:
            if key not in self.larval:
                return HelperResult(action.token, error="ESRCH")
            self.larval.discard(key)
        elif self.taken(key):
            return HelperResult(action.token, error=EEXIST)
        self.sas[key] = s
        return HelperResult(action.token)

    def update(self, action: UpdateSa) -> HelperResult:
        s = action.spec
        key = (s.dst, s.protocol, s.spi)
        if key not in self.sas:
            return HelperResult(action.token, error="ENOENT")
        self.sas[key] = s
        return HelperResult(action.token)

    def delete(self, action: DeleteSa) -> HelperResult:
        key = (action.dst, action.protocol, action.spi)
        assert key not in self.others, f"another owner's SA {action.spi:#x} deleted"
        self.larval.discard(key)
        if self.sas.pop(key, None) is None:
            return HelperResult(action.token, error="ENOENT")
        return HelperResult(action.token)


@dataclass
class Host:
    name: str
    address: str
    engine: Engine
    kernel: Kernel
    credentials: Credentials
    notices: list[object] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)


@dataclass
class InFlight:
    seq: int
    src: str
    dst: str
    data: bytes
    # The SAs in the sender's kernel when it was sent, and its larval ones (ALLOCSPI).
    installed: frozenset[SaKey] = frozenset()
    larval: frozenset[SaKey] = frozenset()


_SA_ACTIONS = (AllocateSpi, InstallSa, UpdateSa, DeleteSa)
Fate = Callable[[InFlight], str]  # "deliver", "drop", "dup" or "delay"


def deliver_all(_: InFlight) -> str:
    return "deliver"


class World:
    def __init__(self, hosts: list[Host], now: float) -> None:
        self.hosts = {h.address: h for h in hosts}
        self.now = now
        self.flight: list[InFlight] = []
        self.fate: Fate = deliver_all
        self._seq = itertools.count()
        self.delivered: list[InFlight] = []
        # helper_lag: SA actions are carried out (and answered) only once no engine has
        # anything else to do, as a helper process answers after the daemon went on: a
        # datagram emitted meanwhile leaves before them.
        self.helper_lag = False
        # batched: the datagrams in flight are all handed over before the engines' actions
        # are carried out, as kinkd's reader hands the engine a turn's datagrams before its
        # executor runs; else each is followed by a drain.
        self.batched = False
        self._lagging: list[tuple[Host, Action]] = []

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts.values() if h.name == name)

    def drain(self) -> None:
        """Carry out every pending action of every engine (in order, like the daemon)."""
        busy = True
        while busy:
            busy = False
            for host in self.hosts.values():
                while (action := host.engine.next_action()) is not None:
                    busy = True
                    if self.helper_lag and isinstance(action, _SA_ACTIONS):
                        self._lagging.append((host, action))
                    else:
                        self._act(host, action)
            if self._lagging:
                busy = True
                lagging, self._lagging = self._lagging, []
                for host, action in lagging:
                    self._act(host, action)

    def _act(self, host: Host, action: Action) -> None:
        engine, kernel = host.engine, host.kernel
        if isinstance(action, SendDatagram):
            host.sent.append(action.data)
            installed, larval = frozenset(kernel.sas), frozenset(kernel.larval)
            item = InFlight(
                next(self._seq), host.address, action.peer[0], action.data, installed, larval
            )
            self.flight.append(item)
            return
        kernel.log.append(action)
        if isinstance(action, AllocateSpi):
            engine.helper_result(kernel.allocate(action), self.now)
        elif isinstance(action, InstallSa):
            engine.helper_result(kernel.install(action), self.now)
        elif isinstance(action, UpdateSa):
            engine.helper_result(kernel.update(action), self.now)
        elif isinstance(action, DeleteSa):
            engine.helper_result(kernel.delete(action), self.now)
        elif isinstance(action, FetchTicket):
            engine.ticket_result(self._fetch(action.token, host, action.principal, None), self.now)
        elif isinstance(action, FetchU2uTicket):
            result = self._fetch(action.token, host, action.principal, action.peer_tgt)
            engine.ticket_result(result, self.now)
        else:
            host.notices.append(action)

    def _fetch(self, token: int, host: Host, principal: str, tgt: bytes | None) -> TicketResult:
        try:
            if tgt is None:
                host.credentials.get_ticket(principal)
            else:
                host.credentials.get_u2u_ticket(principal, tgt)
        except Krb5Error as exc:
            return TicketResult(token, False, exc.protocol_code)
        return TicketResult(token, True)

    def step(self) -> bool:
        """Deliver what is in flight (through the fate), or else fire the next timer.
        False when there is nothing left to do before `horizon`."""
        self.drain()
        if self.flight:
            batch, self.flight = self.flight, []
            delayed: list[InFlight] = []
            for item in batch:
                fate = self.fate(item)
                if fate == "drop":
                    continue
                if fate == "delay":
                    delayed.append(item)
                    continue
                self._deliver(item)
                if fate == "dup":
                    self._deliver(item)
            self.flight.extend(delayed)  # delivered after what is sent meanwhile: reordering
            self.drain()
            return True
        return False

    def _deliver(self, item: InFlight) -> None:
        target = self.hosts.get(item.dst)
        if target is None:
            return
        self.delivered.append(item)
        target.engine.datagram_received(item.data, (item.src, 910), self.now)
        if not self.batched:
            self.drain()

    def settle(self, horizon: float = 300.0) -> None:
        """Run until nothing is in flight and no timer is due within `horizon` seconds."""
        end = self.now + horizon
        while True:
            if self.step():
                continue
            due = [t for h in self.hosts.values() if (t := h.engine.next_timer()) is not None]
            if not due or min(due) > end:
                return
            self.now = max(self.now, min(due))
            for host in self.hosts.values():
                host.engine.handle_timer(self.now)
            self.drain()

    def advance(self, seconds: float) -> None:
        """Move the clock, firing timers on the way and delivering everything."""
        end = self.now + seconds
        while True:
            self.settle(0)
            due = [t for h in self.hosts.values() if (t := h.engine.next_timer()) is not None]
            if not due or min(due) > end:
                break
            self.now = max(self.now, min(due))
            for host in self.hosts.values():
                host.engine.handle_timer(self.now)
        self.now = end
        self.settle(0)

    def established(self, name: str) -> list[SaEstablished]:
        return [n for n in self.host(name).notices if isinstance(n, SaEstablished)]


def check_consistent(world: World) -> int:
    """Both sides hold exactly matching SAs (same keys) or none; no half-open pairs; the
    engines' books agree with their kernels. Returns the number of SA pairs."""
    hosts = list(world.hosts.values())
    for host in hosts:
        for (dst, protocol, spi), spec in host.kernel.sas.items():
            peer = world.hosts[spec.src] if spec.inbound else world.hosts[dst]
            twin = peer.kernel.sas.get((dst, protocol, spi))
            assert twin is not None, f"{host.name}: SA {spi:#x} to {dst} has no twin at {peer.name}"
            assert twin.inbound != spec.inbound
            assert (twin.enc_key, twin.auth_key) == (spec.enc_key, spec.auth_key), "keys differ"
            assert (twin.encryption, twin.authentication) == (spec.encryption, spec.authentication)
        books = {
            (s.protocol, spi)
            for c in host.engine.sadb.children.values()
            for s in c.sas
            for spi in (s.inbound_spi, s.outbound_spi)
        }
        kernel = {(p, spi) for (_, p, spi) in host.kernel.sas}
        assert books == kernel, f"{host.name}: engine books {books} != kernel {kernel}"
    pairs = sum(1 for h in hosts for s in h.kernel.sas.values() if s.inbound)
    return pairs


def children_per_policy(host: Host) -> dict[int, int]:
    counts: dict[int, int] = {}
    for child in host.engine.sadb.children.values():
        counts[child.policy.reqid] = counts.get(child.policy.reqid, 0) + 1
    return counts
