"""Complete CREATE exchanges per second between two engines in one process: real Kerberos
(a throwaway MIT realm, aes256-cts-hmac-sha1-96 session keys, kink.krb5.replay cache), the
in-memory SA backend of the engine tests, 2-way optimistic ESP AES-128-CBC + HMAC-SHA1.

Each exchange: ACQUIRE -> optimistic inbound SA (its SPI drawn by the engine from the OS's
CSPRNG, as in kinkd) -> CREATE -> AP-REQ check -> two SAs (the inbound SPI drawn) -> REPLY ->
AP-REP check -> outbound SA; then both engines forget the pair locally (no DELETE) so that the
next ACQUIRE negotiates again. A 2-way exchange reserves no SPI in the kernel (no AllocateSpi:
the driver refuses one).

The second figure, engine_rekeys, is a whole rekey of one established pair as kinkd makes it
(RFC 4430 §3.6): a soft Expire of the initiator's inbound SA -> CREATE -> REPLY, the new pair in
on both sides and, once its hold is over (kink.engine.initiator.DELETE_HOLD), the old one's
DELETE (§3.3) -> REPLY, then the grace timers on both sides, after which only the new pair is
left, and what kinkd saves of it (Engine.record_changes: the new child's record, the old one's
id; kinkd asks once per batch of exchanges, here once per rekey). Its clock advances by
REKEY_STEP seconds a rekey, so that the timers (grace, the responder's reply cache) come due as
they would in kinkd; each step is timed as above.

The third, engine_rekeys_batched, is the same with BATCH pairs (BATCH policies of one peer)
rekeyed at once, as kinkd sees a burst: the soft Expires of all in one run of inputs, each
side's datagrams handed to the other together and only then its actions carried out, as
kinkd's reader hands the engine a turn's datagrams before its executor runs. The DELETEs of
the rekeyed-away pairs go as one DELETE per peer once their hold is over (RFC 4430 §3.3, §6.4:
Delete payloads list SPIs) and the CREATEs as few per peer as fit a datagram (RFC 4430 §4.2.6:
several KINK_ISAKMP payloads, kink.engine.initiator.MAX_CREATE_OCTETS); datagrams_per_rekey
counts both sides'.

The fourth, engine_rekeys_apart, is the same with each of the BATCH rekeys in a run of inputs
of its own (its Expire, CREATE, REPLY, the new pair in), as at a steady rate of rekeys: their
old pairs' DELETEs are held (kink.engine.initiator.DELETE_HOLD) and go as one once the hold is
over.

The fifth, engine_acquire_burst, is BURST flows of one peer starting at once (BURST ACQUIREs
in one run of inputs, as after a reboot or a burst of new connections, bench/uml_burst.py): the
CREATEs they go in, the REPLYs, every pair in on both sides; then both engines forget the pairs
locally (no DELETE) so that the next burst negotiates again. Per pair set up, both engines.

The driver below hands each action straight to its handler and each datagram straight to the
other engine, so that the figure is the engines' cost and not a simulator's. It times every
step on its own: the initiator up to its CREATE, the responder up to its REPLY, the initiator
until its outbound SA is in, and the local teardown that makes the next round possible.

The cycle collector runs as in kinkd (kink.daemon.runner: start-up frozen, thresholds
GC_YOUNG_THRESHOLD, GC_MIDDLE_THRESHOLD, GC_OLD_THRESHOLD), since that is the process the engine
runs in; the figure with the interpreter's default collector is printed beside it
(engine_create_exchanges.default_gc).
"""

