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
        raise AssertionError("run() is not needed while the socket takes datagrams")

    def try_send(data: bytes, peer: Address) -> bool:
        sent.append(data)
        return True

    outbox = Outbox(send, try_send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.run)
        outbox.post(b"first", PEER, 0)  # nothing before it: sent at once
        one = outbox.begin()
        outbox.post(b"after one", PEER, 0)
        two = outbox.begin()
        outbox.post(b"after two", PEER, 0)
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
        raise AssertionError("run() is not needed while the socket takes datagrams")

    def try_send(data: bytes, peer: Address) -> bool:
        sent.append(data)
        return True

    outbox = Outbox(send, try_send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.run)
        outbox.post(b"reply", PEER, 2)  # follows state generation 2
        call = outbox.begin()
        outbox.post(b"next", PEER, 2)
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


async def test_with_try_send_a_datagram_leaves_from_the_call_that_makes_it_due() -> None:
    sent: list[bytes] = []

    async def send(data: bytes, peer: Address) -> None:
        raise AssertionError("run() is not needed while the socket takes datagrams")

    def try_send(data: bytes, peer: Address) -> bool:
        sent.append(data)
        return True

    outbox = Outbox(send, try_send)  # no run() task: every datagram leaves synchronously
    outbox.post(b"free", PEER, 0)
    call = outbox.begin()
    outbox.post(b"after call", PEER, 1)
    outbox.post(b"also after call", PEER, 0)
    assert sent == [b"free"]
    outbox.end(call)
    assert sent == [b"free"]  # "after call" also waits for generation 1, and the next for it
    outbox.durable(1)
    assert sent == [b"free", b"after call", b"also after call"]


async def test_with_try_send_a_full_queue_leaves_the_rest_to_run_in_order() -> None:
    sent: list[bytes] = []
    room = trio.Event()
    full = [True]

    async def send(data: bytes, peer: Address) -> None:
        await room.wait()  # as Transport.send: waits for room
        full[0] = False
        sent.append(data)

    def try_send(data: bytes, peer: Address) -> bool:
        if full[0]:
            return False
        sent.append(data)
        return True

    outbox = Outbox(send, try_send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.run)
        outbox.post(b"one", PEER, 0)  # the queue is full: held for run()
        call = outbox.begin()
        outbox.post(b"two", PEER, 0)
        outbox.end(call)  # "two" is due, but must not overtake "one"
        outbox.post(b"three", PEER, 0)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == []
        room.set()
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [b"one", b"two", b"three"]
        outbox.post(b"four", PEER, 0)  # room again: sent at once
        assert sent == [b"one", b"two", b"three", b"four"]
        nursery.cancel_scope.cancel()
