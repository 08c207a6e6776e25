"""Dead peer detection's input (RFC 4430 §3.7): kinkd reads the kernel's byte counters of its
installed SAs with the helper's `counters` request, never a dump of every SA (issue 9: the
dump was one long turn of the helper and of kinkd's reader), and outbound traffic without
inbound still makes it send a STATUS."""

from dataclasses import replace
from ipaddress import ip_address
from types import SimpleNamespace
from typing import Any, cast

import pytest
import trio

from kink.daemon import traffic
from kink.daemon.helper_client import HelperClient
from kink.engine import Engine, StartAction
from kink.engine.sadb import ChildState, SaPair
from kink.wire.ipsec_doi import ProtocolId
from kink_privsep import protocol
from kink_privsep.model import IPPROTO_ESP, SaId
from kink_privsep.protocol import Event
from kink_privsep.service import Service
from tests.daemon.conftest import HostsFactory
from tests.daemon.harness import ADDRESSES, HELPER_CONFIG, WAIT, wait_for_a_pair
from tests.privsep.harness import ThreadHelper, thread_helper

pytestmark = pytest.mark.trio

DPD_DELAY = 1.0  # seconds: a poll every traffic.POLL_MIN
HERE, THERE = "192.0.2.1", "192.0.2.2"
CHILDREN = 100  # 75 installed: 3 requests


async def test_outbound_traffic_without_inbound_sends_a_status(make_hosts: HostsFactory) -> None:
    hosts = make_hosts(a={"b": StartAction.START}, b={"a": StartAction.NONE})
    a, b = hosts["a"], hosts["b"]
    a.config = replace(a.config, engine=replace(a.config.engine, dpd_delay=DPD_DELAY))
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        daemon = await a.start(nursery)
        await wait_for_a_pair(a, b)
        (out,) = (sa for sa in a.sas() if sa["dst"] == ADDRESSES["b"])
        outbound = SaId(ip_address(out["dst"]), out["spi"], IPPROTO_ESP)
        suspected = trio.Event()
        start_status = daemon.engine.start_status

        def spy(*args: Any, **kwargs: Any) -> None:
            if kwargs.get("dpd"):
                suspected.set()
            start_status(*args, **kwargs)

        daemon.engine.start_status = spy  # type: ignore[method-assign]
        a.helper.backend.calls.clear()
        with trio.fail_after(WAIT):
            while not suspected.is_set():
                a.helper.backend.kernel_traffic(outbound, 100)  # sent; nothing comes back
                await trio.sleep(traffic.POLL_MIN / 4)
        calls = set(a.helper.backend.calls)
        assert "sa_bytes" in calls and "dump_sas" not in calls
        await a.stop()
        await b.stop()


class _Engine:
    """What a poll reads of the engine: its address, its children, and sa_activity."""

    def __init__(self, children: int) -> None:
        peer = SimpleNamespace(config=SimpleNamespace(address=THERE))
        self.config = SimpleNamespace(address=HERE)
        self.sadb = SimpleNamespace(
            children={
                i: SimpleNamespace(
                    state=ChildState.INSTALLED if i % 4 else ChildState.DYING,
                    peer=peer,
                    sas=[SaPair(ProtocolId.ESP, 0x1000 + i, 0x5000 + i)],
                )
                for i in range(children)
            }
        )
        self.activity: list[tuple[int, int, int, int]] = []

    def sa_activity(self, protocol: int, spi: int, got: int, sent: int, now: float) -> None:
        self.activity.append((protocol, spi, got, sent))


def _install(helper: ThreadHelper, dst: str, spi: int, octets: int) -> None:
    sa = {
        "proto": "esp",
        "mode": "tunnel",
        "src": HERE if dst == THERE else THERE,
        "dst": dst,
        "spi": spi,
        "reqid": HELPER_CONFIG.reqid_range[0],
        "enc": "aes-cbc",
        "enc_key": bytes(16),
        "auth": "hmac-sha1-96",
        "auth_key": bytes(20),
    }
    with helper.client() as c:
        c.call("add_sa", sa)
    helper.backend.kernel_traffic(SaId(ip_address(dst), spi, IPPROTO_ESP), octets)


async def test_a_poll_reads_the_installed_childrens_counters_a_request_at_a_time() -> None:
    engine = _Engine(CHILDREN)
    with thread_helper(HELPER_CONFIG) as helper:
        for i in range(CHILDREN):
            _install(helper, HERE, 0x1000 + i, 10 + i)
            if i != 5:  # one outbound SA gone: that child's line is left out
                _install(helper, THERE, 0x5000 + i, 20 + i)
        helper.backend.calls.clear()
        client = HelperClient(helper.path, _ignore, _nothing)
        woken: list[int] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            before = helper.server.messages
            wake = lambda: woken.append(len(engine.activity))  # noqa: E731
            assert await traffic.poll(cast(Engine, engine), client, wake)
            messages = helper.server.messages - before
            nursery.cancel_scope.cancel()
    installed = [i for i in range(CHILDREN) if i % 4 and i != 5]
    expected = [(ProtocolId.ESP, 0x1000 + i, 10 + i, 20 + i) for i in installed]
    assert engine.activity == expected
    lines = len(installed) + 1  # the child without its outbound SA was asked for too
    per_request = protocol.MAX_COUNTERS // 2
    assert messages == len(woken) == -(-lines // per_request)  # one request at a time
    assert "dump_sas" not in helper.backend.calls


async def test_a_helper_without_counters_is_not_asked() -> None:
    class OldService(Service):
        def _hello(self) -> dict[str, Any]:
            hello = super()._hello()
            del hello["max_counters"]
            return hello

    with thread_helper(HELPER_CONFIG, OldService) as helper:
        client = HelperClient(helper.path, _ignore, _nothing)
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            before = helper.server.requests
            assert not await traffic.poll(cast(Engine, _Engine(4)), client, lambda: None)
            assert helper.server.requests == before
            nursery.cancel_scope.cancel()


def _ignore(_: Event) -> None:
    pass


async def _nothing() -> None:
    pass
