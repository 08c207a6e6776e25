"""Coalesced, write-ahead saving of the state file (kink.daemon.state).

Every change to what the state file holds bumps a generation (changed()); one writer task saves
whatever the state is when it starts a write and then marks every generation up to the one it
saw as durable. Changes made while a write runs are all covered by the next write: under load
there is one write + fsync per write time, not one per exchange.

Write-ahead (issue 10, RFC 4430 §3.2): a datagram on which the peer installs SAs (the
responder's REPLY after its install, an ACK) waits until the change it commits us to is durable,
and only that: the generation in which that change was noted (kink.daemon.outbox, the runner's
_write_ahead says which datagrams have one), so a kinkd killed at any point either replied and
can take its SAs back after a restart, or did not reply and deletes the SAs its state file does
not account for (Daemon start-up).
"""

# Annotations stay strings: trio.TaskStatus only exists from trio 0.23 (Debian 12 has 0.22).
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Awaitable, Callable

import trio

from kink.daemon.loop_clock import tasks_runnable

log = logging.getLogger("kinkd")


LAZY_DELAY = 1.0  # seconds a change no datagram waits for may stay unsaved
WRITE_THREAD_IDLE = 10.0  # seconds the write thread waits for work before it ends
# A write of at most this many children (a batch of ~1.1 KB a child; fdatasync ~0.2 ms on
# this class of disk) may be done on the trio thread when the loop is idle (WriteThread).
INLINE_CHILDREN = 16


def writes_inline(children: int | None) -> bool:
    """Whether a write of `children` children (None: any number, a snapshot) is done on the
    trio thread: a small batch while no other task is ready to run in this turn of the loop
    (loop_clock.tasks_runnable, without the clock read of trio's statistics). The one rule of
    WriteThread.run and of the daemon's save in the step that carried out the actions."""
    return children is not None and children <= INLINE_CHILDREN and not tasks_runnable()


class StateWriter:
    """StateWriter(save, on_durable); run() as a task; changed() after every change that a
    datagram may have to wait for, changed_lazily() after the others; flush() once the changes
    at hand are noted (they are saved from then on). save() may call written() as soon as its
    write is durable (else its return says so).

    Why changed() does not wake the writer task itself: the daemon notes its changes while it
    carries out a run of the engine's actions and flushes at the end of the run. When a
    datagram waits for them and the loop has nothing else to do, the daemon saves them then
    and there (save_inline, on the trio thread) instead of flushing: a REPLY of a lone exchange
    then leaves in that turn of the loop, not one turn later, when a woken writer task would
    have run (issue 9: a turn is an epoll_wait and two clock reads, system calls each in
    user-mode Linux). A woken writer task would also have been a task ready to run, which
    made the loop look busy and sent the write to the thread.
    """

    def __init__(
        self, save: Callable[[], Awaitable[None]], on_durable: Callable[[int], None]
    ) -> None:
        self._save = save  # reads the current state on the trio thread, writes it, fsyncs
        self._on_durable = on_durable
        self.generation = 0  # changes so far that datagrams may wait for
        self.durable = 0  # the generation the file on disk reflects
        self._lazy = 0  # lazy changes so far
        self._lazy_saved = 0  # those the file on disk reflects
        self._saving = 0  # the generation of the write running (save_now), for written()
        self._flushed = (0, 0)  # (generation, lazy changes) handed to the writer task
        self._lock = trio.Lock()
        self._dirty = trio.Event()  # a change datagrams wait for, flushed
        self._pending = trio.Event()  # any change, flushed

    def changed(self) -> int:
        """Note a change; its generation (durable once self.durable reaches it, after flush()
        or save_now())."""
        self.generation += 1
        return self.generation

    def changed_lazily(self) -> None:
        """Note a change that may wait LAZY_DELAY for its write (a child gone: a restart that
        finds it in the file no longer finds its SAs, and does not take it over)."""
        self._lazy += 1

    @property
    def waited_for(self) -> bool:
        """Whether a change that datagrams may wait for is unsaved while no write runs."""
        return self.generation > self.durable and not self._lock.locked()

    def flush(self) -> None:
        """Hand the changes noted so far to the writer task, which saves them at its turn."""
        generation, lazy = self._flushed
        if self.generation > generation:
            self._dirty.set()
            self._pending.set()
        elif self._lazy > lazy:
            self._pending.set()
        self._flushed = (self.generation, self._lazy)

    def save_inline(self, write: Callable[[], None]) -> None:
        """Save the changes noted so far now with `write` (reads the current state and writes
        it, fsynced, on the trio thread: a small batch while the loop is idle), in the caller's
        step, instead of flush(); only while no write runs (waited_for). Without a wait, the
        daemon saves in the step that carried out the actions whose datagram waits for it (a
        REPLY leaves in the step that got the helper's reply, issue 9). A write that fails is
        logged and left to the writer task (flush()), which retries it as its own (a datagram
        waiting for it stays held meanwhile)."""
        assert not self._lock.locked(), "a write is running"
        generation, lazy = self.generation, self._lazy
        try:
            write()
        except OSError as exc:
            log.error("cannot save the state file: %s", exc)
            self.flush()
            return
        self._saving = generation
        self._saved(lazy)

    async def run(self) -> None:
        """Save whenever something changed since the last write began (one write at a time)."""
        while True:
            await self._pending.wait()
            if not self._dirty.is_set():
                with trio.move_on_after(LAZY_DELAY):
                    await self._dirty.wait()
            self._pending = trio.Event()
            self._dirty = trio.Event()
            if self.generation == self.durable and self._lazy == self._lazy_saved:
                continue  # saved meanwhile (save_now)
            try:
                await self.save_now()
            except OSError as exc:
                # The file keeps its last good content and the datagrams waiting for this
                # write stay held (outbox): retried on the next change or after a pause.
                log.error("cannot save the state file: %s", exc)
                await trio.sleep(1.0)
                self._dirty.set()
                self._pending.set()

    async def save_now(self) -> None:
        """Write the current state now (start-up, shutdown, the writer task, the daemon after
        a run of the engine's actions)."""
        # The lock taken without a checkpoint when it is free: Lock.acquire yields a turn of
        # the loop even then, a turn more before every REPLY that waits for this write (issue 9).
        try:
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            await self._lock.acquire()
        try:
            generation, lazy = self.generation, self._lazy
            self._saving = generation
            await self._save()
            self._saved(lazy)
        finally:
            self._lock.release()

    def _saved(self, lazy: int) -> None:
        """The write of generation self._saving and `lazy` lazy changes ended well."""
        self.written()  # if the save did not say so itself
        self._lazy_saved = max(self._lazy_saved, lazy)
        flushed = self._flushed  # saved: no need to hand them to the writer task
        self._flushed = (max(flushed[0], self._saving), max(flushed[1], lazy))

    def written(self) -> None:
        """The write of the save running (save_now) is durable: the datagrams that wait for
        its generation leave now. For the save callback to call as soon as the loop learns it
        (WriteThread.run's `written`), rather than when save_now's task runs again: a turn of
        the loop later, and under load each turn holds a slice of the transport's deliveries
        (up to kink.daemon.transport.SLICE), which every held REPLY waited for (issue 9)."""
        generation = self._saving
        if generation > self.durable:
            self.durable = generation
            self._on_durable(generation)


