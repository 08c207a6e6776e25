"""HelperClient's on_delivered (issue 9): called once the outcomes and events of one wake-up of
its reader have all been delivered, in the same step (the daemon then carries out what they led
to: Daemon._delivered), and once the connection's end has failed the requests in flight; and
submit_nowait(), which queues a request without a wait while the helper is up, and fails it at
once while it is away. Against a helper played by the test on a real SEQPACKET socket."""

import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from kink.daemon.helper_client import HelperClient, HelperGone, Outcome
from kink_privsep import protocol
from kink_privsep.protocol import Event
from tests.daemon.harness import short_dir

pytestmark = pytest.mark.trio


def _ignore(_: Event) -> None:
    pass


async def _nothing() -> None:
    pass


class _Helper:
    """The helper's side of the connection: answers hello, then does what the test says."""

    def __init__(self, conn: trio.socket.SocketType, listener: trio.socket.SocketType) -> None:
        self.conn = conn
        self.listener = listener

    async def requests(self) -> list[protocol.Request]:
        _, requests = protocol.decode_requests(await self.conn.recv(protocol.MAX_MESSAGE))
        assert all(isinstance(r, protocol.Request) for r in requests)
        return requests  # type: ignore[return-value]

    async def answer_all(self, requests: list[protocol.Request]) -> None:
        replies = [protocol.encode_reply(r.id, {}) for r in requests]
        await self.conn.send(protocol.encode_batch(replies))


@contextlib.asynccontextmanager
async def _connected(
    nursery: trio.Nursery, events: list[str]
) -> AsyncIterator[tuple[HelperClient, _Helper]]:
    with short_dir() as directory:
        path = str(directory / "helper.sock")
        listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        await listener.bind(path)
        listener.listen(1)
        client = HelperClient(path, _ignore, _nothing, lambda: events.append("delivered"))
        nursery.start_soon(client.run)
        conn, _ = await listener.accept()
        helper = _Helper(conn, listener)
        (hello,) = await helper.requests()
        await conn.send(protocol.encode_reply(hello.id, {"max_batch": 16}))
        await client.ready()
        await trio.testing.wait_all_tasks_blocked()
        events.clear()
        yield client, helper
        conn.close()
        listener.close()


async def test_on_delivered_follows_all_the_outcomes_of_a_wake_up_in_the_same_step() -> None:
    events: list[str] = []
    steps: list[trio.lowlevel.Task] = []

    def done(outcome: Outcome) -> None:
        events.append("outcome")
        steps.append(trio.lowlevel.current_task())

    async with trio.open_nursery() as nursery, _connected(nursery, events) as (client, helper):
        for _ in range(3):
            client.submit_nowait("hello", {}, done, wake=False)
        client.flush()  # one message: the helper is idle
        await helper.answer_all(await helper.requests())  # one message back
        await trio.testing.wait_all_tasks_blocked()
        assert events == ["outcome"] * 3 + ["delivered"]
        assert len(set(steps)) == 1  # the reader's
        nursery.cancel_scope.cancel()


async def test_on_delivered_follows_the_requests_failed_by_the_connections_end() -> None:
    events: list[str] = []
    outcomes: list[Outcome] = []

    def done(outcome: Outcome) -> None:
        events.append("outcome")
        outcomes.append(outcome)

    async with trio.open_nursery() as nursery, _connected(nursery, events) as (client, helper):
        client.submit_nowait("hello", {}, done, wake=False)
        client.submit_nowait("hello", {}, done, wake=False)
        client.flush()
        await helper.requests()
        helper.listener.close()  # no coming back
        helper.conn.close()  # gone without an answer
        with trio.fail_after(5):
            while client.connected:
                await trio.sleep(0.01)
        await trio.testing.wait_all_tasks_blocked()
        assert events == ["outcome", "outcome", "delivered"]
        assert all(isinstance(o, HelperGone) for o in outcomes)
        # Away: a request fails at once, in the caller's step.
        client.submit_nowait("hello", {}, done)
        assert isinstance(outcomes[-1], HelperGone) and len(outcomes) == 3
        nursery.cancel_scope.cancel()
