"""The state writer (kink.daemon.state_writer): its thread keeps nothing of a write once it is
done (a snapshot's children, MBs with 100,000s of them, go as soon as it returns, not when the
idle thread ends or the next write comes); a small write is done inline only while the loop is
idle; saves asked for at once run one after the other (issue 9)."""

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
