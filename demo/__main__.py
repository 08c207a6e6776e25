"""`python -m demo`: run demo.inside on a kernel with ESP and print its lines as they come.

With ESP in the running kernel, the inside runs there in a private network and mount namespace
(demo.machine); everything it makes (namespaces, bridge, processes, files) goes with it. Without
it, a user-mode Linux kernel is booted and the inside runs in it; it writes its report to a
file in $UML_OUT (a host directory, written through by hostfs), which this side follows while
UML runs, so that each step shows up when it happens.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from demo.machine import NETNS_COMMAND, kernel_esp
from tests.support.uml import UmlError, UmlResult, available, run_in_uml

_TIMEOUT = 240.0  # boot, KDC, two helpers, two kinkd and the traffic take ~40 s in UML
_LOG = "demo.log"
_SCRIPT = f'exec python -m demo.inside >"$UML_OUT/{_LOG}" 2>&1\n'
_POLL = 0.2
_UML_MEM = "1024M"


def _follow(log: Path, done: threading.Event) -> None:
    """Copy `log` to stdout as it grows, until `done` and everything is copied."""
    offset = 0
    while True:
        finished = done.is_set()
        try:
            with log.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        if finished:
            return
        done.wait(_POLL)


def run_in_namespace() -> int:
    """The inside on the running kernel; its exit status."""
    print("demo: the running kernel has ESP: hosts are network namespaces of it", flush=True)
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([*NETNS_COMMAND, sys.executable], cwd=repo, check=False)
    return 0 if done.returncode == 0 else 1


def run_uml(out: Path, why: str) -> int:
    """The inside in user-mode Linux; its exit status (0: the OK line was printed)."""
    reason = available()
    if reason is not None:
        print(
            f"demo: FAILED: no ESP in the running kernel ({why}) and no user-mode Linux: {reason}",
            flush=True,
        )
        return 1
    print(f"demo: the running kernel has no ESP ({why})", flush=True)
    print("demo: booting a user-mode Linux kernel (real XFRM with ESP)", flush=True)
    done = threading.Event()
    follower = threading.Thread(target=_follow, args=(out / _LOG, done))
    follower.start()
    result: UmlResult | None = None
    failure = ""
    try:
        result = run_in_uml(_SCRIPT, timeout=_TIMEOUT, mem=_UML_MEM, out_dir=out)
    except UmlError as exc:
        failure = str(exc)
    finally:
        done.set()
        follower.join()
    if result is None:
        print(f"demo: FAILED: {failure}", flush=True)
        return 1
    if result.output:  # only what the script printed outside demo.inside (e.g. exec failed)
        print(result.output, end="", flush=True)
    return 0 if result.returncode == 0 else 1


def run(out: Path, *, uml: bool = False) -> int:
    """Run the demo (in UML when `uml`, or when the running kernel lacks ESP); exit status."""
    if os.geteuid() != 0:
        print("demo: FAILED: run as root (namespaces, XFRM, a KDC)", flush=True)
        return 1
    why = "--uml given" if uml else kernel_esp()
    if why is None:
        return run_in_namespace()
    return run_uml(out, why)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="./scripts/demo",
        description="KINK between two hosts: a throwaway realm, kinkd and kink-privsep on "
        "each, SAs negotiated over UDP 910, ESP traffic, kinkctl status and sas.",
    )
    parser.add_argument(
        "--uml", action="store_true", help="use user-mode Linux even if this kernel has ESP"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kink-demo-") as tmp:
        sys.exit(run(Path(tmp), uml=args.uml))


if __name__ == "__main__":
    main()
