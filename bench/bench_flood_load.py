"""Flood under load (issue 10): a flooder process aims FLOOD_RATE datagrams a second at host b's
KINK port (bench.harness: real kinkd processes on 127.0.0.1/127.0.0.2) while host a rekeys its
SA pairs with b (each a CREATE exchange, RFC 4430 §3.6, triggered as soft expires by a's
helper) — the legitimate load that must go on getting through.

The flood comes from several loopback sources and mixes three kinds of datagram:
  - garbage: random octets;
  - a valid KINK header (§4) with a garbage body;
  - a structurally valid CREATE whose AP-REQ carries a real ticket for b with one octet of its
    enc-part flipped, so that b's libkrb5 really has to try it (KRB_AP_ERR_BAD_INTEGRITY).
One of the sources is a's own address (from another port): b only answers datagrams from a
configured peer, so that is the source that draws unauthenticated error replies (§3.5: a lone
KRB_ERROR), which go to the peer's configured address and port — a's kinkd, which counts them
as `dropped.unexpected-reply`. b sends them through kink.engine.ratelimit's per-source bucket.

Figures: offered and received rates, the kernel's drops for full socket buffers, legitimate
CREATEs completed / offered, b's RSS and CPU over time, error replies per source per second.
`FLOOD_SECONDS` sets the duration (default 10 s, 5 s with --quick); tests/robustness/
test_flood.py runs the full 60 s and asserts on the same figures.
"""

import multiprocessing
import os
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.common import emit, quick
from bench.harness import ADDRESS_A, Host, cpu_seconds, hosts, memory_kib
from kink.crypto.rfc3961 import Key
from kink.crypto.seal import SessionSealer
from kink.krb5.context import Context
from kink.krb5.credentials import Credentials
from kink.krb5.initiator import Initiator
from kink.wire import ApReq, Message, MessageType, encode

FLOOD_RATE = 50_000  # datagrams per second, all sources together
LEGIT_RATE = 5.0  # rekey CREATEs per second offered by host a
POLICIES = 8  # SA pairs a and b hold (each rekey picks an idle one)
FLOOD_SOURCES = (ADDRESS_A, "127.0.0.3", "127.0.0.4", "127.0.0.5")
POOL = 3000  # distinct flood datagrams, a multiple of 3 kinds x len(FLOOD_SOURCES)
BATCH = 250  # datagrams between two looks at the clock and the reply sockets
AES256 = 18  # RFC 3962 enctype, key size 32


# --------------------------------------------------------------------------- the datagrams


def _header_with_garbage(rng: random.Random) -> bytes:
    """A KINK header (§4: CREATE, version 1.0, its true length, IPsec DOI, any XID, no Cksum)
    followed by a garbage payload chain."""
    body = rng.randbytes(rng.randrange(8, 400))
    first_payload = rng.randrange(256)
    header = struct.pack("!BBHII", MessageType.CREATE, 0x10, 16 + len(body), 1, rng.getrandbits(32))
    return header + struct.pack("!BBH", first_payload, 0, 0) + body


def bad_ticket_ap_req(a: Host, principal_b: str) -> bytes:
    """An AP-REQ of a real ticket of a's for b, one octet of the ticket's enc-part flipped."""
    context = Context(str(a.directory / "krb5.conf"))
    principal_a = str(a.request("status")["principal"])
    creds = Credentials(context, principal_a, str(a.directory / "kink.keytab"))
    creds.acquire()
    ticket = creds.get_ticket(principal_b)
    raw, _ = Initiator(context).make_ap_req(ticket)
    # The enc-part cipher (RFC 4120 §5.3) ends the Ticket: its last octets are the HMAC.
    at = raw.index(ticket.der) + len(ticket.der) - 4
    return raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :]


def flood_pool(a: Host, b: Host, rng: random.Random) -> list[bytes]:
    """POOL datagrams cycling through the three kinds."""
    ap_req = bad_ticket_ap_req(a, str(b.request("status")["principal"]))
    sealer = SessionSealer(Key(AES256, rng.randbytes(32)))
    epoch = rng.getrandbits(32)
    pool: list[bytes] = []
    for i in range(POOL):
        kind = i % 3
        if kind == 0:
            pool.append(rng.randbytes(rng.randrange(1, 400)))
        elif kind == 1:
            pool.append(_header_with_garbage(rng))
        else:
            create = Message(
                MessageType.CREATE,
                rng.getrandbits(32),
                (ApReq(epoch, ap_req),),
                ciphertext=rng.randbytes(rng.randrange(64, 256)),
            )
            pool.append(encode(create, sealer))
    return pool


