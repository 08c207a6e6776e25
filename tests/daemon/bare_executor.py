"""A Daemon not started, with only what its runs of the engine's actions use (Daemon._execute,
_input, _delivered): an engine stand-in that hands out queued actions and has one timer, and no
save. The tests set the daemon's _carry_out (and _carry_out_now) to record what is carried out."""

from types import SimpleNamespace
from typing import Any

import trio

from kink.daemon.runner import Daemon


class FakeEngine:
    """What a run of actions asks of the engine: actions, the next timer, the timers run (a
    timer is over once handled at or after its deadline)."""

    def __init__(self, deadline: float | None = None) -> None:
        self.actions: list[Any] = []  # the engine's actions, or stand-ins for them
        self.deadline = deadline
        self.handled: list[float] = []

    def next_action(self) -> Any:
        return self.actions.pop(0) if self.actions else None

    def next_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.handled.append(now)
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None


def bare_daemon(engine: FakeEngine) -> Daemon:
    daemon = Daemon.__new__(Daemon)
    daemon._engine = engine  # type: ignore[assignment]
    daemon.helper = SimpleNamespace(flush=lambda: None)  # type: ignore[assignment]
    daemon._policy_checks = set()
    daemon._wakeup = trio.Event()
    daemon._parked = False
    daemon._timer = None
    daemon._inputs = False
    daemon._deferred = None
    daemon._waiting = False
    daemon._wait_for_helper = False  # no helper: a run never waits for its replies
    daemon._lines = []
    daemon._flush_changes = lambda: None  # type: ignore[method-assign]
    return daemon
