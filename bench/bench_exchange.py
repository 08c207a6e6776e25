"""CREATE exchanges between two kinkd processes, each with its helper process (recording
backend), over loopback (bench.harness): the 64 SA pairs one pair of hosts may hold set up by a
burst of ACQUIREs, then fixed offered loads of rekeys (each a CREATE exchange, RFC 4430 §3.6,
followed by the DELETE of the old pair), triggered as soft expires by host a's helper.

Figures: completed exchanges per second, latency (trigger -> outbound SA installed) p50/p99, CPU
of both daemons and both helpers per exchange. Targets (issue 9): >= 1,500/s completed, p99
<= 20 ms at 1,000/s offered.
"""

import time

from bench.common import emit, quick
from bench.harness import POLICIES, hosts, percentile, processes_cpu

LOADS = (100, 300, 1000, 1500)  # offered exchanges per second


def run(loads: tuple[int, ...] = LOADS, seconds: float = 1.0) -> None:
    with hosts() as (a, b):
        both = (a, b)
        cpu = processes_cpu(both)
        began = time.monotonic()
        a.trigger(op="acquire")
        a.trigger(op="wait", completed=POLICIES)
        took = time.monotonic() - began
        burst = a.trigger(op="sas")
        emit(
            "exchange.burst_setup",
            POLICIES / took,
            "pairs/s",
            pairs=POLICIES,
            sas_a=burst["mature"],
            sas_b=b.trigger(op="sas")["mature"],
            cpu_ms_per_pair=round((processes_cpu(both) - cpu) / POLICIES * 1e3, 2),
        )
        a.trigger(op="load", rate=50, seconds=seconds)  # warm-up: b installs its policies
        for rate in loads:
            cpu = processes_cpu(both)
            r = a.trigger(op="load", rate=rate, seconds=seconds)
            spent = processes_cpu(both) - cpu
            lat = r["latencies"]
            emit(
                "exchange.load",
                r["completed"] / r["elapsed"],
                "exchanges/s",
                offered_rate=rate,
                offered=r["offered"],
                completed=r["completed"],
                elapsed_s=round(r["elapsed"], 3),
                p50_ms=round(percentile(lat, 50) * 1e3, 2),
                p99_ms=round(percentile(lat, 99) * 1e3, 2),
                cpu_ms_per_exchange=round(spent / max(1, r["completed"]) * 1e3, 2),
                exchange="rekey CREATE (2-way) + DELETE of the old pair",
            )
        counters = {"a": a.request("status")["counters"], "b": b.request("status")["counters"]}
        emit("exchange.counters", 0, "", counters=counters)


def main() -> None:
    run(seconds=1.0 if quick() else 3.0)


if __name__ == "__main__":
    main()
