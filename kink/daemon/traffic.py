"""The kernel's byte counters of the engine's installed SAs, read for dead peer detection:
RFC 4430 §3.7 starts from outbound traffic that gets nothing back (Engine.sa_activity).

Each poll asks the helper for the counters of exactly those SAs (its `counters` request,
kink_privsep.protocol), a few dozen at a time, one request in flight. Why not a dump of every
SA: it read every field of every SA the helper owns, the old inbound SAs waiting out their
DELETE grace (§3.3) too, in one turn of the helper and one step of kinkd's reader (issue 9: with
~2,100 SAs under load, 36-60 ms of the helper and 25-29 ms of kinkd, a stall that made the
slowest 1% of the exchanges). Why one request at a time: the SA requests of the exchanges under
way, queued meanwhile, go to the helper between two of them and never wait behind a whole poll.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import trio

from kink.daemon.helper_args import PROTOCOL_NAMES
from kink.daemon.helper_client import HelperClient, HelperError, HelperGone
from kink.engine import Engine
from kink.engine.sadb import ChildState
from kink_privsep import protocol

log = logging.getLogger("kinkd")

# How often the counters are read: a third of dpd_delay, within these bounds (DPD fires between
# dpd_delay and dpd_delay + a poll's interval).
POLL_MIN = 0.5
POLL_MAX = 10.0
# ... but a poll takes at most 1/POLL_COST of the time: with 100,000 SA pairs it is 200,000
# counters, thousands of requests.
POLL_COST = 20

# What one line of a poll reads: a protocol of a child, its inbound SA (to us) and its outbound
# twin (to the peer): (protocol number, inbound SPI, SA_IDs of the inbound and outbound SAs).
Line = tuple[int, int, dict[str, Any], dict[str, Any]]


async def watch(engine: Engine, helper: HelperClient, wake: Callable[[], None]) -> None:
    """Poll for ever (a task of the daemon's nursery); `wake` runs the engine's actions that
    the counters brought (a STATUS, §3.7)."""
    interval = min(max(engine.config.dpd_delay / 3, POLL_MIN), POLL_MAX)
    pause = interval
    warned = False
    while True:
        await trio.sleep(pause)
        began = time.perf_counter()
        if not await poll(engine, helper, wake) and not warned:
            warned = True
            log.warning(
                "kink-privsep has no counters request: no dead peer detection until it is upgraded"
            )
        pause = max(interval, POLL_COST * (time.perf_counter() - began))


async def poll(engine: Engine, helper: HelperClient, wake: Callable[[], None]) -> bool:
    """Read the counters of every installed child's SAs and hand them to the engine; False
    when the helper has no `counters` request (one older than this daemon)."""
    room = min(int(helper.hello.get("max_counters", 0)), protocol.MAX_COUNTERS) // 2
    if room < 1:
        return False
    lines = _lines(engine)
    for first in range(0, len(lines), room):
        part = lines[first : first + room]
        sas = [sa for _, _, inbound, outbound in part for sa in (inbound, outbound)]
        try:
            result = await helper.call("counters", {"sas": sas})
        except (HelperError, HelperGone):
            return True  # the helper's return triggers a resync; counters can wait
        octets = result["bytes"]
        now = trio.current_time()
        for i, (number, inbound_spi, _, _) in enumerate(part):
            got, sent = octets[2 * i], octets[2 * i + 1]
            if got is not None and sent is not None:
                engine.sa_activity(number, inbound_spi, got, sent, now)
        wake()
    return True


def _lines(engine: Engine) -> list[Line]:
    """What a poll reads, taken in one step: sa_activity and the exchanges that run between
    two requests change the engine's children (the engine ignores SPIs no longer installed).
    From the engine's SA database, not snapshot(): not a view made of every child per poll."""
    local = engine.config.address
    lines: list[Line] = []
    for child in engine.sadb.children.values():
        if child.state is not ChildState.INSTALLED:
            continue
        remote = child.peer.config.address
        for pair in child.sas:
            name = PROTOCOL_NAMES[pair.protocol]
            inbound = {"proto": name, "dst": local, "spi": pair.inbound_spi}
            outbound = {"proto": name, "dst": remote, "spi": pair.outbound_spi}
            lines.append((pair.protocol, pair.inbound_spi, inbound, outbound))
    return lines
