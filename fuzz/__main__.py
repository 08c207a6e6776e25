"""`python -m fuzz [--seconds N] [--runs N] [TARGET...]`: each target (default: all) in turn,
in its own process, from a corpus under build/fuzz/<target>/ seeded by fuzz.seeds; crashing
inputs land in build/fuzz/<target>/artifacts/. Exits non-zero if any target found a crash."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from fuzz import seeds
from fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[1]


def run(target: str, seconds: int, runs: int | None) -> int:
    work = ROOT / "build" / "fuzz" / target
    corpus, artifacts = work / "corpus", work / "artifacts"
    count = seeds.write(target, corpus)
    artifacts.mkdir(parents=True, exist_ok=True)
    print(f"fuzz {target}: {count} seeds, {seconds} s", flush=True)
    flags = [
        f"-max_total_time={seconds}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
        "-max_len=4096",  # above any datagram kinkd takes in one read, above MAX_REQUEST
        "-timeout=10",
        "-rss_limit_mb=4096",
    ]
    if runs is not None:
        flags.append(f"-runs={runs}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "fuzz.run", target, str(corpus), *flags]
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m fuzz")
    parser.add_argument("targets", nargs="*", choices=[[], *TARGETS], default=list(TARGETS))
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", 60)))
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args()
    failed = [t for t in args.targets or TARGETS if run(t, args.seconds, args.runs) != 0]
    if failed:
        sys.exit(f"fuzz: crashes in {', '.join(failed)} (see build/fuzz/<target>/artifacts/)")


if __name__ == "__main__":
    main()
