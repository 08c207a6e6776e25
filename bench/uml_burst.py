"""Issue 9, run (b): kinkd on a real kernel (user-mode Linux, the end-to-end harness of
tests/support/e2e.py with the xfrm helper as root): a burst of flows with distinct selectors
triggered at once by traffic (each a kernel ACQUIRE, then a CREATE exchange), then lone CREATEs.

Figures: SA pairs per second until every SA is in both kernels (`ip xfrm state`, mirrored),
median lone CREATE -> REPLY latency (a capture on a's wire: CREATE from a to the REPLY of the
same XID from b), CPU per SA pair of both kinkd and both kink-privsep processes (/proc).

FLOWS is the issue's 200: tunnel mode, a's 10.1.0.0/24 to 200 subnets 10.3.N.0/24 routed to
b, one policy each (a peer takes as many reqid blocks as it has policies, config_peers).

`python -m bench.uml_burst` boots UML and prints the figures (JSON lines, bench.common.emit);
inside, `python -m bench.uml_burst --inside` does the work. About 60-90 s with the boot.
"""

import argparse
import socket
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from bench.common import emit
from bench.harness import cpu_seconds, percentile
from kink.wire.constants import MessageType
from kink.wire.header import HEADER
from kink.wire.pcap import read_capture
from tests.e2e.scenarios import GCM128, mirrored
from tests.support import uml
from tests.support.e2e import Capture, Host, Network, TomlValue, run, wait_until

FLOWS = 200
LONE = 8  # lone exchanges: rekeys of one pair at a time
REMOTE = [f"10.3.{i}.0/24" for i in range(FLOWS)]
TRAFFIC_PORT = 9  # discard: nothing needs to answer, the datagram only triggers the ACQUIRE


def _configure(a: Host, b: Host) -> None:
    common: dict[str, TomlValue] = {"proposals": [GCM128], "mode": "tunnel"}
    daemon: dict[str, TomlValue] = {"log_level": "info", "max_outstanding": FLOWS}
    a.write_config(
        {
            "b": {
                **b.peer_settings(),
                **common,
                "local_subnets": ["10.1.0.0/24"],
                "remote_subnets": REMOTE,
                "start_action": "trap",
            }
        },
        **daemon,
    )
    b.write_config(
        {
            "a": {
                **a.peer_settings(),
                **common,
                "local_subnets": REMOTE,
                "remote_subnets": ["10.1.0.0/24"],
                "start_action": "none",
            }
        },
        **daemon,
    )


def _cpu(hosts: tuple[Host, Host]) -> float:
    pids = [p.pid for h in hosts for p in (h.kinkd, h.helper) if p is not None]
    return sum(cpu_seconds(pid) for pid in pids)


def _create_reply_latencies(path: Path, a: Host) -> list[float]:
    """CREATE (a -> b) to the REPLY of the same XID (b -> a), from a capture."""
    sent: dict[int, float] = {}
    out = []
    for d in read_capture(path.read_bytes()):
        if len(d.payload) < HEADER.size:
            continue
        kind, _, _, _, xid = HEADER.unpack_from(d.payload)[:5]
        if kind == MessageType.CREATE and d.src == a.addresses.v4:
            sent.setdefault(xid, d.time)
        elif kind == MessageType.REPLY and d.dst == a.addresses.v4 and xid in sent:
            out.append(d.time - sent.pop(xid))
    return out


def _rekeyed(host: Host, before: set[int]) -> bool:
    return bool({s.spi for s in host.states()} - before)


def inside() -> None:
    uml.require_in_uml()
    net = Network.build(Path(tempfile.mkdtemp(prefix="kink-burst-")))
    try:
        a, b = net["a"], net["b"]
        _configure(a, b)
        run("ip", "-n", "a", "route", "add", "10.3.0.0/16", "via", b.addresses.v4)
        net.start()
        # b installs its policies with its first SA (a respond-only peer): one flow first, so
        # that the burst measures exchanges, not that one-off.
        sock = a.socket(socket.AF_INET)
        sock.bind((a.addresses.inner4, 0))
        sock.sendto(b"go", ("10.3.0.1", TRAFFIC_PORT))
        wait_until(lambda: mirrored(a, b, 2), "the first pair")

        cpu = _cpu((a, b))
        began = time.monotonic()
        for i in range(1, FLOWS):
            sock.sendto(b"go", (f"10.3.{i}.1", TRAFFIC_PORT))
        wait_until(lambda: mirrored(a, b, 2 * FLOWS), "every pair in both kernels", timeout=120)
        took = time.monotonic() - began
        spent = _cpu((a, b)) - cpu
        emit(
            "uml.burst",
            (FLOWS - 1) / took,
            "pairs/s",
            flows=FLOWS - 1,
            seconds=round(took, 3),
            cpu_ms_per_pair=round(spent / (FLOWS - 1) * 1e3, 2),
            note="every SA in both kernels (ip xfrm state)",
        )

        capture = Capture(a, "lone")
        for child in a.sas()[:LONE]:
            before = {s.spi for s in a.states()}
            a.request("rekey", spi=child["sas"][0]["spi_in"])
            wait_until(partial(_rekeyed, a, before), "the rekeyed pair")
        capture.stop()
        lone = _create_reply_latencies(capture.path, a)
        emit(
            "uml.lone_create_reply",
            percentile(lone, 50) * 1e3,
            "ms",
            exchanges=len(lone),
            p90_ms=round(percentile(lone, 90) * 1e3, 2),
            note="CREATE -> REPLY on a's wire, one exchange at a time (rekeys)",
        )
        sock.close()
    finally:
        net.close()


def main() -> None:
    reason = uml.available()
    if reason is not None:
        print(f"uml_burst: {reason}", file=sys.stderr)
        return
    result = uml.run_in_uml("exec python -m bench.uml_burst --inside\n", timeout=600, mem="1024M")
    lines = [line for line in result.output.splitlines() if line.startswith("{")]
    for line in lines:
        print(line)
    if result.returncode != 0 or not lines:
        print(result.output, file=sys.stderr)
        raise SystemExit(result.returncode or 1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inside", action="store_true", help="the part run inside UML")
    if parser.parse_args().inside:
        inside()
    else:
        main()
