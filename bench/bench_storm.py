"""Rekey storm between two kinkd processes (bench.harness): every SA pair host a holds is
soft-expired at once and rekeyed (a CREATE exchange each, then the DELETE of the old pair,
RFC 4430 §3.6). Figures: completion time, failures, peak RSS of each kinkd, CPU of the four
processes.

One pair of hosts holds at most 64 SA pairs (64 policies per peer, one peer per address:
kink.daemon.config_peers), so the issue's 10,000-pair storm cannot be configured between two
daemons; this storm is of the largest set that can, repeated ROUNDS times.
"""

import time

from bench.common import emit, quick
from bench.harness import POLICIES, hosts, memory_kib, processes_cpu

ROUNDS = 5


def run(rounds: int = ROUNDS) -> None:
    with hosts() as (a, b):
        a.trigger(op="acquire")
        a.trigger(op="wait", completed=POLICIES)
        a.trigger(op="load", rate=50, seconds=0.5)  # warm-up: b installs its policies
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
                target="10,000 pairs in <= 30 s (not configurable: 64 pairs per host pair)",
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
    run(rounds=2 if quick() else ROUNDS)


if __name__ == "__main__":
    main()
