"""Run every benchmark in bench/ and print one JSON line per figure."""

import importlib
import pkgutil

import bench


def main() -> None:
    for mod in sorted(m.name for m in pkgutil.iter_modules(bench.__path__)):
        if mod.startswith("bench_"):
            importlib.import_module(f"bench.{mod}").main()


if __name__ == "__main__":
    main()
