"""kink's benchmarks: each bench_* module has main() printing JSON lines (bench.common.emit).

`python -m bench` runs the micro-benchmarks (one layer each, seconds); `bench/run` runs those
and then the SYSTEM ones, which start real kinkd and helper processes (issue 9).
"""

SYSTEM = ("bench_exchange", "bench_storm", "bench_scale", "bench_flood")
