"""Rekey storm between two kinkd processes (bench.harness): every SA pair host a holds is
soft-expired at once and rekeyed (a CREATE exchange each, then the DELETE of the old pair,
RFC 4430 §3.6). Figures: the time to set the pairs up (an ACQUIRE each), then per round the
completion time, failures, peak RSS of each kinkd and CPU of the four processes.

Issue 9's storm is of PAIRS = 10,000 SA pairs between the two hosts (one peer each with 10,000
selector pairs); bench/run --quick (BENCH_QUICK=1) storms QUICK_PAIRS.

A save of the state file sits on the exchange path (a REPLY leaves once the child it commits
is on disk, kink.daemon.state_writer): storm.state_save is the cost of one coalesced save of
BATCH new children and BATCH gone (what a rekey makes) with 10,000 and 100,000 children saved,
of the first save (every child encoded) and of a snapshot of the encoded children (what every
save cost before the journal, the children's records aside); storm.state_load is what a restart
reads back (StateStore.load) with as many children saved.
"""

import statistics
import tempfile
import time
from ipaddress import ip_network
from pathlib import Path

from bench.common import emit, quick
from bench.harness import POLICIES, Host, cpu_seconds, hosts, memory_kib, processes_cpu
from kink.daemon.state import STATE_FILE, SavedChild, StateStore
from kink.engine import ChildRecord
from kink.engine.events import SaLifetimes, SaTransform, Selector

PAIRS = 10_000
QUICK_PAIRS = 1_000
ROUNDS = 3


def run(rounds: int = ROUNDS, pairs: int = POLICIES) -> None:
    with hosts(pairs) as (a, b):
        cpu = processes_cpu((a, b))
        began = time.monotonic()
        a.trigger(op="acquire")
        up = a.trigger(op="wait", completed=pairs)["completed"]
        emit(
            "storm.setup",
            time.monotonic() - began,
            "s",
            pairs=pairs,
            established=up,
            cpu_s=round(processes_cpu((a, b)) - cpu, 3),
        )
        for round_ in range(rounds):
            cpu = processes_cpu((a, b))
            each = _cpu_by_process(a, b)
            began = time.monotonic()
            r = a.trigger(op="storm")
            took = time.monotonic() - began
            after = _cpu_by_process(a, b)
            emit(
                "storm.rekey",
                took,
                "s",
                pairs=r["offered"],
                rekeyed=r["completed"],
                failures=r["offered"] - r["completed"],
                round=round_,
                cpu_s=round(processes_cpu((a, b)) - cpu, 3),
                cpu_s_by_process={k: round(after[k] - each[k], 2) for k in each},
                peak_rss_kib={
                    "a": memory_kib(a.pids()[0])["VmHWM"],
                    "b": memory_kib(b.pids()[0])["VmHWM"],
                },
                target="10,000 pairs in <= 30 s, no failure",
            )
        emit(
            "storm.negotiation_counters",
            0,
            "",
            counters={"a": a.request("status")["counters"], "b": b.request("status")["counters"]},
            sas_a=a.trigger(op="sas")["mature"],
            sas_b=b.trigger(op="sas")["mature"],
        )


def _cpu_by_process(a: Host, b: Host) -> dict[str, float]:
    kinkd_a, helper_a = a.pids()
    kinkd_b, helper_b = b.pids()
    return {
        "kinkd_a": cpu_seconds(kinkd_a),
        "helper_a": cpu_seconds(helper_a),
        "kinkd_b": cpu_seconds(kinkd_b),
        "helper_b": cpu_seconds(helper_b),
    }


SAVED = (10_000, 100_000)
QUICK_SAVED = (10_000,)
BATCH = 64  # children made (and as many gone) per coalesced save
SAVES = 200
LOAD_BATCHES = 50  # batches in the journal state_load reads


def _child(i: int) -> SavedChild:
    """A tunnel child as the storm's make them (one selector pair each)."""
    record = ChildRecord(
        peer="b",
        initiator=True,
        spis=((50, 0x1000_0000 + i, 0x2000_0000 + i),),
        mode="tunnel",
        reqid=0x100040 + i % 64,
        local=Selector(ip_network("10.1.0.0/24")),
        remote=Selector(ip_network(f"10.{2 + i // 65536}.{i // 256 % 256}.{i % 256}/32")),
        send_ids=True,
        transforms=(SaTransform(50, "cbc(aes)", 128, None, "hmac(sha1)", 96),),
        life=SaLifetimes(0, 3600, 0, 0),
        pfs_group=None,
        peer_epoch=7,
        age=1.0,
        rekey_in=3000.0,
    )
    return SavedChild(
        record, frozenset({("esp", 0x1000_0000 + i, "127.0.0.1"), ("esp", 0x2000_0000 + i, "b")})
    )


