"""`python -m demo`: boot user-mode Linux, run demo.inside there, print its lines as they come.

The inside writes its report to a file in $UML_OUT (a host directory, written through by
hostfs); this side follows that file while UML runs, so each step shows up when it happens.
"""

import argparse
import sys
import tempfile
import threading
from pathlib import Path

from tests.support.uml import UmlError, UmlResult, available, run_in_uml

_TIMEOUT = 180.0  # boot, KDC, two helpers and the exchange take ~30 s in UML
_LOG = "demo.log"
_SCRIPT = f'exec python -m demo.inside >"$UML_OUT/{_LOG}" 2>&1\n'
_POLL = 0.2


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


def run(out: Path) -> int:
    """Run the demo; its exit status (0: the OK line was printed)."""
    reason = available()
    if reason is not None:
        print(f"demo: FAILED: user-mode Linux unavailable: {reason}", flush=True)
        return 1
    print("demo: booting a user-mode Linux kernel (real XFRM with ESP)", flush=True)
    done = threading.Event()
    follower = threading.Thread(target=_follow, args=(out / _LOG, done))
    follower.start()
    result: UmlResult | None = None
    failure = ""
    try:
        result = run_in_uml(_SCRIPT, timeout=_TIMEOUT, out_dir=out)
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


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(
        prog="./scripts/demo",
        description="KINK between two hosts in user-mode Linux: a throwaway realm, SAs "
        "negotiated by two kink engines, installed by kink_privsep, ESP traffic.",
    ).parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kink-demo-") as tmp:
        sys.exit(run(Path(tmp)))


if __name__ == "__main__":
    main()
