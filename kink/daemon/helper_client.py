"""The daemon's client of kink_privsep: one SOCK_SEQPACKET connection, requests pipelined and
batched, events handed to the daemon as they come, reconnection with back-off.

Batching (kink_privsep.protocol, "Batches"): submit() only queues a request; a writer task
sends what the daemon's tasks queued in one scheduling round as one message (up to the
helper's max_batch), and the helper answers it in one; or, when the helper has nothing in
hand, flush() sends them at once, from a caller that has queued all it had for now (the
daemon, after each run of the engine's actions), a turn of the loop sooner. Why batches:
each message costs a system call and a wake-up of the other process, more than the helper's
work on a request, and an exchange issues its SA actions in bursts (the responder's inbound
and outbound SAs, a rekey's deletes). For the same reason the socket is read and written
directly (each call with MSG_DONTWAIT, trio only waits for it to be ready): every message that
has come is read in one wake-up, and a send that succeeds costs no trip through trio's
scheduler. One read may block: wait_replies(), for a step that has just sent requests while
no other task has anything to do (see there).

Protocol: kink_privsep.protocol (imported, never restated). While the helper is away, calls
wait for it to come back; calls in flight when it went away fail with HelperGone (the helper may
or may not have carried them out: the daemon re-reads the kernel's state with a dump once it is
back, which is what on_reconnect is for). Once give_up() has been called (shutdown), calls no
longer wait: while the helper is away they fail at once with HelperGone.
"""

# Annotations stay strings: trio.TaskStatus only exists from trio 0.23 (Debian 12 has 0.22).
from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from kink.daemon.logs import NOTICE
from kink.daemon.loop_clock import turn_time
from kink_privsep import protocol
from kink_privsep.protocol import Event, Reply

log = logging.getLogger("kinkd.helper")

BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 5.0
READ_BATCH = 64  # messages read per wake-up before the other tasks get a turn
# The time handed to the engine with the replies and events read in one wake-up of the reader
# (HelperClient.arrived) is the one trio read as the loop woke (loop_clock.turn_time: a lone
# reply costs no clock read, a system call in user-mode Linux, issue 9), then a reading every
# CLOCK_EVERY of them: what the engine does for each (a CREATE built after an alloc_spi, a few
# 100 us) leaves it at most a few ms old, well within what its timers (RFC 4430 §9's T,
# lifetimes) measure.
CLOCK_EVERY = 4
# How long wait_replies() may hold the loop for the helper's replies before it leaves them to
# the reader task: a lone request's round trip takes 0.1-0.5 ms (0.5-1 ms in user-mode Linux),
# so only a helper kept from its CPU takes longer, and then the loop's turn the wait saved is
# small beside it. Timers are held up by as much at most: kinkd's measure 100s of ms and more
# (RFC 4430 §9's T, lifetimes).
WAIT_REPLIES = 0.01


