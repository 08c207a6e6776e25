"""HelperClient.call_all: many requests in one pipeline (start-up installs thousands of
policies so), batched when the helper takes batches, against kink_privsep's real server on a
thread."""

from typing import Any

import pytest
import trio

from kink.daemon.helper_client import HelperError, HelperGone, Outcome
from kink_privsep import protocol
from kink_privsep.service import Service
from tests.daemon.helper_clients import running_client

pytestmark = pytest.mark.trio


async def test_outcomes_come_back_in_request_order() -> None:
    async with running_client() as (_, client):
        requests = [("hello", {}) if i % 3 else ("dump", {"what": "sa"}) for i in range(50)]
        requests[17] = ("no-such-op", {})
        outcomes = await client.call_all(requests)
        assert len(outcomes) == 50
        for i, outcome in enumerate(outcomes):
            if i == 17:
                assert isinstance(outcome, HelperError)
            elif i % 3:
                assert isinstance(outcome, dict) and "reqid_range" in outcome
            else:
                assert outcome == {"sas": [], "policies": []}
        assert await client.call_all([]) == []


async def test_requests_queued_together_go_in_batches() -> None:
    async with running_client() as (helper, client):
        before = helper.server.messages
        outcomes = await client.call_all([("hello", {})] * 200)
        assert all(isinstance(o, dict) and o["max_batch"] for o in outcomes)
        # Queued in one scheduling round: sent MAX_BATCH to a message.
        assert helper.server.messages - before == -(-200 // protocol.MAX_BATCH)


class _OlderService(Service):
    """A helper from before batches: its hello has no max_batch."""

    def _hello(self) -> dict[str, Any]:
        hello = super()._hello()
        del hello["max_batch"]
        return hello


async def test_a_helper_without_batches_gets_one_request_per_message() -> None:
    async with running_client(service_class=_OlderService) as (helper, client):
        before = helper.server.messages
        outcomes = await client.call_all([("dump", {"what": "sa"})] * 20)
        assert outcomes == [{"sas": [], "policies": []}] * 20
        assert helper.server.messages - before == 20


async def test_queued_requests_fail_when_the_helper_goes() -> None:
    async with running_client() as (helper, client):
        outcomes: list[Outcome] = []
        for _ in range(5):
            await client.submit("hello", {}, outcomes.append)
        helper.server.stop()  # closes the connection; the requests may or may not be sent
        with trio.fail_after(30):
            while len(outcomes) < 5:
                await trio.sleep(0.01)
        assert all(isinstance(o, HelperGone | dict) for o in outcomes)