# A job: the write, and what hands its outcome (None or what it raised) to its task.
_Job = tuple[Callable[[], None], Callable[[BaseException | None], None]]


class WriteThread:
    """One long-lived thread for the state file's writes (WriteThread().run(write)), and the
    trio thread itself for a small write while the loop has nothing else to do.

    A write and its fdatasync block, so under load they leave the trio thread: the loop goes
    on with other exchanges meanwhile. trio.to_thread.run_sync per save cost the trio thread
    more than a save's own encoding (a capacity limiter, a context copy, naming the worker
    thread with two prctl calls each time) on a path every REPLY waits on (issue 9). Here a
    job is a queue put and its end one run_sync_soon. The thread ends after WRITE_THREAD_IDLE
    seconds without work (a daemon stopped and started again in one process leaves none
    behind) and starts again with the next write.

    The hand-off has a price a lone exchange pays whole: a futex wake of the thread, the
    wake-up socket written by it and read by the loop, and three more turns of the loop (in
    user-mode Linux each turn's two clock reads are system calls too): 14 of the 36 system
    calls between a lone CREATE and its REPLY (strace of the responder), and a thread
    wake-up on a host that makes every wake-up dear (issue 9). So a small write (a batch of
    at most INLINE_CHILDREN children) is done on the trio thread when no other task was made
    ready in this turn of the loop (trio's tasks_runnable): then nothing is known to wait
    behind its fdatasync; under load there is, and the write goes to the thread. The
    durability contract is the same either way: run() returns once write() has (an
    fdatasync'd write) or raises what it raised.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()  # _running and the queue's emptiness agree under it
        self._running = False

    async def run(
        self,
        write: Callable[[], None],
        children: int | None = None,
        *,
        written: Callable[[], None] | None = None,
    ) -> None:
        """write(), which saves `children` children (None: any number, a snapshot), in the
        thread, or inline when it is small and the loop idle (writes_inline); returns once it
        returned (or raises what it raised). Not cancellable: a write once begun is waited
        for, as a datagram may wait for it.
        `written`: called on the trio thread once write() has returned, as soon as the loop
        learns it (in the same turn, before this task runs again: StateWriter.written); not
        if write() raised."""
        if writes_inline(children):
            write()
            if written is not None:
                written()
            return
        token = trio.lowlevel.current_trio_token()
        task = trio.lowlevel.current_task()
        failed: list[BaseException] = []

        def finish() -> None:  # on the trio thread, in the turn that learns the write ended
            if written is not None and not failed:
                try:
                    written()
                except BaseException as exc:  # raised in the task: not in trio's own task
                    failed.append(exc)
            trio.lowlevel.reschedule(task)

        def done(exc: BaseException | None) -> None:  # in the thread
            if exc is not None:
                failed.append(exc)  # handed to the trio task, raised there
            token.run_sync_soon(finish)

        with self._lock:
            self._jobs.put((write, done))
            if not self._running:
                self._running = True
                threading.Thread(target=self._work, name="kinkd-state", daemon=True).start()
        await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        if failed:
            raise failed[0]

    def _work(self) -> None:
        while True:
            try:
                write, done = self._jobs.get(timeout=WRITE_THREAD_IDLE)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():
                        self._running = False
                        return
                continue
            exc: BaseException | None = None
            try:
                write()
            except BaseException as error:
                exc = error
            # Dropped before the task goes on, not kept while the thread waits for the next
            # job: a write holds what it saved (every child at a snapshot: MBs with 100,000s
            # of children, issue 9).
            del write
            done(exc)
            del done, exc
