"""The engine's actions carried out by the step that delivered their input (Daemon._delivered,
issue 9): while the executor is parked and no other task is ready to run, the transport's step
that delivered a CREATE sends its helper requests, and the helper reader's step that delivered
their replies saves and sends the REPLY, each without a turn of the executor. One run of the
actions at a time, in the engine's order (kink.engine.events): an action that must wait goes
to the executor with all that follows it; while the executor is busy, or another task is ready,
it carries the inputs out itself; and the engine's timers set by such a run still fire."""

import logging
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from kink.engine import StartAction
from tests.daemon.bare_executor import FakeEngine, bare_daemon
from tests.daemon.conftest import HostsFactory
from tests.daemon.harness import wait_for_a_pair
from tests.daemon.task_steps import StepLog, call_before

pytestmark = pytest.mark.trio


def _action(name: str) -> Any:
    return SimpleNamespace(name=name)


class _Runs:
    """A Daemon not started, with only what runs of actions use: `carried` gets (action name,
    task) for each action carried out; the action named "slow" waits until `gate` is set."""

    def __init__(self) -> None:
        self.engine = FakeEngine()
        self.carried: list[tuple[str, trio.lowlevel.Task]] = []
        self.gate = trio.Event()
        daemon = self.daemon = bare_daemon(self.engine)

        def carry_out_now(action: Any) -> bool:
            if action.name == "slow":
                return False
            self.carried.append((action.name, trio.lowlevel.current_task()))
            return True

        async def carry_out(action: Any) -> None:
            if not carry_out_now(action):
                await self.gate.wait()
                self.carried.append((action.name, trio.lowlevel.current_task()))

        daemon._carry_out_now = carry_out_now  # type: ignore[method-assign]
        daemon._carry_out = carry_out  # type: ignore[method-assign]

    def deliver(self, *names: str) -> None:
        """An input with these actions, delivered as the transport does: then its step ends."""
        self.engine.actions += [_action(name) for name in names]
        self.daemon._input()
        self.daemon._delivered()

    def names(self) -> list[str]:
        return [name for name, _ in self.carried]


async def test_an_input_is_carried_out_in_its_step_up_to_an_action_that_must_wait() -> None:
    runs = _Runs()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runs.daemon._execute)
        await trio.testing.wait_all_tasks_blocked()  # parked
        runs.deliver("send", "slow", "after")
        this_step = trio.lowlevel.current_task()
        assert runs.carried == [("send", this_step)]  # no checkpoint since the delivery
        assert runs.engine.actions[0].name == "after"  # not taken: it follows "slow"
        await trio.testing.wait_all_tasks_blocked()  # the executor has "slow" in hand
        runs.deliver("later")  # the executor is busy: its to carry out, after the others
        assert runs.names() == ["send"]
        runs.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert runs.names() == ["send", "slow", "after", "later"]
        assert all(task is not this_step for _, task in runs.carried[1:])
        runs.deliver("alone")  # parked again: carried out in the delivering step
        assert runs.carried[-1] == ("alone", this_step)
        nursery.cancel_scope.cancel()


async def test_an_input_goes_to_the_executor_while_another_task_is_ready() -> None:
    # Under load the executor carries out the inputs of several steps in one run (one helper
    # message and one save for them all).
    runs = _Runs()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runs.daemon._execute)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(trio.sleep, 0)  # ready to run
        runs.deliver("first")
        runs.deliver("second")
        assert runs.carried == []
        await trio.testing.wait_all_tasks_blocked()
        assert runs.names() == ["first", "second"]
        assert all(task is not trio.lowlevel.current_task() for _, task in runs.carried)
        nursery.cancel_scope.cancel()


async def test_a_timer_set_by_a_run_in_a_delivering_step_fires(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs = _Runs()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runs.daemon._execute)
        await trio.testing.wait_all_tasks_blocked()  # parked, no timer
        due = trio.current_time() + 1.0
        runs.engine.deadline = due  # as the input's handling set one (a timer T, RFC 4430 §9)
        runs.deliver("send")
        await trio.sleep(5)
        assert len(runs.engine.handled) == 1 and runs.engine.handled[0] >= due
        nursery.cancel_scope.cancel()


async def test_a_lone_exchange_leaves_the_responder_in_the_steps_that_delivered_its_inputs(
    make_hosts: HostsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """b, the responder, in rekeys (its first exchange installs its policies first, in the
    executor: _responder_policies): the CREATE's helper requests go in the step that delivered
    the CREATE, the REPLY (after its save) in the step that delivered the helper's replies,
    and the SA's log line after the REPLY."""
    hosts = make_hosts(a={"b": StartAction.NONE}, b={"a": StartAction.NONE})
    a, b = hosts["a"], hosts["b"]
    steps = StepLog()
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        daemon = await b.start(nursery)
        await a.request("initiate", peer="b")
        await wait_for_a_pair(a, b)
        helper = daemon.helper
        steps.watch_responder(daemon)

        def helper_sends(*_: object) -> None:
            if helper._queue:
                steps.note("to helper")

        call_before(helper, "_send_queued", helper_sends)

        class Lines(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.getMessage().startswith("a: SA ") and " up " in record.getMessage():
                    steps.note("up line")

        caplog.set_level(logging.INFO, logger="kinkd")
        logging.getLogger("kinkd").addHandler(lines := Lines())
        await steps.lone_rekeys(a, b)
        logging.getLogger("kinkd").removeHandler(lines)
        await a.stop()
        await b.stop()
    events = steps.events
    creates = [i for i, (what, _) in enumerate(events) if what == "create"]
    assert len(creates) == 3, events
    for create in creates:
        step = events[create][1]
        to_helper = next(e for e in events[create:] if e[0] == "to helper")
        reply = next(i for i, e in enumerate(events) if i > create and e[0] == "reply")
        result = [e for e in events[create:reply] if e[0] == "result"][-1]
        assert to_helper[1] == step and result[1] == events[reply][1], events
        assert ("up line", step) not in events[create:reply], events
        assert ("up line", events[reply][1]) in events[reply:], events
