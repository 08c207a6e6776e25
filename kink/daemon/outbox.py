"""Datagrams waiting for what must precede them: the helper calls issued before them and the
save of the state they follow.

The engine's order rule (kink.engine.events): a datagram leaves only once every SA action
emitted before it is done, so that the optimistic inbound SA is in place before CREATE goes out
(RFC 4430 §3.2). The daemon pipelines its helper calls (it issues the next action without
waiting for the last reply), so the rule is kept here instead: each datagram records the last
helper call issued before it and the state generation at the time (kink.daemon.state_writer),
and leaves once those calls are answered and that generation is on disk. Datagrams leave in the
order they were emitted.

A datagram that becomes due leaves at once through `try_send` (a send that does not wait:
False when the socket's queue is full), from the post(), end() or durable() that made it due;
run() only sends what found the queue full, with `send`, which waits for room. Why: under load
about two datagrams an exchange wait (the CREATE for its inbound SA, the REPLY for the save),
and a wake-up of run() for each was a trip through trio's scheduler.
"""

# Annotations stay strings: trio.TaskStatus only exists from trio 0.23 (Debian 12 has 0.22).
from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import trio

from kink.engine.events import Address

Send = Callable[[bytes, Address], Awaitable[None]]
TrySend = Callable[[bytes, Address], bool]


class Outbox:
    """Outbox(send, try_send); begin()/end() around each helper call; post() each datagram;
    run() as a task; durable(generation) when the state writer has saved that generation."""

    def __init__(self, send: Send, try_send: TrySend) -> None:
        self._send = send
        self._try_send = try_send
        self._issued = 0  # helper calls issued so far (their sequence numbers)
        # Issued and not answered yet, oldest first (a dict keeps insertion order: its first
        # key is the smallest open sequence number).
        self._open: dict[int, None] = {}
        self._durable = 0
        self._held: deque[tuple[int, int, bytes, Address]] = deque()
        self._ready = trio.Event()
        self._full = False  # try_send found the queue full: run() sends the held ones

    def begin(self) -> int:
        """A helper call is being issued: its sequence number, for end()."""
        self._issued += 1
        self._open[self._issued] = None
        return self._issued

    def end(self, seq: int) -> None:
        self._open.pop(seq, None)
        self._release()

    def durable(self, generation: int) -> None:
        self._durable = max(self._durable, generation)
        self._release()

    def _release(self) -> None:
        """Send the held datagrams that may leave now, in order, while the socket takes them;
        the rest (the queue is full) by waking run()."""
        held, try_send = self._held, self._try_send
        while held and not self._full and self._may_leave(held[0][0], held[0][1]):
            if try_send(held[0][2], held[0][3]):
                held.popleft()
            else:
                self._full = True
                self._ready.set()

    def _may_leave(self, seq: int, generation: int) -> bool:
        return self._durable >= generation and (not self._open or next(iter(self._open)) > seq)

    def post(self, data: bytes, peer: Address, generation: int) -> None:
        """Send now if nothing precedes it, else queue it (it leaves when due)."""
        self._held.append((self._issued, generation, data, peer))
        self._release()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready = trio.Event()
            while self._held and self._may_leave(self._held[0][0], self._held[0][1]):
                _, _, data, peer = self._held.popleft()
                await self._send(data, peer)
            self._full = False
