"""The kernel's SAs that kinkd reads at start-up (and at each traffic poll, and for kinkctl sas):
a helper dump of 100,000s of SAs comes in parts, each handed on as it comes and dropped once
read, not gathered whole first (HelperClient.call's on_part; issue 9: the largest peak of
kinkd's memory)."""

from dataclasses import replace
from ipaddress import ip_address
from typing import Any

import pytest
import trio

from kink.daemon.helper_client import HelperClient, HelperError
from kink.engine import StartAction
from kink_privsep.model import MODE_TUNNEL, SaId, SaSpec
from kink_privsep.protocol import Event
from kink_privsep.recording import RecordingBackend
from kink_privsep.service import DUMP_CHUNK
from tests.daemon.conftest import HostsFactory
from tests.daemon.harness import wait_for_a_pair
from tests.privsep.harness import TEST_CONFIG, TEST_REQIDS, thread_helper

pytestmark = pytest.mark.trio

SAS = 2 * DUMP_CHUNK + 5  # a dump of three parts


def _ignore(_: Event) -> None:
    pass


async def _nothing() -> None:
    pass


def _populate(backend: RecordingBackend) -> None:
    here, there = ip_address("192.0.2.1"), ip_address("192.0.2.2")
    for spi in range(0x1000, 0x1000 + SAS):
        sa = SaSpec(
            SaId(here, spi, 50),
            there,
            MODE_TUNNEL,
            TEST_REQIDS[0],
            "cbc(aes)",
            bytearray(16),
            "hmac(sha1)",
            bytearray(20),
        )
        RecordingBackend.add_sa(backend, sa, update=False)


async def test_the_parts_of_a_dump_go_to_on_part_as_they_come() -> None:
    with thread_helper(replace(TEST_CONFIG, max_sas=SAS)) as helper:
        _populate(helper.backend)
        client = HelperClient(helper.path, _ignore, _nothing)
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            whole = await client.call("dump", {"what": "sa"})
            parts: list[dict[str, Any]] = []
            assert await client.call("dump", {"what": "sa"}, parts.append) == {}
            assert [len(part["sas"]) for part in parts] == [DUMP_CHUNK, DUMP_CHUNK, 5]
            assert [sa for part in parts for sa in part["sas"]] == whole["sas"]
            # A reply of one part, and a refusal, are as without on_part.
            one: list[dict[str, Any]] = []
            assert await client.call("dump", {"what": "policy"}, one.append) == {}
            assert one == [{"sas": [], "policies": []}]
            with pytest.raises(HelperError):
                await client.call("no-such-op", {}, one.append)
            assert len(one) == 1
            nursery.cancel_scope.cancel()


async def test_kinkctl_sas_shows_the_kernel_counters_read_in_parts(
    make_hosts: HostsFactory,
) -> None:
    hosts = make_hosts(a={"b": StartAction.START}, b={"a": StartAction.NONE})
    a, b = hosts["a"], hosts["b"]
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        await a.start(nursery)
        await wait_for_a_pair(a, b)
        (entry,) = (await a.request("sas"))["sas"]
        (pair,) = entry["sas"]
        assert pair["bytes_in"] == pair["bytes_out"] == 0  # the recording backend's counters
        assert entry["age"] is not None  # from the kernel's add_time
        await a.stop()
        await b.stop()
