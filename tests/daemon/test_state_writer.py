"""The state writer's thread (kink.daemon.state_writer.WriteThread) keeps nothing of a write
once it is done: a snapshot's children (MBs with 100,000s of them) go as soon as it returns,
not when the idle thread ends or the next write comes (issue 9)."""

import gc
import threading
import weakref

import pytest

from kink.daemon import state_writer
from kink.daemon.state_writer import WriteThread


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
