"""The flood of issue 10, against real kinkd processes (bench.bench_flood_load): 50,000 garbage
datagrams a second at host b for 60 s from a flooder process, on loopback, while host a
rekeys its SA pairs with b. A LONG test: about 75 s (the 60 s flood, the realm and two
daemons); it runs only with KINK_LONG_TESTS=1 (see pytestmark).

What must hold (RFC 4430 §10: an unauthenticated datagram must cost little and earn nothing):
  - at least 99% of a's CREATEs complete;
  - b's RSS stays flat: after a warm-up, the last 20 s stay within RSS_SLACK_KIB of it;
  - no state for the flood: b holds SAs of its peer only, the same peers, no transaction is
    left open, and every datagram b read that is not legitimate traffic is
    counted as dropped, by cause, one kind of flood datagram each;
  - unauthenticated error replies stay within kink.engine.ratelimit's per-source bucket, and go
    to configured peers only: none comes back to the flooder's own sockets.
Nothing here is timed but the length of the flood itself; the rates are reported by the
benchmark (`FLOOD_SECONDS=60 python -m bench.bench_flood_load`).
"""

import os

import pytest

from bench.bench_flood_load import FloodRun, report, run
from kink.engine.ratelimit import PER_SOURCE_BURST, PER_SOURCE_RATE

# Out of the default run: b must have most of a core for the 99% to hold. Why CREATEs failed:
# b's socket queue overflowed, and the kernel drops a's CREATEs as readily as garbage, so an
# exchange fails when all five transmissions (§9) land on a full queue. Two things kept it
# full: one trio wait per datagram (b read ~25,000/s at 34 us each, flat out), and the default
# 208 KiB queue (~250 datagrams, 5 ms of flood: any time slice b lost to another process
# dropped everything). kink.daemon.transport now reads in batches into a 4 MiB queue.
# Measured, 60 s, 295 CREATEs each. Quiet (load 1.2-1.4): before 100%, b reading 25,300/s,
# slowest CREATE 15 s (its 4th transmission); after 100% twice, b reading 46,500-48,900/s
# at 72-74% of a core, slowest 3.2 s. A busy loop beside it: before 98.0% (289/295, b read
# 8,500/s); after 99.7% (294/295, b read 36,700/s, load 2.3) and 98.3% (290/295, b read
# 20,600/s, load 4). Below ~60% of a core b cannot read 50,000/s at 15 us each, and which
# datagrams are lost is the kernel's choice, not kinkd's.
pytestmark = [
    pytest.mark.kdc,
    pytest.mark.skipif(os.geteuid() != 0, reason="kinkd drops from root to nobody"),
    pytest.mark.skipif(
        os.environ.get("KINK_LONG_TESTS") != "1",
        reason="the 60 s flood: set KINK_LONG_TESTS=1, on an otherwise idle machine",
    ),
]

SECONDS = 60.0
WARM_UP = 20  # samples (seconds) before the RSS reference: allocator arenas and caches settle
# b's RSS may move this much after warm-up. Why 4 MiB: b reads ~2.9 million flood datagrams in
# 60 s (~49,000/s on 2 cores), so state kept for even 1 flood datagram in 40 (~100 octets each)
# would add more than 4 MiB between the reference and the end. Legitimate growth stays well
# below: measured 1.3 MiB from t = 20 s to 60 s, nearly all of it the reply cache of the rekeys
# (§9, kept reply_cache_lifetime = 60 s, so it grows through the whole run: ~300 entries); with
# the flood alone, 0.2 MiB from t = 20 s to 30 s. The reply limiter's LRU is capped at 4096
# sources (kink.engine.ratelimit).
RSS_SLACK_KIB = 4096
# Datagrams b receives per legitimate rekey: the CREATE and the DELETE of the old pair (§3.6),
# and retransmissions of either when a copy was lost to a full socket buffer (§9).
LEGIT_DATAGRAMS_PER_REKEY = 4


@pytest.fixture(scope="module")
def flood() -> FloodRun:
    r = run(SECONDS)
    report(r)  # the figures, in the captured output (-s or -rP shows them)
    return r


def test_the_flood_ran_for_its_duration_from_a_separate_process(flood: FloodRun) -> None:
    assert flood.flood_elapsed >= SECONDS
    assert flood.sent > 0 and flood.send_errors == 0


def test_legitimate_creates_succeed(flood: FloodRun) -> None:
    assert flood.offered > 0
    assert flood.completed / flood.offered >= 0.99, flood.counters_a


def test_rss_of_b_stays_flat(flood: FloodRun) -> None:
    rss = [s.rss_kib for s in flood.samples]
    assert len(rss) >= SECONDS - 2  # one sample a second
    reference = rss[WARM_UP]
    last = rss[-20:]
    assert max(last) - reference <= RSS_SLACK_KIB, rss


def test_no_state_is_created_for_the_flood(flood: FloodRun) -> None:
    before, after = flood.before_b, flood.after_b
    # Every SA b holds is the legitimate peer's (how many depends on the rekeys in flight).
    assert {sa["peer"] for sa in after["sas"]["sas"]} == {"a"}
    assert [(p["name"], p["address"]) for p in after["peers"]["peers"]] == [
        (p["name"], p["address"]) for p in before["peers"]["peers"]
    ]
    assert after["status"]["transactions"] == 0
    assert all(p["transactions"] == 0 and p["queued"] == 0 for p in after["peers"]["peers"])
    # Each kind of flood datagram, dropped by its cause: garbage (and garbage bodies), every
    # datagram from a source that is no peer, and the bad tickets from the peer's address.
    counted = flood.counters_b
    for cause in ("undecodable", "unknown-peer", "krb5:KRB_AP_ERR_BAD_INTEGRITY"):
        assert counted.get(f"dropped.{cause}", 0) > 0, counted
    dropped = sum(v for k, v in counted.items() if k.startswith("dropped."))
    legitimate = flood.received_b - dropped
    assert 0 <= legitimate <= LEGIT_DATAGRAMS_PER_REKEY * flood.offered, counted


def test_error_replies_are_rate_limited_per_source(flood: FloodRun) -> None:
    # b answers configured peers only, at their configured port: nothing reflects to a flooder.
    assert all(sum(bins) == 0 for bins in flood.replies_at_flooder.values())
    # The spoofed peer address gets its bucket's worth (§3.5 KRB_ERRORs), the rest is refused.
    assert flood.counters_b.get("rate-limited.lone-reply.source", 0) > 0
    assert flood.unexpected_replies_a <= PER_SOURCE_BURST + PER_SOURCE_RATE * flood.wall
