"""Datagrams waiting for what must precede them: the helper calls issued before them and the
save of the state they follow.

The engine's order rule (kink.engine.events): a datagram leaves only once every SA action
emitted before it is done, so that the optimistic inbound SA is in place before CREATE goes out
(RFC 4430 §3.2). The daemon pipelines its helper calls (it issues the next action without
waiting for the last reply), so the rule is kept here instead: each datagram records the last
helper call issued before it and the state generation at the time (kink.daemon.state_writer),
and leaves once those calls are answered and that generation is on disk. Datagrams leave in the
order they were emitted.
"""

# Annotations stay strings: trio.TaskStatus only exists from trio 0.23 (Debian 12 has 0.22).
from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import trio

from kink.engine.events import Address

Send = Callable[[bytes, Address], Awaitable[None]]


class Outbox:
    """Outbox(send); begin()/end() around each helper call; post() each datagram; run() as a
    task; durable(generation) when the state writer has saved that generation."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._issued = 0  # helper calls issued so far (their sequence numbers)
        # Issued and not answered yet, oldest first (a dict keeps insertion order: its first
        # key is the smallest open sequence number).
        self._open: dict[int, None] = {}
        self._durable = 0
        self._held: deque[tuple[int, int, bytes, Address]] = deque()
        self._ready = trio.Event()

    def begin(self) -> int:
        """A helper call is being issued: its sequence number, for end()."""
        self._issued += 1
        self._open[self._issued] = None
        return self._issued

    def end(self, seq: int) -> None:
        self._open.pop(seq, None)
        self._wake_if_due()

    def durable(self, generation: int) -> None:
        self._durable = max(self._durable, generation)
        self._wake_if_due()

    def _wake_if_due(self) -> None:
        # Only when the first held datagram may leave now: most calls that end are not the
        # last one a datagram waits for, and a wake-up of run() for nothing costs a trip
        # through trio's scheduler.
        if self._held and self._may_leave(self._held[0][0], self._held[0][1]):
            self._ready.set()

    def _may_leave(self, seq: int, generation: int) -> bool:
        return self._durable >= generation and (not self._open or next(iter(self._open)) > seq)

    async def post(self, data: bytes, peer: Address, generation: int) -> None:
        """Send now if nothing precedes it, else queue it (run() sends it when due)."""
        if not self._held and self._may_leave(self._issued, generation):
            await self._send(data, peer)
            return
        self._held.append((self._issued, generation, data, peer))

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready = trio.Event()
            while self._held and self._may_leave(self._held[0][0], self._held[0][1]):
                _, _, data, peer = self._held.popleft()
                await self._send(data, peer)
