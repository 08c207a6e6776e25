"""Scale of kinkd (bench.harness processes): RSS with no SA and with the 64 SA pairs one pair of
hosts may hold (bytes per pair), `kinkctl sas` time with them, and start-up and reload time of a
kinkd configured with PEERS trap peers (the loader's limit: 704 peers, the reqid blocks of 64
below IMPLICIT_REQIDS, kink.daemon.config_peers; the issue's 10,000 cannot be configured).
"""

import subprocess
import sys
import time

from bench.common import emit
from bench.harness import POLICIES, REPO, hosts, memory_kib, start_kinkd, stop_process
from kink.daemon.config_peers import IMPLICIT_REQIDS, POLICIES_PER_PEER

PEERS = IMPLICIT_REQIDS // POLICIES_PER_PEER  # 704


def _trap_peers(count: int) -> str:
    return "".join(
        f'[peers.p{i}]\naddress = "10.3.{i // 250}.{i % 250 + 1}"\n'
        f'principal = "kink/p{i}.bench.test@KINK.TEST"\nstart_action = "trap"\n'
        for i in range(count)
    )


def run(peers: int = PEERS) -> None:
    with hosts() as (a, b):
        base = memory_kib(a.pids()[0])["VmRSS"]
        a.trigger(op="acquire")
        a.trigger(op="wait", completed=POLICIES)
        a.trigger(op="load", rate=50, seconds=0.5)
        time.sleep(3.0)  # old pairs of the warm-up rekeys deleted after their grace
        rss = memory_kib(a.pids()[0])["VmRSS"]
        emit(
            "scale.rss_per_pair",
            (rss - base) * 1024 / POLICIES,
            "bytes/pair",
            pairs=POLICIES,
            rss_kib_empty=base,
            rss_kib=rss,
            note="64 pairs: the most one pair of hosts holds",
        )
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "kink.ctl", "--socket", a.control_path, "sas"],
            cwd=REPO,
            capture_output=True,
            check=False,
        )
        emit(
            "scale.kinkctl_sas",
            (time.monotonic() - began) * 1e3,
            "ms",
            sas=POLICIES,
            exit=done.returncode,
            lines=done.stdout.count(b"\n"),
        )
        # b restarted with PEERS more peers: start-up, then a reload that changes one.
        toml = b.directory / "kink.toml"
        toml.write_text(toml.read_text() + _trap_peers(peers - 1))
        stop_process(b.kinkd)
        start_kinkd(b)
        emit("scale.startup", b.started_in, "s", peers=peers, target_s=2.0)
        toml.write_text(toml.read_text().replace('"kink/p1.bench', '"kink/q1.bench'))
        began = time.monotonic()
        result = b.request("reload")
        emit(
            "scale.reload",
            time.monotonic() - began,
            "s",
            peers=peers,
            changed=len(result["changed"]),
            target_s=1.0,
        )


def main() -> None:
    run()


if __name__ == "__main__":
    main()