import contextlib
import gc
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from bench.common import emit, rounds
from kink.daemon.runner import GC_MIDDLE_THRESHOLD, GC_OLD_THRESHOLD, GC_YOUNG_THRESHOLD
from kink.engine import (
    Engine,
    EngineConfig,
    Krb5Port,
    PeerConfig,
    Policy,
    ProposalSpec,
    TransformSpec,
)
from kink.engine.events import (
    Acquire,
    DeleteSa,
    Expire,
    FetchTicket,
    InstallSa,
    SaDeleted,
    SaEstablished,
    Selector,
    SendDatagram,
    TicketResult,
    UpdateSa,
)
from kink.engine.initiator import DELETE_HOLD
from kink.krb5.acceptor import Acceptor
from kink.krb5.context import Context
from kink.krb5.credentials import Credentials
from kink.krb5.initiator import Initiator
from kink.wire.ipsec_doi import AuthAlgorithm, EspTransform, ProtocolId
from tests.engine.harness import Kernel
from tests.support.kdc import Realm

WARMUP = 300  # exchanges before timing: ticket fetched, caches and allocator settled
ROUNDS = 7
ROUND_SECONDS = 0.6
ESP_AES128_SHA1 = ProposalSpec(
    (TransformSpec(ProtocolId.ESP, EspTransform.AES_CBC, AuthAlgorithm.HMAC_SHA1, 128),)
)
PHASES = ("initiator_create", "responder_reply", "initiator_reply", "teardown")
REKEY_PHASES = (
    "initiator_create",  # soft Expire -> CREATE
    "responder_reply",  # CREATE -> new pair in -> REPLY
    "initiator_reply",  # REPLY -> new pair in; the hold timer -> old pair's DELETE
    "responder_delete",  # DELETE -> old outbound SA out -> REPLY
    "initiator_delete_reply",  # REPLY of the DELETE -> old outbound SA out
    "grace",  # both grace timers: the old inbound SAs out, the old child forgotten
    "records",  # both engines' record_changes: what kinkd saves of the rekey (state file)
)
# Virtual seconds per rekey: past the responder's grace (delete_grace_default, no RTT measured
# there) so that each rekey ends with the old pair gone on both sides.
REKEY_STEP = 5.0
BATCH = 16  # pairs rekeyed together (engine_rekeys_batched)
BURST = 64  # flows starting together (engine_acquire_burst)
A_ADDRESS, B_ADDRESS = "192.0.2.1", "192.0.2.2"


class Side:
    """One engine with its kernel; runs its actions to completion, collecting datagrams."""

    def __init__(self, engine: Engine, kernel: Kernel, credentials: Credentials) -> None:
        self.engine = engine
        self.kernel = kernel
        self.credentials = credentials
        self.outbox: list[bytes] = []
        self.established = 0
        self.deleted = 0
        self._handlers: dict[type, Callable[[Any], None]] = {
            SendDatagram: lambda a: self.outbox.append(a.data),
            InstallSa: lambda a: engine.helper_result(kernel.install(a), 0.0),
            UpdateSa: lambda a: engine.helper_result(kernel.update(a), 0.0),
            DeleteSa: lambda a: engine.helper_result(kernel.delete(a), 0.0),
            FetchTicket: self._fetch,
            SaEstablished: self._established,
            SaDeleted: self._deleted,
        }

    def _fetch(self, action: FetchTicket) -> None:
        self.credentials.get_ticket(action.principal)
        self.engine.ticket_result(TicketResult(action.token, True), 0.0)

    def _established(self, _: SaEstablished) -> None:
        self.established += 1

    def _deleted(self, _: SaDeleted) -> None:
        self.deleted += 1

    def run(self) -> None:
        engine, handlers = self.engine, self._handlers
        while (action := engine.next_action()) is not None:
            handler = handlers.get(type(action))
            if handler is None:
                raise AssertionError(f"unexpected {action!r} in a clean exchange")
            handler(action)

    def take(self) -> bytes:
        if len(self.outbox) != 1:
            raise AssertionError(f"{len(self.outbox)} datagrams where one was expected")
        return self.outbox.pop()


