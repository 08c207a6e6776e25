"""HelperClient's reads of the helper's socket: once every request in flight is answered the
reader waits for epoll instead of trying a read that finds nothing (issue 9: a system call per
lone round trip in user-mode Linux); an event that comes later is still read and delivered."""

import socket
from collections.abc import Iterator

import pytest
import trio

from kink.daemon.helper_client import HelperClient
from kink_privsep import protocol
from kink_privsep.protocol import Event
from tests.daemon.helper_clients import running_client
from tests.privsep.harness import thread_helper

pytestmark = pytest.mark.trio


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The file descriptor of every recv_into of a socket of this process, as it happens."""
    seen: list[int] = []
    real = socket.socket.recv_into

    def counted(sock: socket.socket, *args: object) -> int:
        seen.append(sock.fileno())
        return real(sock, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "recv_into", counted)
    yield seen


def _fd(client: HelperClient) -> int:
    sock = client._sock
    assert sock is not None
    return sock.fileno()


async def test_a_lone_round_trip_reads_the_socket_once(reads: list[int]) -> None:
    async with running_client() as (_, client):
        await trio.testing.wait_all_tasks_blocked()
        reads.clear()
        await client.call("hello")
        await trio.testing.wait_all_tasks_blocked()
        assert reads.count(_fd(client)) == 1  # the reply; no read that would find nothing


async def test_an_event_after_every_reply_is_still_delivered() -> None:
    # The reader went back to epoll with nothing in flight: what comes later wakes it.
    events: list[Event] = []
    arrived = trio.Event()

    def on_event(event: Event) -> None:
        events.append(event)
        if len(events) == 2:
            arrived.set()

    async def nothing() -> None:
        pass

    with thread_helper() as helper:
        client = HelperClient(helper.path, on_event, nothing)
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            await client.call("hello")
            await trio.testing.wait_all_tasks_blocked()
            helper.backend.kernel_lose_events()
            helper.backend.kernel_lose_events()
            with trio.fail_after(10):
                await arrived.wait()
            nursery.cancel_scope.cancel()
    assert [e.kind for e in events] == [protocol.EVENT_EVENTS_LOST] * 2
