"""Flood cost: CPU time kinkd spends per unauthenticated datagram an attacker sends it, measured
on a running kinkd process (bench.harness host b) from /proc, for each kind of flood datagram:
  - garbage: random octets from the peer's address (another port);
  - kink_header: a valid KINK header (RFC 4430 §4) and a garbage body, from the peer's address;
  - non_peer: random octets from an address that is no configured peer;
  - forged_create: a structurally valid CREATE whose AP-REQ carries a real ticket for b with one
    octet flipped (bench.bench_flood_load), so that b has to decrypt it to refuse it.
Targets (issues 9 and 10): <= 20 us CPU per garbage datagram; a forged CREATE <= one ticket
decryption. The sender paces itself to stay under b's socket buffer, so every figure is per
datagram b really read.

The forged CREATE's figure is set against one ticket decryption as libkrb5 pays it to accept:
krb5_rd_req of the same AP-REQ (refused: bad integrity) through the raw binding
(kink.krb5._lib.RawContext.rd_req, with a fresh auth context each, on a MEMORY copy of b's
keytab as b's Acceptor holds it), in this process: `ticket_decryption_us`, and `ratio` the
forged CREATE's cost over it. Not Acceptor.accept: that refuses the ticket by its own check
(kink.krb5.ticket_check) before rd_req. That check's own cost on the same AP-REQ is
`ticket_check_us`; `forged_minus_garbage_us` is the forged CREATE's cost above a garbage
datagram's (what b's receive path costs anyway), so that the anatomy reads: garbage floor +
decode + ticket check + refusal (the check comes before the replay cache's tag and lookup, so
a forged ticket pays none of those).
"""

import contextlib
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.bench_flood_load import bad_ticket_ap_req, flood_pool
from bench.common import emit, quick, rate
from bench.harness import ADDRESS_A, Host, hosts
from kink.krb5.context import Context
from kink.krb5.errors import Krb5Error
from kink.krb5.ticket_check import TicketCheck

DATAGRAMS = 20_000
FORGED = 5_000  # a forged CREATE costs ~5 garbage datagrams: fewer give the same precision
NON_PEER = "127.0.0.3"


def _cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid` so far, in nanoseconds' resolution (schedstat's time on
    the CPU): /proc/<pid>/stat counts clock ticks, 10 ms each, ~2 us per forged CREATE read."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def _kink_header(body: bytes) -> bytes:
    # Type CREATE (1), version 1.0, length, DOI 1 (IPsec), XID, next payload none, no Cksum.
    header = struct.pack("!BBHII", 1, 0x10, 16 + len(body), 1, 0x1234)
    return header + struct.pack("!BBH", 0, 0, 0) + body


def _flood(source: str, port: int, payloads: list[bytes], pid: int) -> float:
    """Send `payloads` to b from `source`; b's CPU seconds until it has read them all."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        before = _cpu_seconds(pid)
        for i in range(len(payloads)):
            sock.sendto(payloads[i], ("127.0.0.2", port))
            if i % 200 == 199:
                time.sleep(0.002)  # stay under the socket buffer: count processed datagrams
        time.sleep(1.0)
        return _cpu_seconds(pid) - before


@contextlib.contextmanager
def _replies(address: str, port: int) -> Iterator[list[int]]:
    """The UDP payload sizes of what leaves `address`:`port` meanwhile (a packet socket on lo:
    b's lone replies go to the peer's kinkd, not to the flooding socket)."""
    sizes: list[int] = []
    stop = threading.Event()
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    sniffer.bind(("lo", 0))
    sniffer.settimeout(0.1)
    source = socket.inet_aton(address)

    def sniff() -> None:
        while not stop.is_set():
            try:
                packet = sniffer.recv(65535)
            except TimeoutError:
                continue
            ihl = (packet[0] & 0x0F) * 4
            if packet[9] == socket.IPPROTO_UDP and packet[12:16] == source:
                sport, _, length = struct.unpack_from("!HHH", packet, ihl)
                if sport == port:
                    sizes.append(length - 8)

    thread = threading.Thread(target=sniff)
    thread.start()
    try:
        yield sizes
    finally:
        stop.set()
        thread.join()
        sniffer.close()


def _ticket_costs_us(b: Host, ap_req: bytes) -> tuple[float, float]:
    """CPU of krb5_rd_req refusing `ap_req` (one ticket decryption, what a forged CREATE may
    cost) and of b's Acceptor's ticket check refusing it, in this process: microseconds."""
    status = b.request("status")
    keytab = str(b.directory / "kink.keytab")
    raw = Context(str(b.directory / "krb5.conf")).raw
    principal = raw.parse_principal(str(status["principal"]))
    copy = raw.memory_copy(raw.keytab(keytab))
    check = TicketCheck(raw, principal, copy)

    def rd_req() -> None:
        with contextlib.suppress(Krb5Error):
            raw.rd_req(raw.auth_context(), ap_req, principal, copy, None, raw.now())

    def refuse() -> None:
        if not check.forged(ap_req):
            raise RuntimeError("the forged AP-REQ is not refused by the ticket check")

    return 1e6 / rate(rd_req), 1e6 / rate(refuse)


def run(count: int = DATAGRAMS, forged: int = FORGED) -> None:
    with hosts() as (a, b):
        port = int(b.request("status")["port"])
        pid = b.pids()[0]
        pool = flood_pool(a, b, random.Random(10))
        creates = pool[2::3]  # flood_pool cycles garbage, header + garbage, forged CREATE
        kinds: list[tuple[str, str, Callable[[], bytes], int]] = [
            ("garbage", ADDRESS_A, lambda: os.urandom(120), count),
            ("kink_header", ADDRESS_A, lambda: _kink_header(os.urandom(104)), count),
            ("non_peer", NON_PEER, lambda: os.urandom(120), count),
            ("forged_create", ADDRESS_A, lambda: random.choice(creates), forged),
        ]
        principal_b = str(b.request("status")["principal"])
        reference, check_us = _ticket_costs_us(b, bad_ticket_ap_req(a, principal_b))
        costs: dict[str, float] = {}
        status = b.request("status")
        for name, source, make, n in kinds:
            payloads = [make() for _ in range(n)]
            idle = _cpu_seconds(pid)
            time.sleep(1.0)
            idle = _cpu_seconds(pid) - idle  # the daemon's own background CPU per second
            with _replies(b.address, port) as replies:
                spent = _flood(source, port, payloads, pid)
            now = b.request("status")
            got = now["transport"]["received"] - status["transport"]["received"]
            status = now
            us = costs[name] = max(0.0, spent - idle) / max(1, got) * 1e6
            extra: dict[str, object] = {"target_us": 20}
            if name == "forged_create":
                extra = {
                    "ticket_decryption": "krb5_rd_req via kink.krb5._lib.RawContext.rd_req",
                    "ticket_decryption_us": round(reference, 1),
                    "ratio": round(us / reference, 2),
                    "ticket_check_us": round(check_us, 1),
                    "forged_minus_garbage_us": round(us - costs["garbage"], 1),
                    "smallest_request_octets": min(len(p) for p in creates),
                }
            emit(
                f"flood.{name}",
                us,
                "us/datagram",
                sent=n,
                received=got,
                replies=len(replies),
                largest_reply_octets=max(replies, default=0),
                **extra,
            )


def main() -> None:
    run(count=5000 if quick() else DATAGRAMS, forged=2000 if quick() else FORGED)


if __name__ == "__main__":
    main()