def _host(realm: Realm, tmp: Path, name: str) -> tuple[str, Credentials, Krb5Port]:
    principal, keytab = realm.add_host(f"{name}.kink.bench")
    creds = Credentials(Context(realm.krb5_conf), principal, str(keytab))
    creds.acquire()
    (tmp / name).mkdir()
    context = Context(realm.krb5_conf, rcache_dir=tmp / name)
    acceptor = Acceptor(context, principal, keytab=str(keytab), credentials=creds)
    return principal, creds, Krb5Port(Initiator(context), acceptor, creds)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name, Realm.start(Path(tmp_name) / "realm") as realm:
        tmp = Path(tmp_name)
        pa, ca, porta = _host(realm, tmp, "a")
        pb, cb, portb = _host(realm, tmp, "b")
        peer_of_a = PeerConfig("b", "192.0.2.2", pb, (), (ESP_AES128_SHA1,))
        peer_of_b = PeerConfig("a", "192.0.2.1", pa, (), (ESP_AES128_SHA1,))
        engine_a = Engine(EngineConfig("192.0.2.1", pa, (peer_of_a,)), porta, epoch=1, now=0.0)
        engine_b = Engine(EngineConfig("192.0.2.2", pb, (peer_of_b,)), portb, epoch=2, now=0.0)
        a = Side(engine_a, Kernel(random.Random(1)), ca)
        b = Side(engine_b, Kernel(random.Random(2)), cb)
        from_a, from_b = ("192.0.2.1", 910), ("192.0.2.2", 910)
        acquire = Acquire(next(iter(a.engine.policies)))
        clock = time.perf_counter
        spent = dict.fromkeys(PHASES, 0.0)

        def exchange() -> None:
            t0 = clock()
            a.engine.kernel_event(acquire, 0.0)
            a.run()
            t1 = clock()
            b.engine.datagram_received(a.take(), from_a, 0.0)
            b.run()
            t2 = clock()
            a.engine.datagram_received(b.take(), from_b, 0.0)
            a.run()
            t3 = clock()
            for side in (a, b):
                for child in list(side.engine.sadb.children.values()):
                    side.engine.remove_child(child, "bench", 0.0)
                side.run()
            t4 = clock()
            spent["initiator_create"] += t1 - t0
            spent["responder_reply"] += t2 - t1
            spent["initiator_reply"] += t3 - t2
            spent["teardown"] += t4 - t3

        for _ in range(WARMUP):
            exchange()

        def timed() -> tuple[list[float], int, float]:
            """Rates of ROUNDS rounds, exchanges made, thread CPU seconds."""
            established = a.established, b.established
            cpu = time.thread_time()  # the machine may be shared: CPU time beside wall
            rates, total = rounds(exchange, ROUNDS, ROUND_SECONDS, 50)
            cpu = time.thread_time() - cpu
            # Every exchange set up one pair on each side and the teardown left nothing.
            assert (a.established, b.established) == (
                established[0] + total,
                established[1] + total,
            )
            assert not a.kernel.sas and not b.kernel.sas and not a.engine.sadb.children
            return rates, total, cpu

        # First with the cycle collector at the interpreter's defaults, then as kinkd runs it
        # (kink.daemon.runner: what start-up made frozen, its thresholds: _kinkd_gc);
        # the second is the figure, the engine's cost in the process that runs it.
        default_rates, _, _ = timed()
        spent.update(dict.fromkeys(PHASES, 0.0))
        with _kinkd_gc():
            rates, total, cpu = timed()

        ticket = ca.cached_ticket(pb)
        rate = statistics.median(rates)
        emit(
            "engine_create_exchanges",
            rate,
            "exchanges/s",
            us_per_exchange=round(1e6 / rate, 1),
            cpu_us_per_exchange=round(cpu / total * 1e6, 1),
            best=round(max(rates), 1),
            rounds=ROUNDS,
            exchanges=total,
            enctype=ticket.session_key.enctype if ticket else None,
            handshake="2-way",
            transform="esp aes128-cbc hmac-sha1",
            gc=_KINKD_GC,
        )
        emit(
            "engine_create_exchanges.default_gc",
            statistics.median(default_rates),
            "exchanges/s",
            best=round(max(default_rates), 1),
        )
        for phase in PHASES:
            emit(f"engine_create_exchanges.{phase}", spent[phase] / total * 1e6, "us/exchange")
        _rekeys(a, b, acquire)
        _batched_rekeys(_batch_sides(pa, ca, porta, pb, cb, portb))
        _batched_rekeys(_batch_sides(pa, ca, porta, pb, cb, portb), apart=True)
        _acquire_burst(_batch_sides(pa, ca, porta, pb, cb, portb, pairs=BURST))


