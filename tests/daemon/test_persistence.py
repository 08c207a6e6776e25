"""What makes a kinkd killed mid-CREATE leave both directions or none (issue 10): the REPLYs of
young responder children saved with them, coalesced write-ahead saving and the outbox that
holds a datagram until the change it commits us to is saved. The state file itself:
test_state_file."""

import threading

import pytest
import trio
import trio.testing

from kink.daemon import state_writer
from kink.daemon.answers import Answers, asks_ack
from kink.daemon.outbox import Outbox
from kink.daemon.state import (
    SavedAnswer,
    SavedChild,
)
from kink.daemon.state_writer import LAZY_DELAY, StateWriter, WriteThread
from kink.engine.events import Address
from kink.wire.constants import ACKREQ_FLAG, MessageType
from kink.wire.header import HEADER
from tests.daemon.saved import OTHER, PAIR, record

PEER: Address = ("192.0.2.2", 910)


def datagram(kind: MessageType, xid: int, *, ackreq: bool = False) -> bytes:
    flags = ACKREQ_FLAG if ackreq else 0
    return HEADER.pack(kind, 0x10, HEADER.size + 8, 1, xid, 0, flags, 0) + b"payload!"


# -------------------------------------------------------------------------------- answers


def test_a_two_way_reply_is_kept_with_its_child_and_replayed_after_a_restart() -> None:
    answers = Answers(lifetime=60.0)
    answers.received(datagram(MessageType.CREATE, 5), PEER[0])
    answers.established(7)
    reply = datagram(MessageType.REPLY, 5)
    assert answers.sent(reply, PEER)
    kept = SavedAnswer(PEER, 5, reply, 160.0)  # kept lifetime from the save that has it
    assert answers.take(now=100.0) == {7: kept}
    assert answers.take(now=101.0) == {}  # handed to the state file once

    clock = [102.0]
    restarted = Answers(lifetime=60.0, clock=lambda: clock[0])
    restarted.restore([SavedChild(record(0x1001, 0x2002), PAIR, kept)], {PAIR: 3})
    assert restarted.replay(datagram(MessageType.CREATE, 5), PEER[0]) == kept
    assert restarted.replay(datagram(MessageType.CREATE, 6), PEER[0]) is None
    assert restarted.replay(datagram(MessageType.DELETE, 5), PEER[0]) is None
    assert restarted.replay(datagram(MessageType.CREATE, 5), "192.0.2.9") is None
    assert restarted.take(now=102.0) == {3: kept}  # saved again by the next kinkd
    clock[0] = 161.0
    assert restarted.replay(datagram(MessageType.CREATE, 5), PEER[0]) is None


def test_a_restored_answer_expired_before_the_save_is_left_out() -> None:
    restarted = Answers(lifetime=60.0)
    kept = SavedAnswer(PEER, 5, datagram(MessageType.REPLY, 5), 160.0)
    restarted.restore([SavedChild(record(0x1001, 0x2002), PAIR, kept)], {PAIR: 3})
    assert restarted.take(now=160.0) == {}


def test_the_wall_clock_is_read_only_to_replay_a_saved_answer() -> None:
    reads: list[None] = []

    def clock() -> float:
        reads.append(None)
        return 100.0

    answers = Answers(lifetime=60.0, clock=clock)
    answers.received(datagram(MessageType.CREATE, 5), PEER[0])
    assert answers.replay(datagram(MessageType.CREATE, 5), PEER[0]) is None
    answers.established(7)
    assert answers.sent(datagram(MessageType.REPLY, 5), PEER)
    assert not reads
    kept = SavedAnswer(PEER, 5, datagram(MessageType.REPLY, 5), 160.0)
    answers.restore([SavedChild(record(0x1001, 0x2002), PAIR, kept)], {PAIR: 3})
    assert answers.replay(datagram(MessageType.CREATE, 6), PEER[0]) is None
    assert not reads
    assert answers.replay(datagram(MessageType.CREATE, 5), PEER[0]) == kept
    assert len(reads) == 1


def test_no_answer_is_kept_for_three_way_refusals_or_strangers() -> None:
    answers = Answers(lifetime=60.0)
    answers.received(datagram(MessageType.CREATE, 1), PEER[0])
    answers.established(7)
    assert not answers.sent(datagram(MessageType.REPLY, 1, ackreq=True), PEER)
    answers.received(datagram(MessageType.CREATE, 2), PEER[0])
    assert not answers.sent(datagram(MessageType.REPLY, 2), PEER)  # nothing installed
    answers.established(7)
    assert not answers.sent(datagram(MessageType.REPLY, 3), PEER)  # no such CREATE
    answers.received(b"\x01short", PEER[0])
    assert not answers.sent(b"\x03", PEER)
    assert answers.take(now=0.0) == {}


