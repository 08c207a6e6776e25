"""The state writer (kink.daemon.state_writer): its thread keeps nothing of a write once it is
done (a snapshot's children, MBs with 100,000s of them, go as soon as it returns, not when the
idle thread ends or the next write comes); a small write is done inline only while the loop is
idle; saves asked for at once run one after the other; changes are saved once flushed, or at
once by save_inline, whose failure the writer task takes over (issue 9)."""

import gc
import threading
import weakref

import pytest
import trio
import trio.testing

from kink.daemon import state_writer
from kink.daemon.state_writer import StateWriter, WriteThread


class Children:
    """Stands for what a write saves."""


@pytest.mark.trio
async def test_a_write_done_keeps_nothing_of_what_it_saved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state_writer, "WRITE_THREAD_IDLE", 60.0)
    writer = WriteThread()
    children = Children()
    gone = weakref.ref(children)
    ran: list[threading.Thread] = []

    def write(saved: Children = children) -> None:
        ran.append(threading.current_thread())

    await writer.run(write)
    del write, children
    gc.collect()
    assert ran[0].is_alive()  # the thread waits for the next write...
    assert gone() is None  # ... holding nothing of the last one


@pytest.mark.trio
async def test_a_small_write_is_done_inline_only_while_the_loop_is_idle() -> None:
    # Inline: no thread hand-off before the REPLY of a lone exchange; in the thread as soon
    # as another task is ready to run (it would wait for the fdatasync), and for any write
    # that may be large (a snapshot: children None; a batch of many children).
    writer = WriteThread()
    ran: list[str] = []

    def write() -> None:
        ran.append(threading.current_thread().name)

    await writer.run(write, 1)
    await writer.run(write, state_writer.INLINE_CHILDREN)
    assert ran == [threading.current_thread().name] * 2
    await writer.run(write, state_writer.INLINE_CHILDREN + 1)
    await writer.run(write)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 0)  # ready to run while the write is asked for
        await writer.run(write, 1)
    assert ran[2:] == ["kinkd-state"] * 3

    def fail() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        await writer.run(fail, 1)  # inline or not, the write's error is the caller's


@pytest.mark.trio
async def test_saves_asked_for_at_once_run_one_after_the_other() -> None:
    # save_now from the shutdown while the writer task's save runs: the second waits.
    gate = trio.Event()
    running: list[int] = []
    order: list[str] = []

    async def save() -> None:
        running.append(1)
        assert len(running) == 1
        order.append("start")
        await gate.wait()
        order.append("end")
        running.pop()

    writer = StateWriter(save, lambda generation: None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.save_now)
        nursery.start_soon(writer.save_now)
        await trio.testing.wait_all_tasks_blocked()
        assert order == ["start"]
        gate.set()
    assert order == ["start", "end", "start", "end"]


@pytest.mark.trio
async def test_changes_are_saved_once_flushed_or_at_once_by_save_inline() -> None:
    # flush() hands the changes to the writer task; save_inline() saves them in the caller's
    # step, without a wait (the daemon, after a run of actions: a REPLY leaves in that step),
    # and the writer task is not woken for them afterwards.
    saved_by: list[trio.lowlevel.Task] = []
    made_durable: list[int] = []

    async def save() -> None:
        saved_by.append(trio.lowlevel.current_task())

    def write() -> None:
        saved_by.append(trio.lowlevel.current_task())

    writer = StateWriter(save, made_durable.append)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        await trio.testing.wait_all_tasks_blocked()
        writer.changed()
        assert writer.waited_for
        await trio.testing.wait_all_tasks_blocked()
        assert saved_by == []  # noted, not flushed
        writer.flush()
        await trio.testing.wait_all_tasks_blocked()
        assert len(saved_by) == 1 and saved_by[0] is not trio.lowlevel.current_task()
        assert writer.durable == 1 and not writer.waited_for
        writer.changed()
        writer.changed_lazily()
        writer.save_inline(write)
        assert saved_by[1:] == [trio.lowlevel.current_task()] and writer.durable == 2
        assert made_durable == [1, 2]  # the datagrams held for it go at once
        writer.flush()  # nothing left to hand over
        await trio.testing.wait_all_tasks_blocked()
        assert len(saved_by) == 2
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_failed_save_inline_is_left_to_the_writer_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = [OSError(28, "No space left on device")]
    saved: list[int] = []

    async def save() -> None:
        saved.append(writer.generation)

    def write() -> None:
        raise failures.pop()

    writer = StateWriter(save, lambda generation: None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        writer.changed()
        writer.save_inline(write)  # fails: no exception here, the writer task retries
        assert writer.durable == 0 and saved == []
        assert "cannot save the state file: [Errno 28] No space left on device" in caplog.text
        await trio.testing.wait_all_tasks_blocked()
        assert saved == [1] and writer.durable == 1
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_write_in_the_thread_is_durable_before_its_task_runs_again() -> None:
    # The datagrams held for a write leave in the turn of the loop that learns it ended
    # (StateWriter.written from WriteThread.run), not a turn later when the save's task runs
    # again; a write that failed releases nothing.
    thread = WriteThread()
    events: list[tuple[str, int, str]] = []
    failing: list[OSError] = []

    def write() -> None:
        if failing:
            raise failing.pop()

    async def save() -> None:
        # Many children: the write goes to the thread even with the loop idle.
        await thread.run(write, state_writer.INLINE_CHILDREN + 1, written=writer.written)
        events.append(("resumed", writer.durable, threading.current_thread().name))

    def durable(generation: int) -> None:
        events.append(("durable", generation, threading.current_thread().name))

    here = threading.current_thread().name
    writer = StateWriter(save, durable)
    writer.changed()
    await writer.save_now()
    assert events == [("durable", 1, here), ("resumed", 1, here)]
    writer.changed()
    failing.append(OSError(5, "Input/output error"))
    with pytest.raises(OSError, match="Input/output"):
        await writer.save_now()
    assert events[2:] == [] and writer.durable == 1
