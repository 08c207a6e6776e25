"""The outbox (kink.daemon.outbox): a datagram leaves once the helper calls issued before it are
answered and the state it follows is saved, in the order the datagrams were emitted."""

import pytest
import trio
import trio.testing

from kink.daemon.outbox import Outbox
from kink.engine.events import Address

pytestmark = pytest.mark.trio

PEER: Address = ("192.0.2.9", 910)


async def test_datagrams_wait_for_the_calls_before_them_and_keep_their_order() -> None:
    sent: list[bytes] = []

    async def send(data: bytes, peer: Address) -> None:
        sent.append(data)

    outbox = Outbox(send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.run)
        await outbox.post(b"first", PEER, 0)  # nothing before it: sent at once
        one = outbox.begin()
        await outbox.post(b"after one", PEER, 0)
        two = outbox.begin()
        await outbox.post(b"after two", PEER, 0)
        assert sent == [b"first"]
        outbox.end(two)  # the later call first: both datagrams still wait for `one`
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [b"first"]
        outbox.end(one)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [b"first", b"after one", b"after two"]
        nursery.cancel_scope.cancel()


async def test_datagrams_wait_for_the_state_they_follow() -> None:
    sent: list[bytes] = []

    async def send(data: bytes, peer: Address) -> None:
        sent.append(data)

    outbox = Outbox(send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.run)
        await outbox.post(b"reply", PEER, 2)  # follows state generation 2
        call = outbox.begin()
        await outbox.post(b"next", PEER, 2)
        outbox.durable(1)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == []
        outbox.durable(2)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [b"reply"]  # "next" waits for the call issued before it
        outbox.end(call)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [b"reply", b"next"]
        nursery.cancel_scope.cancel()
