"""Bad datagrams are dropped, counted by cause and logged once per cause (RFC 4430 §10): the
first of each cause at INFO, the rest at DEBUG, and at most one INFO line per cause every
DROP_LOG_INTERVAL seconds, saying how many came since; a flood writes no line per datagram."""

import logging
import socket

import pytest
import trio

from kink.engine import StartAction
from tests.daemon.conftest import HostsFactory
from tests.daemon.harness import ADDRESSES, wait_for

pytestmark = pytest.mark.trio


def _drop_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "kinkd" and r.getMessage().startswith("dropped a datagram")
    ]


async def test_drops_are_logged_once_per_cause(
    make_hosts: HostsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    hosts = make_hosts(a={"b": StartAction.NONE}, b={"a": StartAction.NONE})
    b = hosts["b"]
    caplog.set_level(logging.DEBUG, logger="kinkd")
    target = (b.address, hosts.port)
    async with trio.open_nursery() as nursery:
        daemon = await b.start(nursery)
        counters = daemon.engine.counters
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger,
        ):
            peer.bind((ADDRESSES["a"], 0))  # a's address, not its KINK socket
            stranger.bind((ADDRESSES["c"], 0))  # no peer of b's
            for _ in range(5):
                peer.sendto(b"short", target)  # less than a KINK header (§4)
                stranger.sendto(b"x" * 40, target)
            await wait_for(
                lambda: (
                    counters.get("dropped.undecodable") == 5
                    and counters.get("dropped.unknown-peer") == 5
                    and len(_drop_lines(caplog)) == 10
                ),
                "ten datagrams dropped",
            )
            infos = [m for level, m in _drop_lines(caplog) if level == logging.INFO]
            assert len(infos) == 2  # one per cause
            assert any(
                m.endswith(
                    "undecodable (more for this cause are counted, kinkctl "
                    "status, and logged at most once a minute)"
                )
                for m in infos
            )
            assert any(f"from {ADDRESSES['c']}: unknown-peer" in m for m in infos)
            assert sum(level == logging.DEBUG for level, _ in _drop_lines(caplog)) == 8
            # Once the interval is over, the next drop of the cause says how many came since.
            daemon._drops_logged["undecodable"][0] = 0.0
            peer.sendto(b"short", target)
            await wait_for(lambda: counters.get("dropped.undecodable") == 6, "one more drop")
        await wait_for(lambda: len(_drop_lines(caplog)) == 11, "its line written")
        assert _drop_lines(caplog)[-1] == (
            logging.INFO,
            f"dropped a datagram from {ADDRESSES['a']}: undecodable "
            "(4 more for this cause since the last line)",
        )
        await b.stop()
