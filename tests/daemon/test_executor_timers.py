"""Daemon._execute's timers: one cancel scope until the engine's timer fires, its deadline set
only while the executor waits (issue 9: entering a scope reads the clock, setting its deadline
does not). A timer fires once when due, also when it comes due as an input wakes the executor,
and never cuts short the actions carried out."""

from types import SimpleNamespace

import pytest
import trio
import trio.testing

from kink.daemon.runner import Daemon
from kink.engine.events import Action
from tests.daemon.bare_executor import FakeEngine, bare_daemon


def _daemon(engine: FakeEngine, carried: list[Action]) -> Daemon:
    daemon = bare_daemon(engine)

    async def carry_out(action: Action) -> None:
        await trio.sleep(5)  # longer than the timer's wait: never cut short
        carried.append(action)

    daemon._carry_out = carry_out  # type: ignore[method-assign]
    return daemon


@pytest.mark.trio
async def test_a_timer_fires_once_when_due(autojump_clock: trio.testing.MockClock) -> None:
    engine = FakeEngine(trio.current_time() + 1.0)
    due = engine.deadline
    daemon = _daemon(engine, [])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(daemon._execute)
        await trio.sleep(10)
        assert due is not None and len(engine.handled) == 1 and engine.handled[0] >= due
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_timer_due_as_an_input_wakes_the_executor_fires_and_cuts_nothing_short(
    mock_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()
    engine = FakeEngine(start + 1.0)
    carried: list[Action] = []
    daemon = _daemon(engine, carried)
    action: Action = SimpleNamespace()  # type: ignore[assignment]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(daemon._execute)
        await trio.testing.wait_all_tasks_blocked()  # waiting, the timer's deadline set
        mock_clock.jump(2.0)  # the timer is due ...
        engine.actions.append(action)
        daemon._wakeup.set()  # ... as an input wakes the executor (same turn)
        await trio.testing.wait_all_tasks_blocked()
        assert engine.handled == [start + 2.0]  # once
        assert carried == []  # the input's action is under way (5 s)
        mock_clock.jump(5.0)
        await trio.testing.wait_all_tasks_blocked()
        assert carried == [action]  # not cut short by the timer's scope
        assert engine.handled == [start + 2.0]
        nursery.cancel_scope.cancel()