def _rekeys(a: Side, b: Side, acquire: Acquire) -> None:
    """The engine_rekeys figure (module docstring): one pair set up, then rekeyed over and
    over, the cycle collector as kinkd runs it."""
    from_a, from_b = ("192.0.2.1", 910), ("192.0.2.2", 910)
    clock = time.perf_counter
    spent = dict.fromkeys(REKEY_PHASES, 0.0)
    now = 0.0
    a.engine.kernel_event(acquire, now)
    a.run()
    b.engine.datagram_received(a.take(), from_a, now)
    b.run()
    a.engine.datagram_received(b.take(), from_b, now)
    a.run()

    def rekey() -> None:
        nonlocal now
        now += REKEY_STEP
        (old,) = a.engine.sadb.children.values()
        pair = old.sas[0]
        t0 = clock()
        a.engine.kernel_event(Expire(pair.protocol, pair.inbound_spi, "192.0.2.1", False), now)
        a.run()
        t1 = clock()
        b.engine.datagram_received(a.take(), from_a, now)
        b.run()
        t2 = clock()
        a.engine.datagram_received(b.take(), from_b, now)
        a.run()
        # The old pair's DELETE is held (kink.engine.initiator.DELETE_HOLD): its timer.
        a.engine.handle_timer(now + DELETE_HOLD)
        a.run()
        t3 = clock()
        b.engine.datagram_received(a.take(), from_a, now)
        b.run()
        t4 = clock()
        a.engine.datagram_received(b.take(), from_b, now)
        a.run()
        t5 = clock()
        for side in (a, b):
            side.engine.handle_timer(now + REKEY_STEP / 2)
            side.run()
        t6 = clock()
        for side in (a, b):
            side.engine.record_changes(now + REKEY_STEP / 2)
        t7 = clock()
        spent["initiator_create"] += t1 - t0
        spent["responder_reply"] += t2 - t1
        spent["initiator_reply"] += t3 - t2
        spent["responder_delete"] += t4 - t3
        spent["initiator_delete_reply"] += t5 - t4
        spent["grace"] += t6 - t5
        spent["records"] += t7 - t6

    for _ in range(WARMUP):
        rekey()
    spent.update(dict.fromkeys(REKEY_PHASES, 0.0))
    counts = a.established, b.established, a.deleted, b.deleted
    with _kinkd_gc():
        cpu = time.thread_time()
        rates, total = rounds(rekey, ROUNDS, ROUND_SECONDS, 50)
        cpu = time.thread_time() - cpu
    # Each rekey made one pair and deleted one on each side; one pair is left on each side.
    assert (a.established, b.established, a.deleted, b.deleted) == tuple(n + total for n in counts)
    for side in (a, b):
        assert len(side.engine.sadb.children) == 1 and len(side.kernel.sas) == 2
    rate = statistics.median(rates)
    emit(
        "engine_rekeys",
        rate,
        "rekeys/s",
        us_per_rekey=round(1e6 / rate, 1),
        cpu_us_per_rekey=round(cpu / total * 1e6, 1),
        best=round(max(rates), 1),
        rounds=ROUNDS,
        rekeys=total,
        what="CREATE + REPLY, DELETE of the old pair + REPLY, grace timers; both engines",
        gc=_KINKD_GC,
    )
    for phase in REKEY_PHASES:
        emit(f"engine_rekeys.{phase}", spent[phase] / total * 1e6, "us/rekey")