def test_only_a_reply_with_ackreq_asks_for_an_ack() -> None:
    assert asks_ack(datagram(MessageType.REPLY, 1, ackreq=True))
    assert not asks_ack(datagram(MessageType.REPLY, 1))
    assert not asks_ack(datagram(MessageType.CREATE, 1))
    assert not asks_ack(b"\x03")


def test_an_answer_is_replayed_only_if_every_child_it_made_was_taken_over() -> None:
    answer = SavedAnswer(PEER, 5, b"reply", 100.0)
    children = [
        SavedChild(record(0x1001, 0x2002), PAIR, answer),
        SavedChild(record(0x3003, 0x4004), OTHER, answer),
    ]
    answers = Answers(lifetime=60.0, clock=lambda: 0.0)
    answers.restore(children, {PAIR: 3})
    assert answers.replay(datagram(MessageType.CREATE, 5), PEER[0]) is None
    assert answers.take(now=0.0) == {}


# ------------------------------------------------------------------------- state writer


@pytest.mark.trio
async def test_changes_made_during_a_write_share_the_next_write() -> None:
    gate = trio.Event()
    writes: list[int] = []
    durable: list[int] = []

    async def save() -> None:
        writes.append(writer.generation)
        await gate.wait()

    writer = StateWriter(save, durable.append)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        writer.changed()
        writer.flush()
        await trio.testing.wait_all_tasks_blocked()
        assert writes == [1]  # the first write is running
        for _ in range(50):
            writer.changed()
        writer.flush()
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert writes == [1, 51] and durable == [1, 51] and writer.durable == 51
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_write_runs_in_the_write_thread_and_is_waited_for_even_when_cancelled() -> None:
    writer = WriteThread()
    ran: list[str] = []
    release = threading.Event()

    def write() -> None:
        release.wait()
        ran.append(threading.current_thread().name)

    with trio.CancelScope() as scope:
        scope.cancel()  # cancelled before it starts: the write is done all the same
        release.set()
        await writer.run(write)
    assert ran == ["kinkd-state"]

    def fail() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        await writer.run(fail)
    await writer.run(write)
    assert ran == ["kinkd-state", "kinkd-state"]


@pytest.mark.trio
async def test_the_write_thread_ends_when_idle_and_starts_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state_writer, "WRITE_THREAD_IDLE", 0.01)
    writer = WriteThread()
    threads: list[threading.Thread] = []
    await writer.run(lambda: threads.append(threading.current_thread()))
    threads[0].join()  # ended once idle
    await writer.run(lambda: threads.append(threading.current_thread()))
    assert threads[1] is not threads[0] and threads[1].name == "kinkd-state"
    threads[1].join()


# -------------------------------------------------------------------------------- outbox


@pytest.mark.trio
async def test_a_datagram_waits_for_the_save_of_its_own_change_only() -> None:
    sent: list[bytes] = []

    async def send(data: bytes, peer: Address) -> None:
        raise AssertionError("run() is not needed while the socket takes datagrams")

    def try_send(data: bytes, peer: Address) -> bool:
        sent.append(data)
        return True

    outbox = Outbox(send, try_send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.run)
        outbox.post(b"free", PEER, 0)
        outbox.post(b"after-change", PEER, 1)
        outbox.post(b"also-free", PEER, 0)  # commits us to nothing: not behind the other
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [b"free", b"also-free"]
        outbox.durable(1)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [b"free", b"also-free", b"after-change"]
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_lazy_change_is_saved_within_the_delay_or_with_the_next_change() -> None:
    saved_at: list[float] = []

    async def save() -> None:
        saved_at.append(trio.current_time())

    writer = StateWriter(save, lambda generation: None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        began = trio.current_time()
        writer.changed_lazily()
        writer.flush()
        with trio.fail_after(LAZY_DELAY * 3):
            while not saved_at:
                await trio.sleep(LAZY_DELAY / 10)
        assert saved_at[0] - began >= LAZY_DELAY
        writer.changed_lazily()
        writer.changed()  # a change a datagram waits for takes the lazy one along at once
        writer.flush()
        await trio.testing.wait_all_tasks_blocked()
        assert len(saved_at) == 2 and saved_at[1] - saved_at[0] < LAZY_DELAY
        nursery.cancel_scope.cancel()