# ----------------------------------------------------------------------- the flooder process


def flooder(
    conn: Connection, target: tuple[str, int], pool: list[bytes], rate: float, seconds: float
) -> None:
    """Send pool datagrams round-robin from FLOOD_SOURCES at `rate` for `seconds`, counting
    every datagram that comes back to each source's socket in one-second bins; the figures go
    back through `conn`. Runs in its own process (multiprocessing, spawn)."""
    socks = []
    for source in FLOOD_SOURCES:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source, 0))
        sock.setblocking(False)
        socks.append(sock)
    bins = int(seconds) + 2
    replies = {source: [0] * bins for source in FLOOD_SOURCES}
    sent = errors = 0
    conn.send("ready")
    start = time.monotonic()
    end = start + seconds

    def drain(now: float) -> None:
        for source, sock in zip(FLOOD_SOURCES, socks, strict=True):
            while True:
                try:
                    sock.recv(65535)
                except BlockingIOError:
                    break
                replies[source][min(bins - 1, int(now - start))] += 1

    n_socks, n_pool = len(socks), len(pool)
    while (now := time.monotonic()) < end:
        due = start + sent / rate
        if due > now:
            time.sleep(due - now)
        for i in range(sent, sent + BATCH):
            try:
                socks[i % n_socks].sendto(pool[i % n_pool], target)
            except OSError:
                errors += 1
        sent += BATCH
        drain(now)
    elapsed = time.monotonic() - start
    time.sleep(1.0)  # replies still on their way
    drain(end)
    for sock in socks:
        sock.close()
    conn.send({"sent": sent, "send_errors": errors, "elapsed": elapsed, "replies": replies})
    conn.close()


# ------------------------------------------------------------------------------ the run


def udp_receive_buffer_errors() -> int:
    """The kernel's UDP RcvbufErrors (/proc/net/snmp): datagrams dropped on full sockets."""
    lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines()]
    names, values = next(
        (lines[i], lines[i + 1]) for i in range(len(lines) - 1) if lines[i][0] == "Udp:"
    )
    return int(values[names.index("RcvbufErrors")])


@dataclass
class Sample:
    """Once a second during the flood: b's kinkd RSS and CPU, and the counters that move."""

    t: float
    rss_kib: int
    cpu_s: float
    received_b: int
    unexpected_replies_a: int  # b's lone replies to the spoofed a source, as a counted them


@dataclass
class FloodRun:
    seconds: float
    sent: int
    send_errors: int
    flood_elapsed: float
    replies_at_flooder: dict[str, list[int]]
    received_b: int  # datagrams b's kinkd read during the run (flood and legitimate)
    kernel_drops: int  # UDP RcvbufErrors during the run (all sockets on the host)
    offered: int  # legitimate CREATEs
    completed: int
    latencies: list[float]
    samples: list[Sample]
    counters_b: dict[str, int]  # b's engine counters: their change during the run
    counters_a: dict[str, int]
    before_b: dict[str, Any]  # b's status, sas and peers before and after
    after_b: dict[str, Any]
    cpu_b: float  # b's kinkd CPU seconds during the run
    wall: float

    @property
    def unexpected_replies_a(self) -> int:
        """b's lone replies to the spoofed a source, as a's kinkd counted them."""
        return self.counters_a.get("dropped.unexpected-reply", 0)

    @property
    def success(self) -> float:
        return self.completed / self.offered if self.offered else float("nan")


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def _view(b: Host) -> dict[str, Any]:
    """What b holds: its status, SAs and peers."""
    return {"status": b.request("status"), "sas": b.request("sas"), "peers": b.request("peers")}


def _sampler(a: Host, b: Host, stop: threading.Event, out: list[Sample]) -> None:
    pid = b.pids()[0]
    began = time.monotonic()
    while not stop.wait(1.0):
        out.append(
            Sample(
                time.monotonic() - began,
                memory_kib(pid)["VmRSS"],
                cpu_seconds(pid),
                int(b.request("status")["transport"]["received"]),
                int(a.request("status")["counters"].get("dropped.unexpected-reply", 0)),
            )
        )


