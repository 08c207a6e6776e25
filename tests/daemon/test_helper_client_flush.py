"""HelperClient.flush: while the helper has no request in hand, the queued requests leave at
once, in the order submitted and batched as the writer task would send them, without waiting
for its turn (issue 9: a turn of the loop less on the path of every exchange that waits for
the helper); while it has, they wait for the writer task, which may batch more with them."""

import time

import pytest
import trio

from kink.daemon.helper_client import Outcome
from tests.daemon.helper_clients import running_client

pytestmark = pytest.mark.trio


async def test_flush_sends_the_queued_requests_before_the_writer_task_runs() -> None:
    async with running_client() as (helper, client):
        requests, messages = helper.server.requests, helper.server.messages
        outcomes: list[Outcome] = []
        await client.submit("dump", {"what": "sa"}, outcomes.append)
        await client.submit("hello", {}, outcomes.append)
        client.flush()
        # No checkpoint since: only flush() can have sent them (the helper runs on a thread).
        deadline = time.monotonic() + 30
        while helper.server.requests < requests + 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert helper.server.requests == requests + 2
        assert helper.server.messages == messages + 1  # one batch
        client.flush()  # nothing queued: nothing sent
        while len(outcomes) < 2:
            await trio.sleep(0.001)
        assert outcomes[0] == {"sas": [], "policies": []}
        assert isinstance(outcomes[1], dict) and "max_batch" in outcomes[1]
        assert helper.server.messages == messages + 1


async def test_flush_leaves_the_requests_to_the_writer_while_the_helper_has_some() -> None:
    async with running_client() as (helper, client):
        requests = helper.server.requests
        outcomes: list[Outcome] = []
        await client.submit("hello", {}, outcomes.append)
        client.flush()
        await client.submit("hello", {}, outcomes.append)
        client.flush()  # the first is in hand (its reply not read: no checkpoint since)
        deadline = time.monotonic() + 30
        while helper.server.requests < requests + 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.05)  # room for a wrong send to arrive (this cannot fail wrongly)
        assert helper.server.requests == requests + 1
        while len(outcomes) < 2:  # the writer task sends the second at its turn
            await trio.sleep(0.001)
        assert helper.server.requests == requests + 2


async def test_a_request_submitted_without_wake_waits_for_flush() -> None:
    # The daemon's SA actions: flush() after the run of actions sends them, or wakes the
    # writer task when the helper has a request in hand; submit alone does not wake it.
    async with running_client() as (helper, client):
        requests = helper.server.requests
        outcomes: list[Outcome] = []
        await client.submit("hello", {}, outcomes.append, wake=False)
        await trio.sleep(0.05)  # room for a wrong send to arrive (this cannot fail wrongly)
        assert helper.server.requests == requests
        client.flush()  # sent here
        await client.submit("hello", {}, outcomes.append, wake=False)
        client.flush()  # the first is in hand: left to the writer task, woken here
        while len(outcomes) < 2:
            await trio.sleep(0.001)
        assert helper.server.requests == requests + 2
