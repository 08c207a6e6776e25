"""Datagrams waiting for the save of the state they commit us to (write-ahead), each for its own.

The engine emits a datagram only once the SA actions it depends on have their helper_result
(kink.engine.events: RFC 4430 §3.2, the optimistic inbound SA is in place before CREATE goes),
so the daemon may send any datagram as soon as it is emitted, subject only to its own
write-ahead save: a datagram that commits us to a change of the state file (kink.daemon.
state_writer, the runner's _carry_out says which ones) is posted with the generation in which
that change was noted, and leaves once that generation is on disk (durable()); every other
datagram leaves at once. A held datagram waits for nothing else: not for the datagrams posted
before it, nor for a later generation than its own (datagrams of other exchanges do not queue
behind each other, issue 9).

A datagram equal to one still held (a retransmission from the engine's reply cache, RFC 4430
§9: the same bytes again) waits with it: the REPLY it repeats commits us to the same state.

A datagram that may leave goes at once through `try_send` (a send that does not wait: False
when the socket's queue is full), from the post() or durable() that let it go; run() only
sends what found the queue full, with `send`, which waits for room, in the order they came (a
wake-up of run() for each datagram was a trip through trio's scheduler, issue 9).
"""

# Annotations stay strings: trio.TaskStatus only exists from trio 0.23 (Debian 12 has 0.22).
from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Awaitable, Callable

import trio

from kink.engine.events import Address

Send = Callable[[bytes, Address], Awaitable[None]]
TrySend = Callable[[bytes, Address], bool]


class Outbox:
    """Outbox(send, try_send); post() each datagram with the state generation it waits for (0:
    none); durable(generation) when the state writer has saved that generation; run() as a
    task."""

    def __init__(self, send: Send, try_send: TrySend) -> None:
        self._send = send
        self._try_send = try_send
        self._durable = 0
        # Held datagrams, the smallest generation first (a heap: a retransmission may wait for
        # an older generation than the datagrams posted before it); the counter keeps the
        # order of posting among equal generations and never lets bytes be compared.
        self._held: list[tuple[int, int, bytes, Address]] = []
        self._posted = itertools.count()
        self._waiting: dict[bytes, int] = {}  # the held datagrams' bytes -> their generation
        self._due: deque[tuple[bytes, Address]] = deque()  # may leave; the queue was full
        self._ready = trio.Event()

    def post(self, data: bytes, peer: Address, generation: int = 0) -> None:
        """Send now if its generation (or that of an equal datagram still held) is on disk,
        else hold it until it is."""
        if self._waiting:
            generation = max(generation, self._waiting.get(data, 0))
        if generation <= self._durable:
            self._leave(data, peer)
            return
        heapq.heappush(self._held, (generation, next(self._posted), data, peer))
        self._waiting[data] = max(generation, self._waiting.get(data, 0))

    def durable(self, generation: int) -> None:
        """The state of `generation` (and every one before it) is on disk: the datagrams that
        waited for it leave."""
        if generation <= self._durable:
            return
        self._durable = generation
        held = self._held
        while held and held[0][0] <= generation:
            _, _, data, peer = heapq.heappop(held)
            if self._waiting.get(data, 0) <= generation:
                self._waiting.pop(data, None)
            self._leave(data, peer)

    def _leave(self, data: bytes, peer: Address) -> None:
        # Behind the ones already waiting for room: datagrams keep their order on the socket.
        if self._due or not self._try_send(data, peer):
            self._due.append((data, peer))
            self._ready.set()

    async def run(self) -> None:
        """Send what found the socket's queue full, waiting for room."""
        due = self._due
        while True:
            await self._ready.wait()
            self._ready = trio.Event()
            while due:
                data, peer = due[0]
                await self._send(data, peer)
                due.popleft()  # only now: a datagram posted meanwhile queues behind it
