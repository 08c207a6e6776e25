"""Flood cost: CPU time kinkd spends per unauthenticated datagram an attacker sends it, measured
on a running kinkd process (bench.harness host b) from /proc: random garbage, and a datagram with
a valid KINK header (RFC 4430 §4) and a garbage body. Target (issue 9): <= 20 us CPU per
garbage datagram.
"""

import os
import socket
import struct
import time

from bench.common import emit, quick
from bench.harness import ADDRESS_A, cpu_seconds, hosts

DATAGRAMS = 20_000


def _kink_header(body: bytes) -> bytes:
    # Type CREATE (1), version 1.0, length, DOI 1 (IPsec), XID, next payload none, no Cksum.
    header = struct.pack("!BBHII", 1, 0x10, 16 + len(body), 1, 0x1234)
    return header + struct.pack("!BBH", 0, 0, 0) + body


def _flood(port: int, payloads: list[bytes], pid: int) -> tuple[float, int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ADDRESS_A, 0))
        before = cpu_seconds(pid)
        for i in range(len(payloads)):
            sock.sendto(payloads[i], ("127.0.0.2", port))
            if i % 200 == 199:
                time.sleep(0.002)  # stay under the socket buffer: count processed datagrams
        time.sleep(1.0)
        return cpu_seconds(pid) - before, len(payloads)


def run(count: int = DATAGRAMS) -> None:
    with hosts() as (_, b):
        port = int(b.request("status")["port"])
        pid = b.pids()[0]
        received = b.request("status")["transport"]["received"]
        for name, payloads in (
            ("garbage", [os.urandom(120) for _ in range(count)]),
            ("kink_header", [_kink_header(os.urandom(104)) for _ in range(count)]),
        ):
            idle = cpu_seconds(pid)
            time.sleep(1.0)
            idle = cpu_seconds(pid) - idle  # the daemon's own background CPU per second
            spent, sent = _flood(port, payloads, pid)
            now = b.request("status")["transport"]["received"]
            got, received = now - received, now
            emit(
                f"flood.{name}",
                max(0.0, spent - idle) / max(1, got) * 1e6,
                "us/datagram",
                sent=sent,
                received=got,
                sent_back=b.request("status")["transport"]["sent"],
                target_us=20,
            )


def main() -> None:
    run(count=5000 if quick() else DATAGRAMS)


if __name__ == "__main__":
    main()
