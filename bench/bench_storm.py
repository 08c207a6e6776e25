"""Rekey storm between two kinkd processes (bench.harness): every SA pair host a holds is
soft-expired at once and rekeyed (a CREATE exchange each, then the DELETE of the old pair,
RFC 4430 §3.6). Figures: the time to set the pairs up (an ACQUIRE each), then per round the
completion time, failures, peak RSS of each kinkd and CPU of the four processes.

Issue 9's storm is of PAIRS = 10,000 SA pairs between the two hosts (one peer each with 10,000
selector pairs); bench/run --quick (BENCH_QUICK=1) storms QUICK_PAIRS.
"""

import time

from bench.common import emit, quick
from bench.harness import POLICIES, hosts, memory_kib, processes_cpu

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
            began = time.monotonic()
            r = a.trigger(op="storm")
            took = time.monotonic() - began
            emit(
                "storm.rekey",
                took,
                "s",
                pairs=r["offered"],
                rekeyed=r["completed"],
                failures=r["offered"] - r["completed"],
                round=round_,
                cpu_s=round(processes_cpu((a, b)) - cpu, 3),
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


def main() -> None:
    if quick():
        run(rounds=1, pairs=QUICK_PAIRS)
    else:
        run(pairs=PAIRS)


if __name__ == "__main__":
    main()
