"""CREATE cost against the number of children an engine already holds (issue 9: 10,000+ SAs).

Two engines in one process as in bench.bench_engine (real Kerberos, the in-memory SA backend,
2-way optimistic ESP), one peer each with SIZE + 1 policies (tunnel mode, 10.1.0.0/16 to one
remote /32 each, as one pair of hosts protecting many flows). Each side first holds SIZE
established children, one per policy but the last, put straight into its SADB; then ACQUIREs
for the free last policy (the worst place for a walk of the policies) are negotiated one after
the other, each new pair torn down locally before the next. A per-exchange path that walks
every child (or every policy) of the peer shows as a cost growing with SIZE; the target is a
flat line.

Figures per SIZE: microseconds of wall time per complete exchange (median of the rounds, and
the best), CPU microseconds per exchange. Then a burst: SIZE ACQUIREs at once for SIZE policies
without SAs (traffic for every flow after a start), in one run of inputs: they go in CREATEs
of several negotiations each once the run's actions are drained (kink.engine.initiator
start_create), of which max_outstanding start and the rest wait in the peer's queue;
microseconds per ACQUIRE taken (each asks whether its policy has an exchange under way, queued
or waiting already) and the actions drained (not carried out).
"""

import gc
import random
import statistics
import tempfile
import time
from ipaddress import ip_network
from pathlib import Path

from bench.bench_engine import ESP_AES128_SHA1, Side, _host
from bench.common import emit, quick, rounds
from kink.engine import Engine, EngineConfig, PeerConfig
from kink.engine.config import Policy
from kink.engine.events import Acquire, SaEstablished, Selector
from kink.engine.proposals import Lifetime
from kink.engine.sadb import Child, ChildState, SaPair
from kink.krb5.credentials import Credentials
from kink.wire.ipsec_doi import ProtocolId
from tests.engine.harness import Kernel
from tests.support.kdc import Realm

SIZES = (10, 1_000, 10_000)
WARMUP = 100
ROUNDS = 5
ROUND_SECONDS = 0.3
REQID_BASE = 0x1000
LOCAL = Selector(ip_network("10.1.0.0/16"))
A, B = "192.0.2.1", "192.0.2.2"


def _policies(count: int, *, mirror: bool) -> tuple[Policy, ...]:
    out = []
    for i in range(count):
        remote = Selector(ip_network((0x0A80_0000 + i, 32)))
        local, remote = (remote, LOCAL) if mirror else (LOCAL, remote)
        out.append(Policy(local, remote, REQID_BASE + i))
    return tuple(out)


class Recorder(Side):
    """A Side that notes the children established, to tear down only those."""

    def __init__(self, engine: Engine, kernel: Kernel, credentials: Credentials) -> None:
        super().__init__(engine, kernel, credentials)
        self.new: list[int] = []
        self._handlers[SaEstablished] = self._note

    def _note(self, notice: SaEstablished) -> None:
        self.established += 1
        self.new.append(notice.child)

    def teardown(self) -> None:
        for child_id in self.new:
            self.engine.remove_child(self.engine.sadb.children[child_id], "bench", 0.0)
        self.new.clear()
        self.run()


def _populate(side: Side, size: int, *, initiator: bool, peer_epoch: int) -> None:
    """SIZE established children, one per policy but the last; their SPIs are marked taken in
    the kernel's allocator so that new ones never collide."""
    engine = side.engine
    (peer,) = engine.peers.values()
    here = engine.config.address
    policies = engine.peer_policies[peer.config.name]
    base = 0x1000_0000 if initiator else 0x2000_0000
    for i, policy in enumerate(policies[:-1]):
        spi_in, spi_out = base + i, (0x3000_0000 - base) + i
        side.kernel.larval.add((here, ProtocolId.ESP, spi_in))
        child = Child(
            engine.sadb.new_id(),
            peer,
            policy,
            initiator,
            [SaPair(ProtocolId.ESP, spi_in, spi_out, True, True)],
            Lifetime(3600, 0),
            peer_epoch,
            0.0,
            state=ChildState.INSTALLED,
            mode="tunnel",
        )
        engine.sadb.add(child)


