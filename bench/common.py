"""Shared by the benchmarks: timing loops and one JSON line per figure."""

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator


def machine() -> dict[str, object]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def emit(name: str, value: float, unit: str, **extra: object) -> None:
    """Print one figure as a JSON line (the format every bench/ module uses)."""
    line = {"bench": name, "value": round(value, 3), "unit": unit, **extra, "machine": machine()}
    print(json.dumps(line), flush=True)


def rate(fn: Callable[[], object], seconds: float = 1.0) -> float:
    """Calls of fn per second of wall time on this thread, measured for about `seconds`."""
    fn()  # warm caches before timing
    n = 0
    batch = 64
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        n += batch
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def rounds(
    fn: Callable[[], object], rounds: int, seconds: float, batch: int
) -> tuple[list[float], int]:
    """`rounds` rounds of about `seconds` each calling fn in batches of `batch`: the calls per
    second of each round (wall time on this thread) and the calls made in all."""
    clock = time.perf_counter
    rates: list[float] = []
    total = 0
    for _ in range(rounds):
        n = 0
        start = clock()
        deadline = start + seconds
        while clock() < deadline:
            for _ in range(batch):
                fn()
            n += batch
        rates.append(n / (clock() - start))
        total += n
    return rates, total


def quick() -> bool:
    """bench/run --quick: sizes that finish in a few minutes (BENCH_QUICK=1)."""
    return os.environ.get("BENCH_QUICK") == "1"


if __name__ == "__main__":
    sys.exit("bench.common is a library; run `python -m bench`")


@contextlib.contextmanager
def netns() -> Iterator[str]:
    """A network namespace of our own (root only), its loopback up, deleted afterwards: a
    bench on the running kernel never touches the host's XFRM tables."""
    name = f"kink-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
