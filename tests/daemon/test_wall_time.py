"""The wall clock as of a turn of kinkd's loop (kink.daemon.loop_clock.wall_time): the loop's
reading plus the wall clock's offset from it, read again only once WALL_CHECK seconds of the
loop's clock have passed (issue 9: time.time() is a system call in user-mode Linux, and a state
save on the lone path of a REPLY read it)."""

import time

import pytest
import trio

from kink.daemon.loop_clock import WALL_CHECK, LoopClock, turn_time, wall_time


class FakeClocks:
    """time.perf_counter and time.time as set by the test, each reading counted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monotonic = 100.0
        self.wall = 5000.0
        self.wall_reads = 0
        monkeypatch.setattr(time, "perf_counter", lambda: self.monotonic)
        monkeypatch.setattr(time, "time", self._time)

    def _time(self) -> float:
        self.wall_reads += 1
        return self.wall

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.wall += seconds


def test_the_offset_is_read_once_per_wall_check(monkeypatch: pytest.MonkeyPatch) -> None:
    clocks = FakeClocks(monkeypatch)
    clock = LoopClock()
    assert clock.wall() == 5000.0 and clocks.wall_reads == 1
    clocks.advance(0.25)
    clock.current_time()  # trio's reading as the loop wakes
    assert clock.wall() == 5000.25 and clock.wall() == 5000.25
    assert clocks.wall_reads == 1  # no reading of its own within WALL_CHECK
    clocks.advance(WALL_CHECK)
    clock.current_time()
    assert clock.wall() == 5000.25 + WALL_CHECK and clocks.wall_reads == 2


def test_a_step_of_the_wall_clock_shows_within_wall_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clocks = FakeClocks(monkeypatch)
    clock = LoopClock()
    clock.wall()
    clocks.wall += 3600.0  # settimeofday, an NTP step
    clocks.advance(0.5)
    clock.current_time()
    assert clock.wall() == 5000.5  # not seen yet
    clocks.advance(WALL_CHECK / 2)
    clock.current_time()
    assert clock.wall() == 5000.5 + WALL_CHECK / 2 + 3600.0


@pytest.fixture
def clock() -> LoopClock:
    return LoopClock()  # pytest-trio runs the tests that ask for it under it


@pytest.mark.trio
async def test_under_the_loop_clock_it_is_the_turns_time_without_a_reading(
    clock: LoopClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = 0
    real = time.time

    def counted() -> float:
        nonlocal reads
        reads += 1
        return real()

    offset = wall_time() - turn_time()  # the first reading of the offset
    monkeypatch.setattr(time, "time", counted)
    for _ in range(3):
        await trio.sleep(0.01)
        assert wall_time() == pytest.approx(clock.last + offset, abs=1e-6)
    assert reads == 0
    assert abs(wall_time() - real()) < 0.5


@pytest.mark.trio
async def test_under_another_clock_it_reads_the_wall_clock(
    autojump_clock: trio.abc.Clock,
) -> None:
    before = time.time()
    assert before <= wall_time() <= time.time()