class HelperError(Exception):
    """The helper refused a request: `code` is a kink_privsep.protocol.ERR_*."""

    def __init__(self, code: str, reason: str, errno: int | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.errno = errno


class HelperGone(Exception):
    """The connection broke before the reply came."""


Outcome = dict[str, Any] | HelperError | HelperGone  # a call's result, or why there is none
Done = Callable[[Outcome], None]
Part = Callable[[dict[str, Any]], None]  # takes each part of a split reply as it comes


class _Pending:
    """One request in flight: `done` is called (on the trio thread) with its outcome; the
    parts of a split reply are gathered, or handed to `on_part` as they come."""

    __slots__ = ("done", "on_part", "op", "parts")

    def __init__(self, op: str, done: Done, on_part: Part | None = None) -> None:
        self.op = op
        self.done = done
        self.on_part = on_part
        self.parts: dict[str, Any] = {}


def _log_broken(exc: protocol.ProtocolError | OSError) -> None:
    """The line for a connection that a read or a write found broken (it is then taken down
    and made anew)."""
    if isinstance(exc, protocol.ProtocolError):
        log.error("kink-privsep sent a bad message (%s): reconnecting", exc.reason)
    else:
        log.warning("kink-privsep connection: %s", exc.strerror)


def _outcome(reply: Reply) -> Outcome:
    if not reply.ok:
        return HelperError(reply.error, reply.reason, reply.errno)
    return reply.result


class HelperClient:
    """run() owns the connection; call() may be used from any task once run() has started."""

    def __init__(
        self,
        path: str,
        on_event: Callable[[Event], None],
        on_reconnect: Callable[[], Awaitable[None]],
        on_delivered: Callable[[], None] = lambda: None,
    ) -> None:
        self.path = path
        self._on_event = on_event
        self._on_reconnect = on_reconnect
        # Called once the outcomes and events that came in one wake-up of the reader (or that
        # the connection's end failed) have all been delivered, in the same step: the daemon
        # carries out what they led to then (Daemon._delivered), not a turn of the loop later.
        self._on_delivered = on_delivered
        self._sock: socket.socket | None = None
        self._up = trio.Event()
        self._pending: dict[int, _Pending] = {}
        self._next_id = 0
        self._queue: deque[bytes] = deque()  # encoded requests the writer has not sent yet
        self._queued = trio.Event()
        self._max_batch = 1  # requests per message: the helper's hello says how many
        self._given_up = False  # give_up(): no call waits for the helper any more
        self.hello: dict[str, Any] = {}
        self.connects = 0
        # While the replies and events read in one wake-up are delivered: the time for the
        # callbacks to hand to the engine (the loop's reading as it woke, then one every
        # CLOCK_EVERY of them, not one per reply: a system call in user-mode Linux, issue 9);
        # else None.
        self.arrived: float | None = None
        self._buffer = bytearray(protocol.MAX_MESSAGE)  # the reader's and wait_replies()'s
        # Every request in flight went out with the last flush(), which found the helper with
        # none in hand: the round trip of one run's requests, what wait_replies() waits for
        # (not, say, a dump of 1,000s of SAs sent by the writer task, 10s of ms of the
        # helper's work).
        self._flushed = False

    @property
    def connected(self) -> bool:
        return self._sock is not None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, serve, reconnect, forever; started once the first hello is answered."""
        delay = BACKOFF_INITIAL
        started = False
        while True:
            try:
                sock = await self._connect()
            except OSError as exc:
                if delay == BACKOFF_INITIAL or delay >= BACKOFF_MAX:
                    log.warning("cannot reach kink-privsep at %s: %s", self.path, exc.strerror)
                await trio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            delay = BACKOFF_INITIAL
            broken = False  # the connection ended (not our own cancellation)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read, sock, nursery.cancel_scope)
                    nursery.start_soon(self._write, sock, nursery.cancel_scope)
                    self._sock = sock
                    self._max_batch = 1  # until the hello says (an older helper takes none)
                    self._up.set()
                    try:
                        self.hello = await self.call("hello")
                    except (HelperGone, HelperError) as exc:
                        log.warning("kink-privsep hello failed: %s", exc)
                        nursery.cancel_scope.cancel()
                        continue
                    batch = self.hello.get("max_batch", 1)
                    self._max_batch = max(1, min(protocol.MAX_BATCH, int(batch)))
                    self.connects += 1
                    log.log(
                        NOTICE,
                        "connected to kink-privsep (%s backend)",
                        self.hello.get("backend", "?"),
                    )
                    if not started:
                        started = True
                        task_status.started()
                    else:
                        await self._on_reconnect()
                broken = True
            finally:
                self._lost(sock, broken)

    async def _connect(self) -> socket.socket:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            await sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        plain = socket.socket(fileno=sock.detach())
        try:
            # Blocking, with a receive timeout: every read and write but wait_replies()'s
            # passes MSG_DONTWAIT, and that one is then a single system call (a recv that
            # returns the reply or, after WAIT_REPLIES, EAGAIN), where a non-blocking socket
            # would need a poll and, in CPython, a clock read for its timeout (issue 9).
            plain.setblocking(True)
            seconds, fraction = divmod(WAIT_REPLIES, 1)
            timeval = struct.pack("@ll", int(seconds), round(fraction * 1e6))
            plain.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        except BaseException:
            plain.close()
            raise
        return plain

    def _lost(self, sock: socket.socket, broken: bool) -> None:
        if self._sock is sock:
            self._sock = None
            self._up = trio.Event()
            if broken:
                log.warning("lost the connection to kink-privsep")
        sock.close()
        self._queue.clear()
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            waiter.done(HelperGone(waiter.op))
        if pending:
            self._on_delivered()

    async def _read(self, sock: socket.socket, scope: trio.CancelScope) -> None:
        try:
            while self._receive(sock) is not None:
                await trio.lowlevel.wait_readable(sock)
        except (protocol.ProtocolError, OSError) as exc:
            _log_broken(exc)
        scope.cancel()

    def _receive(self, sock: socket.socket, wait: bool = False) -> int | None:
        """Deliver the messages that have come (READ_BATCH at most): how many replies and
        events, or None once the helper has closed the connection. wait: the first read waits
        for a message (WAIT_REPLIES at most, the socket's receive timeout; the time handed on
        with what it brings, `arrived`, is then older by that wait at most, as above)."""
        buffer = self._buffer
        view = memoryview(buffer)
        delivered = 0  # replies and events, in this wake-up
        flags = socket.MSG_TRUNC if wait else socket.MSG_TRUNC | socket.MSG_DONTWAIT
        try:
            for _ in range(READ_BATCH):
                try:
                    size = sock.recv_into(buffer, 0, flags)
                except BlockingIOError:
                    return delivered
                flags = socket.MSG_TRUNC | socket.MSG_DONTWAIT
                if not size:
                    return None
                if size > len(buffer):
                    reason = f"message larger than {len(buffer)} bytes"
                    raise protocol.ProtocolError(protocol.ERR_MALFORMED, reason)
                unsolicited = False
                for msg in protocol.decode_messages(view[:size]):
                    if delivered % CLOCK_EVERY == 0:
                        self.arrived = trio.current_time() if delivered else turn_time()
                    delivered += 1
                    unsolicited = unsolicited or isinstance(msg, Event)
                    self._deliver(msg)
                if not self._pending and not unsolicited:
                    # Every request answered, by the replies of this message: another message
                    # now would be an event, which the kernel rarely has. Wait for epoll to say
                    # one came rather than try a read that finds nothing (a system call per
                    # lone round trip, 22-35 us in user-mode Linux, issue 9). After an event
                    # more may be queued (an ACQUIRE storm): read on.
                    return delivered
        finally:
            self.arrived = None
            if delivered:
                self._on_delivered()
        return delivered

    def _deliver(self, msg: Reply | Event) -> None:
        if isinstance(msg, Event):
            self._on_event(msg)
            return
        waiter = self._pending.get(msg.id) if msg.id is not None else None
        if waiter is None:
            return
        if waiter.on_part is not None and msg.ok:
            waiter.on_part(msg.result)
            if msg.more:
                return
            msg = Reply(msg.id, msg.ok, {})
        elif msg.more:
            protocol.extend_result(waiter.parts, msg.result)
            return
        elif waiter.parts:
            protocol.extend_result(waiter.parts, msg.result)
            msg = Reply(msg.id, msg.ok, waiter.parts)
        del self._pending[msg.id]  # type: ignore[arg-type]
        waiter.done(_outcome(msg))

    async def _write(self, sock: socket.socket, scope: trio.CancelScope) -> None:
        """Send the queued requests, as few messages as the helper's max_batch allows."""
        try:
            while True:
                await self._queued.wait()
                self._queued = trio.Event()
                if self._queue:
                    self._flushed = False
                while not self._send_queued(sock):
                    await trio.lowlevel.wait_writable(sock)
        except OSError as exc:
            _log_broken(exc)
        scope.cancel()

    def _send_queued(self, sock: socket.socket) -> bool:
        """Send the queued requests while the socket takes them: False once it is full. A
        message's requests leave the queue only once it is sent, so whoever sends next (the
        writer task or flush()) starts with them: the helper gets them in the order submitted."""
        queue = self._queue
        while queue:
            taken = self._next()
            try:
                message = taken[0] if len(taken) == 1 else protocol.encode_batch(taken)
                sock.send(message, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            for _ in taken:
                queue.popleft()
        return True

    def _next(self) -> list[bytes]:
        """The oldest queued requests that make the next message (a batch when several)."""
        taken: list[bytes] = []
        size = protocol.BATCH_OVERHEAD
        for request in self._queue:
            size += len(request)
            if taken and (len(taken) == self._max_batch or size > protocol.MAX_BATCH_BYTES):
                break
            taken.append(request)
        return taken

    def flush(self) -> None:
        """Send the queued requests now if the helper has none in hand, rather than at the
        writer task's next turn (it sends what is left, and sees the connection's errors). For
        a caller that has queued all it had for now (the daemon, after each run of the
        engine's actions): an idle helper gets them a turn of the loop sooner, on the path of
        the exchange that waits for them (issue 9). A busy helper would only queue them: then
        the writer task's turn, which may batch more with them, loses nothing. What is left
        queued goes to the writer task (requests submitted with wake=False did not wake it)."""
        if self._sock is not None and len(self._pending) == len(self._queue):
            with contextlib.suppress(OSError):  # the writer task's to see, at its turn
                self._send_queued(self._sock)
            self._flushed = not self._queue
        if self._queue:
            self._queued.set()

    def wait_replies(self) -> bool:
        """Wait, in this step, for the replies to the requests in flight, and deliver them as
        the reader does (on_delivered too): for a caller that has just sent them (flush())
        while no other task is ready to run, so that the loop would only have slept until they
        came (the daemon's lone exchange, Daemon._delivered: its save and REPLY then leave in
        the step that delivered the CREATE). Why: a wait through trio's loop is 4 system calls
        more than the read (epoll_ctl, CPython's clock read for epoll's timeout, epoll_wait,
        trio's clock read), 22-35 us each in user-mode Linux (issue 9). False when nothing came
        within WAIT_REPLIES (the reader task gets the replies then), or when no request is in
        flight, some are still queued or some went out otherwise (the writer task's)."""
        sock = self._sock
        if sock is None or not self._pending or self._queue or not self._flushed:
            return False
        try:
            # None: the helper closed the connection; the reader task sees it too (the end of
            # file stays readable) and fails what is in flight.
            return bool(self._receive(sock, wait=True))
        except (protocol.ProtocolError, OSError) as exc:
            _log_broken(exc)
        # The message read is gone: the reader task reads the end of file instead, fails the
        # requests in flight and reconnects, as after an error of its own read.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        return False

    def give_up(self) -> None:
        """From now on no call waits for the helper: those waiting for it and those made while
        it is away fail at once with HelperGone. Why: at shutdown (SIGTERM) a helper that is
        away may never come back, and kinkd must still stop promptly."""
        self._given_up = True
        self._up.set()  # wakes the calls waiting; while the helper is away it is a fresh Event

    async def submit(
        self,
        op: str,
        args: dict[str, Any],
        done: Done,
        on_part: Part | None = None,
        *,
        wake: bool = True,
    ) -> None:
        """Queue one request (no checkpoint while the helper is up): the writer sends it with
        the others queued meanwhile, and the helper carries them out in turn, in the order
        submitted; `done` gets its outcome later (with on_part: each part of the result goes
        to on_part as it comes, and `done` gets an empty result). Waits for the helper while it
        is away (unless give_up() was called: then `done` gets HelperGone at once).
        wake=False: the caller calls flush() once it has queued what it has for now, and the
        writer task is not woken for the request (issue 9: when flush() sends it, that wake-up
        was a turn of the loop for nothing, one per exchange)."""
        await self.ready()
        self.submit_nowait(op, args, done, on_part, wake=wake)

    async def ready(self) -> None:
        """Return once the helper is up (submit_nowait() then queues), or once give_up() was
        called (submit_nowait() then fails at once)."""
        while self._sock is None and not self._given_up:
            await self._up.wait()

    def submit_nowait(
        self,
        op: str,
        args: dict[str, Any],
        done: Done,
        on_part: Part | None = None,
        *,
        wake: bool = True,
    ) -> None:
        """submit() without a wait, for a caller that saw the helper up (`connected`, or
        ready() just returned): in the step of the task that holds the request (the daemon
        carries an exchange's SA actions out in the step that delivered its datagram, issue 9).
        While the helper is away, `done` gets HelperGone at once."""
        if self._sock is None:
            done(HelperGone(op))
            return
        self._next_id = self._next_id % 0xFFFF_FFFF + 1
        req_id = self._next_id
        self._pending[req_id] = _Pending(op, done, on_part)
        self._queue.append(protocol.encode_request(req_id, op, args))
        if wake:
            self._queued.set()

    async def call(
        self, op: str, args: dict[str, Any] | None = None, on_part: Part | None = None
    ) -> dict[str, Any]:
        """One request: its result; HelperError if refused, HelperGone if the connection broke
        first. Waits for the helper while it is away. on_part: the parts of a split result (a
        dump) go to it as they come, each dropped once read, and the result is empty: a dump
        of 100,000s of SAs gathered whole was the largest peak of kinkd's memory (issue 9)."""
        answered = trio.Event()
        outcome: list[Outcome] = []

        def done(result: Outcome) -> None:
            outcome.append(result)
            answered.set()

        await self.submit(op, args or {}, done, on_part)
        await answered.wait()
        result = outcome[0]
        if isinstance(result, HelperError | HelperGone):
            raise result
        return result

    async def call_all(self, requests: Sequence[tuple[str, dict[str, Any]]]) -> list[Outcome]:
        """Several requests pipelined (all sent before the first answer is awaited: a
        round trip per request is what made thousands of policy installs slow); their
        outcomes, in order. A checkpoint after each batch's worth lets the writer send it while
        the rest are encoded: the helper carries out the first while kinkd encodes the others
        (issue 9: 10,000s of policies at start-up)."""
        outcomes: list[Outcome | None] = [None] * len(requests)
        left = len(requests)
        answered = trio.Event()

        def done_for(index: int) -> Done:
            def done(result: Outcome) -> None:
                nonlocal left
                outcomes[index] = result
                left -= 1
                if not left:
                    answered.set()

            return done

        for index, (op, args) in enumerate(requests):
            await self.submit(op, args, done_for(index))
            if index % protocol.MAX_BATCH == protocol.MAX_BATCH - 1:
                await trio.lowlevel.checkpoint()
        if left:
            await answered.wait()
        return [outcome for outcome in outcomes if outcome is not None]
