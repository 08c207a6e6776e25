"""Run the micro-benchmarks of bench/ and print one JSON line per figure (bench/run runs the
system benchmarks as well)."""

import importlib
import pkgutil

import bench


def main() -> None:
    for mod in sorted(m.name for m in pkgutil.iter_modules(bench.__path__)):
        if mod.startswith("bench_") and mod not in bench.SYSTEM:
            importlib.import_module(f"bench.{mod}").main()


if __name__ == "__main__":
    main()
