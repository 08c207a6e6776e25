"""Rate limits for the replies the engine sends without authentication.

A lone KINK_ERROR or KRB_ERROR (RFC 4430 §4.2.8, §5.5, §3.5) answers a command nobody proved
to have sent: the source address may be spoofed, so each such reply is work and traffic that
a third party can make us spend on someone else (§10). These replies therefore pass a token
bucket per source address and one for all sources; the excess is dropped and counted by the
caller. The per-source state is an LRU of at most `max_sources` buckets, so that a flood from
many spoofed sources costs bounded memory: a source pushed out of it starts again with a full
bucket, which the global bucket still caps.
"""

from collections import OrderedDict
from dataclasses import dataclass

# Defaults: a peer whose commands we cannot authenticate needs a handful of answers to learn
# why (INVMAJ, a KRB_ERROR to fetch a new ticket, ...), never hundreds per second.
PER_SOURCE_RATE = 10.0  # replies per second, per source address
PER_SOURCE_BURST = 20.0
GLOBAL_RATE = 200.0  # replies per second for all sources together
GLOBAL_BURST = 400.0
MAX_SOURCES = 4096


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float

    def take(self, now: float, rate: float, burst: float) -> bool:
        """Refill for the time since the last call (never beyond `burst`), then spend one."""
        if now > self.stamp:
            self.tokens = min(burst, self.tokens + (now - self.stamp) * rate)
            self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class ReplyLimiter:
    """`allow(source, now)`: whether one more unauthenticated reply to `source` may go now.

    The answer is "no" with the reason "source" or "global" (for the counter), or None."""

    def __init__(
        self,
        *,
        rate: float = PER_SOURCE_RATE,
        burst: float = PER_SOURCE_BURST,
        global_rate: float = GLOBAL_RATE,
        global_burst: float = GLOBAL_BURST,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        if max_sources < 1 or burst < 1 or global_burst < 1:
            raise ValueError("a reply limiter needs room for one source and one reply")
        self.rate = rate
        self.burst = burst
        self.global_rate = global_rate
        self.global_burst = global_burst
        self.max_sources = max_sources
        self._global = _Bucket(global_burst, 0.0)
        self._sources: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sources)

    def refusal(self, source: str, now: float) -> str | None:
        """None if a reply to `source` may go now (and spend its tokens), else the limit hit."""
        bucket = self._sources.get(source)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._sources[source] = bucket
            if len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)  # the least recently seen source
        else:
            self._sources.move_to_end(source)
        # The source's own bucket first: a noisy source must not drain the global one.
        if not bucket.take(now, self.rate, self.burst):
            return "source"
        if not self._global.take(now, self.global_rate, self.global_burst):
            return "global"
        return None
