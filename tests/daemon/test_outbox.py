"""The outbox (kink.daemon.outbox): a datagram leaves once the state generation it waits for is
on disk, each for its own (not behind the datagrams posted before it), a retransmission with the
datagram it repeats; a datagram that may leave goes at once, run() only for a full queue."""

import pytest
import trio
import trio.testing

from kink.daemon.outbox import Outbox
from kink.engine.events import Address

pytestmark = pytest.mark.trio

PEER: Address = ("192.0.2.9", 910)
OTHER: Address = ("192.0.2.10", 910)


def taking(sent: list[bytes]) -> Outbox:
    """An outbox whose socket takes every datagram (run() is never needed)."""

    async def send(data: bytes, peer: Address) -> None:
        raise AssertionError("run() is not needed while the socket takes datagrams")

    def try_send(data: bytes, peer: Address) -> bool:
        sent.append(data)
        return True

    return Outbox(send, try_send)


async def test_a_datagram_without_a_save_leaves_at_once_even_behind_held_ones() -> None:
    sent: list[bytes] = []
    outbox = taking(sent)
    outbox.post(b"reply", PEER, 2)  # waits for the save of generation 2
    outbox.post(b"create", OTHER, 0)  # another exchange's, needing no save: not behind it
    outbox.post(b"status", OTHER)
    assert sent == [b"create", b"status"]
    outbox.durable(1)
    assert sent == [b"create", b"status"]
    outbox.durable(2)
    assert sent == [b"create", b"status", b"reply"]
    outbox.post(b"saved already", PEER, 2)  # its generation is on disk: at once
    assert sent[-1] == b"saved already"


async def test_each_held_datagram_leaves_with_the_save_of_its_own_generation() -> None:
    sent: list[bytes] = []
    outbox = taking(sent)
    outbox.post(b"later change", PEER, 3)
    outbox.post(b"earlier change", OTHER, 1)  # posted after, its change saved first
    outbox.post(b"middle", OTHER, 2)
    outbox.durable(1)
    assert sent == [b"earlier change"]  # not held behind "later change"
    outbox.durable(3)  # one write covered both remaining generations
    assert sent == [b"earlier change", b"middle", b"later change"]
    outbox.durable(2)  # an older generation reported late changes nothing
    assert sent == [b"earlier change", b"middle", b"later change"]


async def test_a_retransmission_waits_with_the_held_datagram_it_repeats() -> None:
    sent: list[bytes] = []
    outbox = taking(sent)
    outbox.post(b"reply", PEER, 1)
    outbox.post(b"other", OTHER, 2)
    outbox.post(b"reply", PEER, 0)  # the engine's reply cache sends the same REPLY again
    assert sent == []
    outbox.durable(1)
    assert sent == [b"reply", b"reply"]
    outbox.post(b"reply", PEER, 0)  # the first has left, its save done: at once
    assert sent == [b"reply", b"reply", b"reply"]
    outbox.durable(2)
    assert sent == [b"reply", b"reply", b"reply", b"other"]


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
        outbox.post(b"one", PEER, 0)  # the queue is full: left to run()
        outbox.post(b"two", PEER, 1)
        outbox.durable(1)  # "two" may leave, but must not overtake "one"
        outbox.post(b"three", PEER, 0)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == []
        room.set()
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [b"one", b"two", b"three"]
        outbox.post(b"four", PEER, 0)  # room again: sent at once
        assert sent == [b"one", b"two", b"three", b"four"]
        nursery.cancel_scope.cancel()
