"""kinkd's trio clock (kink.daemon.loop_clock): a task woken by I/O takes the reading trio made
as the loop woke, not one of its own (issue 9: a clock read is a system call in user-mode
Linux); the transport hands a lone datagram to the daemon with it, the helper client a lone
reply."""

import socket
import sys
from collections.abc import Iterator

import pytest
import trio

from kink.daemon.helper_client import Outcome
from kink.daemon.loop_clock import LoopClock, tasks_runnable, turn_time
from kink.daemon.transport import Transport, open_sockets
from kink.engine.events import Address
from tests.daemon.helper_clients import running_client

pytestmark = pytest.mark.trio


class WhoReads(LoopClock):
    """A LoopClock that notes which function read it each time."""

    def __init__(self) -> None:
        super().__init__()
        self.readers: list[str] = []

    def current_time(self) -> float:
        if self.held:  # gives its last reading (tasks_runnable): not a reading
            return super().current_time()
        caller = sys._getframe(1)
        if caller.f_code.co_filename.endswith("_generated_run.py"):
            caller = caller.f_back or caller  # trio.current_time(): who called it
        self.readers.append(caller.f_code.co_name)
        return super().current_time()


@pytest.fixture
def clock() -> WhoReads:
    return WhoReads()  # pytest-trio runs the test under it


@pytest.fixture
def kink_socket() -> Iterator[socket.socket]:
    (sock,) = open_sockets(["127.0.0.1"], 0)
    with sock:
        yield sock


async def test_turn_time_is_the_reading_made_as_the_loop_woke(clock: WhoReads) -> None:
    before = trio.current_time()
    await trio.sleep(0.01)
    assert clock.readers[-1] == "unrolled_run"  # trio's, after its wait for I/O
    readings = len(clock.readers)
    now = turn_time()
    assert len(clock.readers) == readings  # no reading of its own
    assert now == clock.last and now >= before + 0.01


async def test_a_sleep_is_counted_from_the_latest_reading_and_never_ends_early(
    clock: WhoReads,
) -> None:
    began = trio.current_time()
    await trio.sleep(0.02)
    assert trio.current_time() >= began + 0.02
    assert "deadline_to_sleep_time" not in clock.readers  # trio's wait read no clock


async def test_turn_time_under_another_clock_reads_it(autojump_clock: trio.abc.Clock) -> None:
    await trio.sleep(5.0)
    assert turn_time() == trio.current_time()


async def test_a_lone_datagram_is_delivered_with_the_loops_reading(
    clock: WhoReads, kink_socket: socket.socket
) -> None:
    transport = Transport([kink_socket], "127.0.0.1")
    got: list[tuple[float, float, str]] = []
    done = trio.Event()

    def deliver(data: bytes, address: Address) -> None:
        got.append((transport.arrived, clock.last, clock.readers[-1]))
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport.serve, deliver)
        await trio.testing.wait_all_tasks_blocked()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"lone", kink_socket.getsockname())
        await done.wait()
        nursery.cancel_scope.cancel()
    ((arrived, last, reader),) = got
    assert reader == "unrolled_run" and arrived == last


async def test_a_lone_reply_is_delivered_with_the_loops_reading(clock: WhoReads) -> None:
    async with running_client() as (_, client):
        seen: list[tuple[float | None, float, str]] = []
        answered = trio.Event()

        def done(_: Outcome) -> None:
            seen.append((client.arrived, clock.last, clock.readers[-1]))
            answered.set()

        await client.submit("hello", {}, done, wake=False)
        client.flush()
        await answered.wait()
        ((arrived, last, reader),) = seen
        assert reader == "unrolled_run" and arrived == last


async def test_tasks_runnable_counts_the_ready_tasks_without_a_reading(clock: WhoReads) -> None:
    async with trio.open_nursery() as nursery:  # (entering its cancel scope reads the clock)
        readings = len(clock.readers)
        assert tasks_runnable() == 0
        nursery.start_soon(trio.sleep, 0)
        nursery.start_soon(trio.sleep, 0)
        assert tasks_runnable() == 2  # spawned, not run yet
        assert clock.readers[readings:] == []  # trio's statistics read no clock
    assert not clock.held