def _batch_sides(
    pa: str,
    ca: Credentials,
    porta: Krb5Port,
    pb: str,
    cb: Credentials,
    portb: Krb5Port,
    *,
    pairs: int = BATCH,
) -> tuple[Side, Side]:
    """Two engines with `pairs` policies between them (host to host, one UDP port each), all
    of which may be negotiated at once."""

    def policies(here: str, there: str, local_port: bool) -> tuple[Policy, ...]:
        return tuple(
            Policy(
                Selector(ip_network(here), 17, 4000 + i if local_port else 0),
                Selector(ip_network(there), 17, 0 if local_port else 4000 + i),
                reqid=100 + i,
            )
            for i in range(pairs)
        )

    peer_of_a = PeerConfig(
        "b", B_ADDRESS, pb, policies(A_ADDRESS, B_ADDRESS, True), (ESP_AES128_SHA1,)
    )
    peer_of_b = PeerConfig(
        "a", A_ADDRESS, pa, policies(B_ADDRESS, A_ADDRESS, False), (ESP_AES128_SHA1,)
    )
    # Every pair may be negotiated at once (as in bench/harness.py's daemons): with fewer
    # slots the CREATEs, and so the REPLYs settling them, would come a few at a time.
    config_a = EngineConfig(A_ADDRESS, pa, (peer_of_a,), max_outstanding=pairs)
    config_b = EngineConfig(B_ADDRESS, pb, (peer_of_b,), max_outstanding=pairs)
    engine_a = Engine(config_a, porta, epoch=3, now=0.0)
    engine_b = Engine(config_b, portb, epoch=4, now=0.0)
    return Side(engine_a, Kernel(random.Random(3)), ca), Side(
        engine_b, Kernel(random.Random(4)), cb
    )


def _exchange(sides: tuple[Side, Side], now: float) -> int:
    """Hand each side's datagrams to the other, all of them before its actions (one run of
    inputs), until none is left; how many there were."""
    a, b = sides
    datagrams = 0
    while a.outbox or b.outbox:
        for src, dst, address in ((a, b, (A_ADDRESS, 910)), (b, a, (B_ADDRESS, 910))):
            sent, src.outbox[:] = list(src.outbox), []
            datagrams += len(sent)
            for data in sent:
                dst.engine.datagram_received(data, address, now)
            dst.run()
    return datagrams


