"""What happened in which step of trio's tasks, for the tests of a lone exchange carried out
without turns of the loop (issue 9: the delivering step, HelperClient.wait_replies)."""

from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from kink.engine.events import Rekey
from kink.wire.constants import MessageType
from tests.daemon.harness import Node, wait_for_a_pair


def call_before(owner: Any, name: str, before: Callable[..., None]) -> None:
    """owner.name(...) calls before(...) first."""
    inner = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before(*args, **kwargs)
        return inner(*args, **kwargs)

    setattr(owner, name, wrapper)


class StepLog(trio.abc.Instrument):
    """Numbers every step of every task and notes events with the step they came in: two
    events in the same step ran with no turn of the loop (and no other task) between them."""

    def __init__(self) -> None:
        self.step = 0
        self.events: list[tuple[str, int]] = []
        self._replied = trio.Event()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.step += 1

    def note(self, what: str) -> None:
        self.events.append((what, self.step))

    def watch_responder(self, daemon: Any) -> None:
        """Note a responder's CREATEs received ("create"), its helper results ("result") and
        its REPLYs sent ("reply")."""

        def received(data: bytes, *_: object) -> None:
            if data[0] == MessageType.CREATE:
                self.note("create")

        def sends(data: bytes, *_: object) -> None:
            if data[0] == MessageType.REPLY:
                self.note("reply")
                self._replied.set()

        call_before(daemon.engine, "datagram_received", received)
        call_before(daemon.engine, "helper_result", lambda *_: self.note("result"))
        call_before(daemon._transport, "try_send", sends)

    async def lone_rekeys(self, a: Node, b: Node, count: int = 3) -> None:
        """`count` rekeys of a's pair with b, each alone (nothing else under way), steps
        numbered from the request to b's REPLY."""
        assert a.daemon is not None
        for _ in range(count):
            await trio.sleep(0.1)
            await trio.testing.wait_all_tasks_blocked()  # nothing else under way
            self._replied = trio.Event()
            trio.lowlevel.add_instrument(self)
            # As kinkctl's request does, without a thread of the test's own.
            a.daemon.engine.request(Rekey("b"), trio.current_time())
            a.daemon._wake()
            with trio.fail_after(10):
                await self._replied.wait()
            trio.lowlevel.remove_instrument(self)
            await wait_for_a_pair(a, b)  # the old pair deleted

    def exchanges(self) -> list[list[tuple[str, int]]]:
        """The events from each CREATE to its REPLY, both included."""
        events = self.events
        out = []
        for i, (what, _) in enumerate(events):
            if what == "create":
                reply = next(j for j in range(i, len(events)) if events[j][0] == "reply")
                out.append(events[i : reply + 1])
        return out