def _measure(realm: Realm, tmp: Path, size: int) -> None:
    pa, ca, porta = _host(realm, tmp, f"a{size}")
    pb, cb, portb = _host(realm, tmp, f"b{size}")
    count = size + 1
    proposals = (ESP_AES128_SHA1,)
    peer_of_a = PeerConfig("b", B, pb, _policies(count, mirror=False), proposals, mode="tunnel")
    peer_of_b = PeerConfig("a", A, pa, _policies(count, mirror=True), proposals, mode="tunnel")
    engine_a = Engine(EngineConfig(A, pa, (peer_of_a,)), porta, epoch=1, now=0.0)
    engine_b = Engine(EngineConfig(B, pb, (peer_of_b,)), portb, epoch=2, now=0.0)
    a = Recorder(engine_a, Kernel(random.Random(1)), ca)
    b = Recorder(engine_b, Kernel(random.Random(2)), cb)
    _populate(a, size, initiator=True, peer_epoch=2)
    _populate(b, size, initiator=False, peer_epoch=1)
    acquire = Acquire(REQID_BASE + size)

    def exchange() -> None:
        a.engine.kernel_event(acquire, 0.0)
        a.run()
        b.engine.datagram_received(a.take(), (A, 910), 0.0)
        b.run()
        a.engine.datagram_received(b.take(), (B, 910), 0.0)
        a.run()
        a.teardown()
        b.teardown()

    for _ in range(WARMUP):
        exchange()
    established = a.established
    gc.collect()
    cpu = time.thread_time()
    rates, total = rounds(exchange, ROUNDS, ROUND_SECONDS, 20)
    cpu = time.thread_time() - cpu
    # Each exchange set up one new pair and the teardown left the SIZE children as they were.
    assert a.established == established + total
    assert len(a.engine.sadb.children) == len(b.engine.sadb.children) == size
    rate = statistics.median(rates)
    emit(
        "engine_scale_create",
        1e6 / rate,
        "us/exchange",
        children=size,
        best_us=round(1e6 / max(rates), 1),
        cpu_us_per_exchange=round(cpu / total * 1e6, 1),
        rounds=ROUNDS,
        exchanges=total,
    )


def _burst(realm: Realm, tmp: Path, size: int) -> None:
    pa, _, porta = _host(realm, tmp, f"burst-a{size}")
    pb, _, _ = _host(realm, tmp, f"burst-b{size}")
    peer = PeerConfig("b", B, pb, _policies(size, mirror=False), (ESP_AES128_SHA1,), mode="tunnel")
    engine = Engine(EngineConfig(A, pa, (peer,)), porta, epoch=1, now=0.0)
    acquires = [Acquire(REQID_BASE + i) for i in range(size)]
    gc.collect()  # a full collection of the earlier sizes' objects is no cost of the ACQUIREs
    cpu, start = time.thread_time(), time.perf_counter()
    for acquire in acquires:
        engine.kernel_event(acquire, 0.0)
    while engine.next_action() is not None:
        pass
    took, cpu = time.perf_counter() - start, time.thread_time() - cpu
    queued = len(engine.peers["b"].queue)
    # Every policy under way or queued: max_outstanding CREATEs started before any is queued.
    assert len(engine.peers["b"].creating) == size
    assert not queued or engine.peers["b"].active == engine.config.max_outstanding
    emit(
        "engine_scale_acquire_burst",
        took / size * 1e6,
        "us/acquire",
        policies=size,
        queued=queued,
        cpu_us_per_acquire=round(cpu / size * 1e6, 1),
    )


def main() -> None:
    sizes = SIZES[:2] if quick() else SIZES
    with tempfile.TemporaryDirectory() as tmp_name, Realm.start(Path(tmp_name) / "realm") as realm:
        for size in sizes:
            _measure(realm, Path(tmp_name), size)
        for size in sizes:
            _burst(realm, Path(tmp_name), size)


if __name__ == "__main__":
    main()