def _batched_rekeys(sides: tuple[Side, Side], *, apart: bool = False) -> None:
    """The engine_rekeys_batched figure (module docstring); apart: engine_rekeys_apart, each
    rekey in a run of inputs of its own."""
    a, b = sides
    now = 0.0
    datagrams = 0

    for reqid in list(a.engine.policies):
        a.engine.kernel_event(Acquire(reqid), now)
    a.run()
    _exchange(sides, now)
    assert len(a.engine.sadb.children) == BATCH

    def rekeys() -> None:
        nonlocal now, datagrams
        now += REKEY_STEP
        for child in list(a.engine.sadb.children.values()):
            pair = child.sas[0]
            a.engine.kernel_event(Expire(pair.protocol, pair.inbound_spi, A_ADDRESS, False), now)
            if apart:
                a.run()
                datagrams += _exchange(sides, now)
        a.run()
        datagrams += _exchange(sides, now)
        # The old pairs' DELETE is held (kink.engine.initiator.DELETE_HOLD): its timer.
        a.engine.handle_timer(now + DELETE_HOLD)
        a.run()
        datagrams += _exchange(sides, now)
        for side in (a, b):
            side.engine.handle_timer(now + REKEY_STEP / 2)
            side.run()
            side.engine.record_changes(now + REKEY_STEP / 2)

    for _ in range(WARMUP // BATCH):
        rekeys()
    counts = a.established, b.established, a.deleted, b.deleted
    datagrams = 0
    rate, cpu, best, made = _batches(rekeys, BATCH)
    # Each batch made BATCH pairs and deleted BATCH on each side; BATCH are left on each side.
    assert (a.established, b.established, a.deleted, b.deleted) == tuple(n + made for n in counts)
    for side in (a, b):
        assert len(side.engine.sadb.children) == BATCH and len(side.kernel.sas) == 2 * BATCH
    emit(
        "engine_rekeys_apart" if apart else "engine_rekeys_batched",
        rate,
        "rekeys/s",
        us_per_rekey=round(1e6 / rate, 1),
        cpu_us_per_rekey=round(cpu / made * 1e6, 1),
        best=round(best, 1),
        batch=BATCH,
        rounds=ROUNDS,
        rekeys=made,
        datagrams_per_rekey=round(datagrams / made, 2),
        what=f"{BATCH} pairs rekeyed in "
        + ("a run of inputs each, within one DELETE_HOLD" if apart else "one run of inputs")
        + "; both engines",
        gc=_KINKD_GC,
    )


def _acquire_burst(sides: tuple[Side, Side]) -> None:
    """The engine_acquire_burst figure (module docstring)."""
    a, b = sides
    acquires = [Acquire(reqid) for reqid in a.engine.policies]
    datagrams = 0

    def burst() -> None:
        nonlocal datagrams
        for acquire in acquires:
            a.engine.kernel_event(acquire, 0.0)
        a.run()
        datagrams += _exchange(sides, 0.0)
        for side in (a, b):
            for child in list(side.engine.sadb.children.values()):
                side.engine.remove_child(child, "bench", 0.0)
            side.run()

    for _ in range(WARMUP // BURST + 1):
        burst()
    counts = a.established, b.established
    datagrams = 0
    rate, cpu, best, made = _batches(burst, BURST)
    # Each burst set up BURST pairs on each side and the teardown left nothing.
    assert (a.established, b.established) == (counts[0] + made, counts[1] + made)
    assert not a.kernel.sas and not b.kernel.sas and not a.engine.sadb.children
    emit(
        "engine_acquire_burst",
        rate,
        "pairs/s",
        us_per_pair=round(1e6 / rate, 1),
        cpu_us_per_pair=round(cpu / made * 1e6, 1),
        best=round(best, 1),
        burst=BURST,
        rounds=ROUNDS,
        pairs=made,
        datagrams_per_pair=round(datagrams / made, 3),
        what=f"{BURST} ACQUIREs of one peer in one run of inputs; both engines",
        gc=_KINKD_GC,
    )


def _batches(batch: Callable[[], None], size: int) -> tuple[float, float, float, int]:
    """Rounds of `batch` (each doing `size` of what is counted) with the collector as kinkd
    runs it: the median and best rate of that thing per second, the thread CPU seconds, and
    how many were done."""
    with _kinkd_gc():
        cpu = time.thread_time()
        rates, total = rounds(batch, ROUNDS, ROUND_SECONDS, 1)
        cpu = time.thread_time() - cpu
    return statistics.median(rates) * size, cpu, max(rates) * size, total * size


# The figures' note of the collector they ran with (_kinkd_gc).
_KINKD_GC = (
    "kinkd's (start-up frozen, thresholds "
    f"{GC_YOUNG_THRESHOLD}, {GC_MIDDLE_THRESHOLD}, {GC_OLD_THRESHOLD})"
)


@contextlib.contextmanager
def _kinkd_gc() -> Iterator[None]:
    """The cycle collector as kinkd runs it (kink.daemon.runner: what start-up made frozen,
    thresholds GC_YOUNG_THRESHOLD, GC_MIDDLE_THRESHOLD, GC_OLD_THRESHOLD), the interpreter's
    defaults again afterwards."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, GC_MIDDLE_THRESHOLD, GC_OLD_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


if __name__ == "__main__":
    main()
