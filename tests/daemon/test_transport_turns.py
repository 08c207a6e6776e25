"""Where kinkd's UDP transport (kink.daemon.transport) calls delivered() among its reads: after the
first datagram of a turn woken by epoll, before the read that looks for more (issue 9: a lone
CREATE's helper request and a lone REPLY's answer then leave without waiting for the read that
finds the queue empty, a system call in user-mode Linux); the others of the turn together, once
the queue is empty."""

import socket
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from kink.daemon.transport import Transport, open_sockets
from kink.engine.events import Address

pytestmark = pytest.mark.trio


class NotedSocket(socket.socket):
    """A socket that notes each of its reads in `events` ("read", or "empty" for EAGAIN)."""

    events: list[str]

    def recvfrom_into(self, *args: object, **kwargs: object) -> tuple[int, object]:
        try:
            got = super().recvfrom_into(*args, **kwargs)  # type: ignore[arg-type]
        except BlockingIOError:
            self.events.append("empty")
            raise
        self.events.append("read")
        return got


@pytest.fixture
def noted() -> Iterator[NotedSocket]:
    (plain,) = open_sockets(["127.0.0.1"], 0)
    sock = NotedSocket(plain.family, plain.type, fileno=plain.detach())
    sock.events = []
    with sock:
        yield sock


async def _serve(noted: NotedSocket, datagrams: int, count: int) -> list[str]:
    """Send `datagrams` at once, serve until `count` were delivered and the transport waits
    again; the reads, deliveries and delivered() calls in order."""
    transport = Transport([noted], "127.0.0.1")
    events = noted.events

    def deliver(data: bytes, address: Address) -> None:
        events.append("deliver")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport.serve, deliver, lambda: events.append("delivered"))
        await trio.testing.wait_all_tasks_blocked()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for i in range(datagrams):
                sender.sendto(bytes([i]), noted.getsockname())
        while events.count("deliver") < count:
            await trio.testing.wait_all_tasks_blocked()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    return events


async def test_a_lone_datagram_is_carried_out_before_the_read_that_finds_nothing(
    noted: NotedSocket,
) -> None:
    events = await _serve(noted, 1, 1)
    assert events == ["read", "deliver", "delivered", "empty"]


async def test_datagrams_queued_together_are_carried_out_first_alone_then_together(
    noted: NotedSocket,
) -> None:
    events = await _serve(noted, 3, 3)
    assert events == [
        *("read", "deliver", "delivered"),
        *("read", "deliver", "read", "deliver", "empty", "delivered"),
    ]
