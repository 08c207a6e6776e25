"""Per-source and global limits on the replies sent to unauthenticated messages (RFC 4430 §10:
a spoofed source must not make us spend unbounded work or traffic), and the bound on the
state they keep."""

from kink.engine.ratelimit import ReplyLimiter
from kink.wire import ErrorPayload, KinkErrorCode, Message, MessageType, decode, encode
from tests.engine.conftest import WorldFactory

A = "192.0.2.1"


def _allowed(limiter: ReplyLimiter, source: str, now: float, count: int) -> int:
    return sum(limiter.refusal(source, now) is None for _ in range(count))


def test_a_source_gets_its_burst_then_its_rate() -> None:
    limiter = ReplyLimiter(rate=10, burst=20, global_rate=1000, global_burst=1000)
    assert _allowed(limiter, "198.51.100.1", 0.0, 50) == 20
    assert limiter.refusal("198.51.100.1", 0.0) == "source"
    assert _allowed(limiter, "198.51.100.1", 0.5, 50) == 5  # 0.5 s at 10/s
    # Idle time refills up to the burst, not beyond.
    assert _allowed(limiter, "198.51.100.1", 100.0, 50) == 20


def test_sources_have_separate_buckets() -> None:
    limiter = ReplyLimiter(rate=10, burst=20, global_rate=1000, global_burst=1000)
    assert _allowed(limiter, "198.51.100.1", 0.0, 50) == 20
    assert _allowed(limiter, "198.51.100.2", 0.0, 50) == 20


def test_the_global_cap_holds_across_sources() -> None:
    limiter = ReplyLimiter(rate=10, burst=20, global_rate=50, global_burst=100)
    sources = [f"198.51.100.{i}" for i in range(20)]
    assert sum(_allowed(limiter, s, 0.0, 20) for s in sources) == 100
    assert limiter.refusal("203.0.113.1", 0.0) == "global"
    assert sum(_allowed(limiter, s, 1.0, 20) for s in sources) == 50


def test_many_sources_keep_bounded_state() -> None:
    limiter = ReplyLimiter(max_sources=64, global_rate=1e9, global_burst=1e9)
    for i in range(10_000):
        limiter.refusal(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 0.0)
    assert len(limiter) == 64


def test_a_recent_source_stays_while_old_ones_are_pushed_out() -> None:
    limiter = ReplyLimiter(rate=1, burst=2, max_sources=3, global_rate=1e9, global_burst=1e9)
    assert _allowed(limiter, "198.51.100.1", 0.0, 5) == 2
    for source in ("198.51.100.2", "198.51.100.1", "198.51.100.3"):
        limiter.refusal(source, 0.0)
    # .1 was seen again before .3 came: still remembered with an empty bucket.
    assert limiter.refusal("198.51.100.1", 0.0) == "source"


def test_engine_drops_and_counts_lone_replies_over_the_limit(make_world: WorldFactory) -> None:
    """A flood of commands without KINK_AP_REQ (§6: answered with a lone KINK_PROTOERR) gets
    the burst answered, the rest dropped and counted; time refills the bucket."""
    world = make_world()
    b = world.host("b").engine
    b.reply_limiter = ReplyLimiter(rate=10, burst=20)
    data = encode(Message(MessageType.STATUS, 77, ()))
    for _ in range(50):
        b.datagram_received(data, (A, 910), world.now)
    world.drain()
    replies = [decode(d.data) for d in world.flight]
    assert len(replies) == 20
    assert all(r.payloads == (ErrorPayload(KinkErrorCode.PROTOERR),) for r in replies)
    counters = b.snapshot().counters
    assert counters["rate-limited.lone-reply.source"] == 30
    assert counters["dropped.command-without-ap-req"] == 50
    world.flight.clear()
    for _ in range(50):
        b.datagram_received(data, (A, 910), world.now + 1.0)
    world.drain()
    assert len(world.flight) == 10
