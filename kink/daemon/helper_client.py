"""The daemon's client of kink_privsep: one SOCK_SEQPACKET connection, requests pipelined,
events handed to the daemon as they come, reconnection with back-off.

Protocol: kink_privsep.protocol (imported, never restated). While the helper is away, calls
wait for it to come back; calls in flight when it went away fail with HelperGone (the helper may
or may not have carried them out: the daemon re-reads the kernel's state with a dump once it is
back, which is what on_reconnect is for).
"""

# Annotations stay strings: trio.TaskStatus only exists from trio 0.23 (Debian 12 has 0.22).
from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from kink.daemon.logs import NOTICE
from kink_privsep import protocol
from kink_privsep.protocol import Event, Reply

log = logging.getLogger("kinkd.helper")

BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 5.0


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


class _Pending:
    """One request in flight: `done` is called (on the trio thread) with its outcome."""

    __slots__ = ("done", "op", "parts")

    def __init__(self, op: str, done: Done) -> None:
        self.op = op
        self.done = done
        self.parts: dict[str, Any] = {}


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
    ) -> None:
        self.path = path
        self._on_event = on_event
        self._on_reconnect = on_reconnect
        self._sock: trio.socket.SocketType | None = None
        self._up = trio.Event()
        self._pending: dict[int, _Pending] = {}
        self._next_id = 0
        self._send_lock = trio.Lock()
        self.hello: dict[str, Any] = {}
        self.connects = 0

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
                    self._sock = sock
                    self._up.set()
                    try:
                        self.hello = await self.call("hello")
                    except (HelperGone, HelperError) as exc:
                        log.warning("kink-privsep hello failed: %s", exc)
                        nursery.cancel_scope.cancel()
                        continue
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

    async def _connect(self) -> trio.socket.SocketType:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            await sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        return sock

    def _lost(self, sock: trio.socket.SocketType, broken: bool) -> None:
        if self._sock is sock:
            self._sock = None
            self._up = trio.Event()
            if broken:
                log.warning("lost the connection to kink-privsep")
        sock.close()
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            waiter.done(HelperGone(waiter.op))

    async def _read(self, sock: trio.socket.SocketType, scope: trio.CancelScope) -> None:
        try:
            while True:
                data = await sock.recv(protocol.MAX_MESSAGE)
                if not data:
                    break
                try:
                    msg = protocol.decode_message(data)
                except protocol.ProtocolError as exc:
                    log.error("kink-privsep sent a bad message (%s): reconnecting", exc.reason)
                    break
                if isinstance(msg, Event):
                    self._on_event(msg)
                    continue
                waiter = self._pending.get(msg.id) if msg.id is not None else None
                if waiter is None:
                    continue
                if msg.more:
                    protocol.extend_result(waiter.parts, msg.result)
                    continue
                if waiter.parts:
                    protocol.extend_result(waiter.parts, msg.result)
                    msg = Reply(msg.id, msg.ok, waiter.parts)
                del self._pending[msg.id]  # type: ignore[arg-type]
                waiter.done(_outcome(msg))
        except OSError as exc:
            log.warning("kink-privsep connection: %s", exc.strerror)
        scope.cancel()

    async def submit(self, op: str, args: dict[str, Any], done: Done) -> None:
        """Send one request and return once it is written (requests reach the helper, which
        carries them out in turn, in the order submitted); `done` gets its outcome later.
        Waits for the helper while it is away."""
        while self._sock is None:
            await self._up.wait()
        sock = self._sock
        self._next_id = self._next_id % 0xFFFF_FFFF + 1
        req_id = self._next_id
        self._pending[req_id] = _Pending(op, done)
        try:
            async with self._send_lock:
                await sock.send(protocol.encode_request(req_id, op, args))
        except OSError:
            self._pending.pop(req_id, None)
            done(HelperGone(op))

    async def call(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request: its result; HelperError if refused, HelperGone if the connection broke
        first. Waits for the helper while it is away."""
        answered = trio.Event()
        outcome: list[Outcome] = []

        def done(result: Outcome) -> None:
            outcome.append(result)
            answered.set()

        await self.submit(op, args or {}, done)
        await answered.wait()
        result = outcome[0]
        if isinstance(result, HelperError | HelperGone):
            raise result
        return result

    async def call_all(self, requests: Sequence[tuple[str, dict[str, Any]]]) -> list[Outcome]:
        """Several requests pipelined (all sent before the first answer is awaited: a
        round trip per request is what made thousands of policy installs slow); their
        outcomes, in order."""
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
        if left:
            await answered.wait()
        return [outcome for outcome in outcomes if outcome is not None]
