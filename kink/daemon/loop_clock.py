"""kinkd's trio clock: the system clock, keeping its last reading for the turn of the loop.

trio reads its clock after every wait for I/O (epoll), to expire the deadlines that passed,
before it runs the tasks the wait woke. A task woken by a datagram or a helper reply that read
the clock again for the engine's `now` made one clock read more per wake-up: a system call in
user-mode Linux (no vDSO, 22-35 us each; issue 9: 22 of the 48 system calls between a lone
CREATE and its REPLY on the responder were clock reads). With LoopClock given to trio.run,
turn_time() is the reading trio made, or a later one: no system call.

How old it may be: at most the work of the tasks that ran before the caller in the same turn
of the loop (for a lone exchange, none; under load a few ms). The engine's timers (RFC 4430 §9:
the retransmission timer T, SA lifetimes) measure 100s of ms to hours, so an input handed a
time that old is handled as if it had come that much sooner, within what they measure.

trio also reads its clock before each wait for I/O with a deadline pending and no task ready,
for how long to sleep (5-7 reads per lone rekey on each side). LoopClock counts that sleep from
its latest reading instead: the wait never ends before the deadline (that reading is not later
than now) and ends after it by at most the work done since the reading, the turn of the loop
that just ran; for the same reason as above, that is within what kinkd's timers measure.

One more read a turn is spared: trio.lowlevel.current_statistics() reads the clock for a field
kinkd does not use (seconds_to_next_deadline); tasks_runnable() asks for the statistics with
the clock giving its latest reading instead (the runner's idle test before an inline save, on
the lone path of a REPLY, issue 9).

The wall clock too (time.time(), a system call in user-mode Linux): a state save reads it for
the time its records are as of (kink.daemon.state's T: saved_at, and the REPLYs kept until a
time, answers.py), on the lone path of a REPLY (issue 9: 1 of b's 14 system calls between a
CREATE and its REPLY). wall_time() is the loop's latest reading plus the wall clock's offset
from it, which it reads again (with the loop's clock, two system calls) once WALL_CHECK seconds
of the loop's time have passed since it last did: what a save records is then as of the turn's
reading in both clocks (the records' ages are computed from it too, Engine.record_changes), and
a step of the wall clock (settimeofday, an NTP step) shows in saved times within WALL_CHECK
seconds. Those times age SAs whose lifetimes are minutes to hours at a restart, and date
REPLYs kept for a reply_cache_lifetime of seconds to minutes: a second is within what they
measure. (Between steps the two clocks run at the same rate: NTP slews CLOCK_MONOTONIC, which
time.perf_counter reads, with CLOCK_REALTIME.)
"""

import math
import time

import trio

WALL_CHECK = 1.0  # seconds of the loop's clock between two readings of the wall clock's offset


class LoopClock(trio.abc.Clock):
    """trio.run(..., clock=LoopClock()): time.perf_counter, as trio's own clock, with `last`,
    the latest reading (by trio or by any task)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.held = False  # current_time() gives `last` (tasks_runnable)
        self._wall_offset = 0.0  # time.time() - time.perf_counter(), as last read
        self._wall_checked = -math.inf  # `last` when it was read

    def wall(self) -> float:
        """The wall clock as of `last` (wall_time)."""
        last = self.last
        if not 0.0 <= last - self._wall_checked < WALL_CHECK:
            self.last = last = time.perf_counter()
            self._wall_offset = time.time() - last
            self._wall_checked = last
        return last + self._wall_offset

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        if self.held:
            return self.last
        self.last = now = time.perf_counter()
        return now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return deadline - self.last  # not a reading of its own (see the module's text)


def turn_time() -> float:
    """The time as of this turn of the loop: the clock's latest reading under LoopClock, which
    trio made when the loop woke at the latest (and never older than a time handed out before:
    it is the latest reading by anyone); under another clock (tests), a reading."""
    clock = trio.lowlevel.current_clock()
    if isinstance(clock, LoopClock):
        return clock.last
    return trio.current_time()


def wall_time() -> float:
    """time.time() as of this turn of the loop: under LoopClock, turn_time() in the wall clock
    (the offset between the two read at most every WALL_CHECK seconds, see the module's text);
    under another clock (tests), a reading of time.time()."""
    clock = trio.lowlevel.current_clock()
    if isinstance(clock, LoopClock):
        return clock.wall()
    return time.time()


def tasks_runnable() -> int:
    """trio.lowlevel.current_statistics().tasks_runnable: the tasks ready to run in this turn
    of the loop; under LoopClock without a clock read (see the module's text)."""
    clock = trio.lowlevel.current_clock()
    if not isinstance(clock, LoopClock):
        return trio.lowlevel.current_statistics().tasks_runnable
    clock.held = True
    try:
        return trio.lowlevel.current_statistics().tasks_runnable
    finally:
        clock.held = False
