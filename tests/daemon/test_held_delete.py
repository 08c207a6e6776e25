"""The DELETE of a pair rekeyed away is held for a moment (kink.engine.initiator.DELETE_HOLD,
RFC 4430 §3.6); a kinkd stopped meanwhile sends it on its way out, as a DELETE already started,
rather than leave the peer the old pair until it expires."""

import pytest
import trio

from kink.engine import StartAction, initiator
from tests.daemon.conftest import HostsFactory
from tests.daemon.harness import wait_for, wait_for_a_pair

pytestmark = pytest.mark.trio


async def test_a_stop_sends_the_held_delete_of_a_rekeyed_pair(
    make_hosts: HostsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(initiator, "DELETE_HOLD", 3600.0)  # held until the stop
    hosts = make_hosts(a={"b": StartAction.START}, b={"a": StartAction.NONE})
    a, b = hosts["a"], hosts["b"]
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        await a.start(nursery)
        await wait_for_a_pair(a, b)
        old = {sa["spi"] for sa in b.sas()}
        assert (await a.request("rekey", peer="b")) == {"children": 1}
        # a: the new pair and the old inbound SA: its old outbound SA went when the REPLY
        # brought the new one (a's new inbound SA alone, installed before the CREATE went
        # (§3.2), would make three too, the rekey still under way).
        await wait_for(
            lambda: len(a.sas()) == 3 and len(old & {sa["spi"] for sa in a.sas()}) == 1,
            "the old pair held",
        )
        assert len(b.sas()) == 4
        await a.stop()  # delete_on_stop is off: the SAs stay, but the held DELETE goes
        await wait_for(
            lambda: len(b.sas()) == 2 and not old & {sa["spi"] for sa in b.sas()},
            "b's old pair deleted",
        )
        await b.stop()
