"""A restart reads each saved child only as the engine takes it over (kink.daemon.state's
SavedEntry): a child whose entry cannot be read is not taken over, and its SAs go with those
the state file does not account for, while the epoch is kept (RFC 4430 §3.7)."""

import json
import logging

import pytest
import trio

from kink.daemon.state import STATE_FILE
from kink.engine import StartAction
from tests.daemon.conftest import HostsFactory
from tests.daemon.harness import wait_for_a_pair

pytestmark = pytest.mark.trio


def _damaged(line: bytes) -> bytes:
    """The line with the record of every entry in it made unreadable (an unknown mode)."""
    doc = json.loads(line)
    for entry in doc.get("set", [doc] if "record" in doc else []):
        entry["record"]["mode"] = "beet"
    return json.dumps(doc).encode()


async def test_a_child_whose_entry_cannot_be_read_is_not_taken_over(
    make_hosts: HostsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    hosts = make_hosts(a={"b": StartAction.START}, b={"a": StartAction.NONE})
    a, b = hosts["a"], hosts["b"]
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        await a.start(nursery)
        await wait_for_a_pair(a, b)
        epoch = (await a.request("status"))["epoch"]
        old = {sa["spi"] for sa in a.sas()}
        await a.stop()
        path = a.config.daemon.state_dir / STATE_FILE
        lines = path.read_bytes().split(b"\n")[:-1]
        path.write_bytes(b"".join(_damaged(line) + b"\n" for line in lines))
        assert b'"beet"' in path.read_bytes()  # the pair's entry

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kinkd"):
            await a.start(nursery)  # the SAs are in the kernel: the epoch is kept...
        assert (await a.request("status"))["epoch"] == epoch
        assert not old & {sa["spi"] for sa in a.sas()}  # ... but not the pair
        told = [r.getMessage() for r in caplog.records if "not taken over" in r.getMessage()]
        assert len(told) == 1 and "not a saved child" in told[0]
        await a.stop()
        await b.stop()