def run(
    seconds: float = 60.0, rate: float = FLOOD_RATE, legit_rate: float = LEGIT_RATE
) -> FloodRun:
    """The scenario of the module docstring, for `seconds` of flood; returns every figure."""
    with hosts(POLICIES) as (a, b):
        a.trigger(op="acquire")
        a.trigger(op="wait", completed=POLICIES)
        a.trigger(op="load", rate=20, seconds=1.0)  # warm-up: b installs its policies
        pool = flood_pool(a, b, random.Random(10))
        before_b, status_a = _view(b), a.request("status")
        drops, cpu, began = udp_receive_buffer_errors(), cpu_seconds(b.pids()[0]), time.monotonic()
        spawn = multiprocessing.get_context("spawn")
        ours, theirs = spawn.Pipe()
        target = (b.address, int(before_b["status"]["port"]))
        process = spawn.Process(target=flooder, args=(theirs, target, pool, rate, seconds))
        process.start()
        try:
            if ours.recv() != "ready":
                raise RuntimeError("the flooder did not start")
            stop, samples = threading.Event(), list[Sample]()
            sampler = threading.Thread(target=_sampler, args=(a, b, stop, samples))
            sampler.start()
            # The legitimate load ends a second before the flood so that all of it meets it.
            load = a.trigger(op="load", rate=legit_rate, seconds=max(1.0, seconds - 1.0))
            flood: dict[str, Any] = ours.recv()
            stop.set()
            sampler.join()
        finally:
            process.join(timeout=seconds + 30)
            if process.is_alive():
                process.kill()
        wall = time.monotonic() - began
        cpu_b = cpu_seconds(b.pids()[0]) - cpu
        kernel_drops = udp_receive_buffer_errors() - drops
        after_b, after_a = _view(b), a.request("status")
        return FloodRun(
            seconds=seconds,
            sent=flood["sent"],
            send_errors=flood["send_errors"],
            flood_elapsed=flood["elapsed"],
            replies_at_flooder=flood["replies"],
            received_b=after_b["status"]["transport"]["received"]
            - before_b["status"]["transport"]["received"],
            kernel_drops=kernel_drops,
            offered=load["offered"],
            completed=load["completed"],
            latencies=load["latencies"],
            samples=samples,
            counters_b=_delta(after_b["status"]["counters"], before_b["status"]["counters"]),
            counters_a=_delta(after_a["counters"], status_a["counters"]),
            before_b=before_b,
            after_b=after_b,
            cpu_b=cpu_b,
            wall=wall,
        )


def report(r: FloodRun) -> None:
    """Every figure of a run as JSON lines."""
    emit(
        "flood_load.offered",
        r.sent / r.flood_elapsed,
        "datagrams/s",
        target=FLOOD_RATE,
        sent=r.sent,
        send_errors=r.send_errors,
        seconds=round(r.flood_elapsed, 2),
        sources=list(FLOOD_SOURCES),
    )
    emit(
        "flood_load.received",
        r.received_b / r.wall,
        "datagrams/s",
        received=r.received_b,
        kernel_rcvbuf_drops=r.kernel_drops,
        wall_s=round(r.wall, 2),
    )
    emit(
        "flood_load.legit_success",
        100.0 * r.success,
        "%",
        offered=r.offered,
        completed=r.completed,
        p50_ms=round(sorted(r.latencies)[len(r.latencies) // 2] * 1e3, 1) if r.latencies else None,
        max_ms=round(max(r.latencies) * 1e3, 1) if r.latencies else None,
    )
    emit(
        "flood_load.cpu_b",
        100.0 * r.cpu_b / r.wall,
        "% of a core",
        us_per_datagram=round(r.cpu_b / max(1, r.received_b) * 1e6, 2),
    )
    emit(
        "flood_load.rss_b",
        r.samples[-1].rss_kib - r.samples[0].rss_kib if r.samples else 0,
        "KiB",
        series_kib=[s.rss_kib for s in r.samples],
    )
    per_second = [
        b.unexpected_replies_a - a.unexpected_replies_a
        for a, b in zip(r.samples, r.samples[1:], strict=False)
    ]
    emit(
        "flood_load.error_replies",
        r.unexpected_replies_a / r.wall,
        "replies/s",
        to_spoofed_peer_address=r.unexpected_replies_a,
        per_second=per_second,
        at_flooder_sockets={k: sum(v) for k, v in r.replies_at_flooder.items()},
    )
    emit("flood_load.counters", 0, "", b=r.counters_b, a=r.counters_a)


def main() -> None:
    seconds = float(os.environ.get("FLOOD_SECONDS", "5" if quick() else "10"))
    report(run(seconds))


if __name__ == "__main__":
    main()
