"""kinkd's SA lines: the initiator's rekeyed pair says at NOTICE which SA it replaces, so the
old SA's down line is at INFO; a down that no rekey announced stays at NOTICE."""

import logging
import re

import pytest
import trio

from kink.daemon.logs import NOTICE
from kink.engine import StartAction
from tests.daemon.conftest import HostsFactory
from tests.daemon.harness import wait_for, wait_for_a_pair

pytestmark = pytest.mark.trio


def _lines(caplog: pytest.LogCaptureFixture, peer: str) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "kinkd" and r.getMessage().startswith(f"{peer}: SA ")
    ]


async def test_rekeyed_sa_down_at_info_other_downs_at_notice(
    make_hosts: HostsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    hosts = make_hosts(a={"b": StartAction.NONE}, b={"a": StartAction.NONE})
    a, b = hosts["a"], hosts["b"]
    caplog.set_level(logging.DEBUG, logger="kinkd")
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        await b.start(nursery)
        await a.request("initiate", peer="b")
        await wait_for_a_pair(a, b)
        old = {sa["spi"] for sa in a.sas()}
        await a.request("rekey", peer="b")
        await wait_for(
            lambda: len(a.sas()) == len(b.sas()) == 2 and not old & {sa["spi"] for sa in a.sas()},
            "the rekeyed pair replacing the old one",
        )
        spi = next(iter({sa["spi"] for sa in b.sas()}))
        await b.request("terminate", spi=spi)
        await wait_for(lambda: a.sas() == [] and b.sas() == [], "the SAs deleted on both")
        await a.stop()
        await b.stop()
    # a, the initiator, rekeyed: its replacement's up line names the old SA.
    lines = _lines(caplog, "b")
    (first,) = [m for _, m in lines if re.match(r"b: SA \d+ up ", m)]
    (rekeyed,) = [m for _, m in lines if "rekeyed (replaces SA" in m]
    old_id, new_id = int(first.split()[2]), int(rekeyed.split()[2])
    assert f"(replaces SA {old_id})" in rekeyed
    downs = {int(m.split()[2]): level for level, m in lines if " down: " in m}
    assert downs == {old_id: logging.INFO, new_id: NOTICE}
    # b, the responder, sees two CREATEs (a rekey is a CREATE like any, RFC 4430 §3.6): two
    # up lines, two downs, all at NOTICE.
    lines = _lines(caplog, "a")
    assert len(lines) == 4 and all(level == NOTICE for level, _ in lines)
    assert sum(" down: " in m for _, m in lines) == 2