def state_save(saved: int) -> None:
    """One save (StateStore.update) of BATCH new and BATCH gone children with `saved` live."""
    with tempfile.TemporaryDirectory(prefix="kb-") as tmp:
        store = StateStore(Path(tmp))
        children = {i: _child(i) for i in range(saved)}
        began, cpu = time.perf_counter(), time.thread_time()
        store.update(1, time.time(), children, [])  # the first save: a snapshot
        snapshot, snapshot_cpu = time.perf_counter() - began, time.thread_time() - cpu
        size = (Path(tmp) / STATE_FILE).stat().st_size
        walls: list[float] = []
        cpus: list[float] = []
        for n in range(SAVES):
            new = {saved + n * BATCH + i: _child(saved + n * BATCH + i) for i in range(BATCH)}
            gone = range(n * BATCH, (n + 1) * BATCH)
            began, cpu = time.perf_counter(), time.thread_time()
            store.update(1, time.time(), new, gone)
            walls.append(time.perf_counter() - began)
            cpus.append(time.thread_time() - cpu)
            children.update(new)
            for child_id in gone:
                del children[child_id]
        began, cpu = time.perf_counter(), time.thread_time()
        store.snapshot(2, time.time(), children.items())  # another epoch: every child again
        compaction, compaction_cpu = time.perf_counter() - began, time.thread_time() - cpu
        emit(
            "storm.state_save",
            statistics.median(walls) * 1000,
            "ms",
            saved=saved,
            batch=BATCH,
            saves=SAVES,
            cpu_ms_median=round(statistics.median(cpus) * 1000, 3),
            wall_ms_mean=round(statistics.fmean(walls) * 1000, 3),
            wall_ms_max=round(max(walls) * 1000, 3),
            first_save_ms=round(snapshot * 1000, 1),
            first_save_cpu_ms=round(snapshot_cpu * 1000, 1),
            snapshot_ms=round(compaction * 1000, 1),
            snapshot_cpu_ms=round(compaction_cpu * 1000, 1),
            snapshot_bytes=size,
        )


def state_load(saved: int, loads: int = 3) -> None:
    """StateStore.load and the children's records (what a restart reads before Engine.restore
    takes them) of a journal of `saved` children: a snapshot, then LOAD_BATCHES saves of BATCH
    new and BATCH gone; best of `loads` (issue 9: start-up <= 2 s with 10,000 peers, 100,000 SA
    pairs manageable)."""
    with tempfile.TemporaryDirectory(prefix="kb-") as tmp:
        store = StateStore(Path(tmp))
        store.update(1, time.time(), {i: _child(i) for i in range(saved)}, [])
        for n in range(LOAD_BATCHES):
            new = {saved + n * BATCH + i: _child(saved + n * BATCH + i) for i in range(BATCH)}
            store.update(1, time.time(), new, range(n * BATCH, (n + 1) * BATCH))
        walls: list[float] = []
        cpus: list[float] = []
        for _ in range(loads):
            began, cpu = time.perf_counter(), time.thread_time()
            loaded = StateStore(Path(tmp)).load()
            # Each entry's record is read only at restore (SavedEntry.child): timed here too,
            # so that the figure stays what a restart reads before Engine.restore takes it.
            read = len(loaded.children) if loaded is not None else 0
            walls.append(time.perf_counter() - began)
            cpus.append(time.thread_time() - cpu)
            assert read == saved
        emit(
            "storm.state_load",
            min(walls),
            "s",
            saved=saved,
            batches=LOAD_BATCHES,
            cpu_s=round(min(cpus), 3),
            wall_s_max=round(max(walls), 3),
            file_bytes=(Path(tmp) / STATE_FILE).stat().st_size,
        )


def main() -> None:
    if quick():
        run(rounds=1, pairs=QUICK_PAIRS)
    else:
        run(pairs=PAIRS)
    for saved in QUICK_SAVED if quick() else SAVED:
        state_save(saved)
        state_load(saved)


if __name__ == "__main__":
    main()
