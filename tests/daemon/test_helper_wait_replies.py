"""A step that sent helper requests while no other task was ready waits for their replies in
the same step (HelperClient.wait_replies, Daemon._delivered; issue 9: a wait through trio's
loop is 4 system calls more, 22-35 us each in user-mode Linux). The client against the real
helper on a thread and against a helper played by the test (one that does not answer in time,
one that answers with garbage); the daemon's lone exchange against real daemons."""

import socket
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from kink.daemon.helper_client import HelperClient, HelperGone, Outcome
from kink.engine import StartAction
from kink_privsep import protocol
from kink_privsep.protocol import Event
from tests.daemon.conftest import HostsFactory
from tests.daemon.harness import short_dir, wait_for_a_pair
from tests.daemon.helper_clients import running_client
from tests.daemon.task_steps import StepLog

pytestmark = pytest.mark.trio


def _ignore(_: Event) -> None:
    pass


async def _nothing() -> None:
    pass


async def test_the_replies_of_requests_just_sent_are_delivered_in_the_senders_step() -> None:
    outcomes: list[tuple[Outcome, trio.lowlevel.Task]] = []

    def done(outcome: Outcome) -> None:
        outcomes.append((outcome, trio.lowlevel.current_task()))

    async with running_client() as (_, client):
        await trio.testing.wait_all_tasks_blocked()
        assert not client.wait_replies()  # nothing in flight: no wait
        client.submit_nowait("hello", {}, done, wake=False)
        client.submit_nowait("hello", {}, done, wake=False)
        client.flush()
        this_step = trio.lowlevel.current_task()
        while len(outcomes) < 2:  # one message back, or (rarely) one per reply
            assert client.wait_replies()
        assert [task for _, task in outcomes] == [this_step, this_step]  # no checkpoint
        assert all(isinstance(outcome, dict) for outcome, _ in outcomes)
        assert not client.wait_replies()  # all answered


async def test_requests_not_yet_sent_are_not_waited_for() -> None:
    async with running_client() as (_, client):
        await trio.testing.wait_all_tasks_blocked()
        client.submit_nowait("hello", {}, lambda _: None, wake=False)  # queued, no flush()
        assert not client.wait_replies()
        client.flush()
        await trio.testing.wait_all_tasks_blocked()


async def test_requests_sent_by_the_writer_task_are_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A dump (the writer task sends a call()'s request) can take the helper 10s of ms: a step
    # does not hold the loop for it, nor read for it at all.
    reads: list[int] = []
    real = socket.socket.recv_into

    def counted(sock: socket.socket, *args: Any) -> int:
        reads.append(sock.fileno())
        return real(sock, *args)

    with short_dir() as directory:
        async with trio.open_nursery() as nursery:
            client, _helper = await _played(nursery, str(directory / "helper.sock"), lambda: None)
            client.submit_nowait("hello", {}, lambda _: None)  # wakes the writer task
            await trio.testing.wait_all_tasks_blocked()  # sent, not answered
            monkeypatch.setattr(socket.socket, "recv_into", counted)
            assert not client.wait_replies()
            assert reads == []
            client.submit_nowait("hello", {}, lambda _: None, wake=False)
            client.flush()  # the helper has one in hand: left to the writer task
            assert not client.wait_replies()
            assert reads == []
            nursery.cancel_scope.cancel()


class _PlayedHelper:
    """The helper's side of one connection, in the test's own trio loop: while the client's
    step waits, it cannot answer."""

    def __init__(self, path: str) -> None:
        self.listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.path = path
        self.conn: Any = None

    async def accept(self) -> list[protocol.Request]:
        if self.conn is None:
            await self.listener.bind(self.path)
            self.listener.listen(2)
        self.conn, _ = await self.listener.accept()
        (hello,) = await self.requests()
        await self.conn.send(protocol.encode_reply(hello.id, {"max_batch": 16}))
        return []

    async def requests(self) -> list[protocol.Request]:
        _, requests = protocol.decode_requests(await self.conn.recv(protocol.MAX_MESSAGE))
        return requests  # type: ignore[return-value]


async def _played(
    nursery: trio.Nursery, path: str, on_delivered: Callable[[], None]
) -> tuple[HelperClient, _PlayedHelper]:
    helper = _PlayedHelper(path)
    client = HelperClient(path, _ignore, _nothing, on_delivered)
    nursery.start_soon(client.run)
    await helper.accept()
    await client.ready()
    await trio.testing.wait_all_tasks_blocked()
    return client, helper


async def test_replies_that_do_not_come_in_time_go_to_the_reader_task() -> None:
    outcomes: list[Outcome] = []
    delivered: list[trio.lowlevel.Task] = []
    with short_dir() as directory:
        async with trio.open_nursery() as nursery:
            client, helper = await _played(
                nursery,
                str(directory / "helper.sock"),
                lambda: delivered.append(trio.lowlevel.current_task()),
            )
            delivered.clear()
            client.submit_nowait("hello", {}, outcomes.append, wake=False)
            client.flush()
            assert not client.wait_replies()  # the helper (this loop) could not answer
            assert outcomes == [] and delivered == []
            (request,) = await helper.requests()
            await helper.conn.send(protocol.encode_reply(request.id, {"late": True}))
            with trio.fail_after(5):
                while not outcomes:
                    await trio.sleep(0.001)
            assert outcomes == [{"late": True}]
            assert delivered and delivered[0] is not trio.lowlevel.current_task()  # the reader's
            nursery.cancel_scope.cancel()


async def test_a_bad_message_read_by_the_wait_ends_the_connection() -> None:
    outcomes: list[Outcome] = []
    with short_dir() as directory:
        async with trio.open_nursery() as nursery:
            client, helper = await _played(nursery, str(directory / "helper.sock"), lambda: None)
            client.submit_nowait("hello", {}, outcomes.append, wake=False)
            client.flush()
            await helper.requests()
            await helper.conn.send(b"\xff" * 16)  # not a message of the protocol
            assert not client.wait_replies()
            with trio.fail_after(5):
                while not outcomes:
                    await trio.sleep(0.001)
            # As after the reader's own read of it: what was in flight failed, and the client
            # comes back.
            assert isinstance(outcomes[0], HelperGone)
            with trio.fail_after(5):
                await helper.accept()
                await client.ready()
            assert client.connected
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("one_cpu", [True, False])
async def test_a_lone_create_is_answered_in_the_step_that_delivered_it_on_one_cpu(
    make_hosts: HostsFactory, one_cpu: bool
) -> None:
    """b, the responder, in rekeys (its first exchange installs its policies first, in the
    executor): on one CPU, the CREATE is received, its SAs installed by the helper and the
    REPLY sent (after its save) in one step of the transport's task; with more CPUs the loop
    is not held for the helper (the REPLY leaves in the step that read the helper's replies)."""
    hosts = make_hosts(a={"b": StartAction.NONE}, b={"a": StartAction.NONE})
    a, b = hosts["a"], hosts["b"]
    steps = StepLog()
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        daemon = await b.start(nursery)
        daemon._wait_for_helper = one_cpu  # as Daemon() set it from the CPUs it may use
        await a.request("initiate", peer="b")
        await wait_for_a_pair(a, b)
        steps.watch_responder(daemon)
        await steps.lone_rekeys(a, b)
        await a.stop()
        await b.stop()
    exchanges = steps.exchanges()
    assert len(exchanges) == 3, steps.events
    for between in exchanges:
        assert any(what == "result" for what, _ in between), steps.events
        assert ({step for _, step in between} == {between[0][1]}) is one_cpu, steps.events
