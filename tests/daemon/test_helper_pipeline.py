"""HelperClient.call_all: many requests in one pipeline (start-up installs thousands of
policies so), against kink_privsep's real server on a thread."""

import pytest
import trio

from kink.daemon.helper_client import HelperClient, HelperError
from kink_privsep.protocol import Event
from tests.privsep.harness import thread_helper

pytestmark = pytest.mark.trio


def _ignore(_: Event) -> None:
    pass


async def _nothing() -> None:
    pass


async def test_outcomes_come_back_in_request_order() -> None:
    with thread_helper() as helper:
        client = HelperClient(helper.path, _ignore, _nothing)
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
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
            nursery.cancel_scope.cancel()
