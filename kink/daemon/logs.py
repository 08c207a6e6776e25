"""Logging for kinkd: one line per event that matters, levels changeable at run time.

Under systemd ($JOURNAL_STREAM set: stderr goes to the journal) lines carry no timestamp, the
journal adds its own, and start with the sd-daemon "<N>" priority prefix so that the journal
files them under the right level. Key material never reaches a log line: the engine's
dataclasses hide keys from repr, and nothing here formats an SA spec.

A line is one write(2) (LineHandler): kinkd logs a line per SA pair, 1,000s a second in a
rekey storm, and under user-mode Linux, where every system call costs ~25 us, the stdlib's
StreamHandler made seven of them a line.
"""

import logging
import os
import sys
import time
from collections.abc import Mapping

NOTICE = 25  # between INFO and WARNING, as syslog's notice
logging.addLevelName(NOTICE, "NOTICE")

LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": NOTICE,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# syslog priorities for the journal's "<N>" prefix (sd-daemon(3)).
_SYSLOG = {logging.DEBUG: 7, logging.INFO: 6, NOTICE: 5, logging.WARNING: 4, logging.ERROR: 3}

LOGGER = "kinkd"
PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL = "%(name)s: %(message)s"


class LineHandler(logging.Handler):
    """Each record as one line in one write(2) to `fd`, unbuffered and without a lock.

    Why not logging.StreamHandler: it takes its lock, writes through the buffered stream (whose
    lock is another) and flushes; CPython 3.11 reads the monotonic clock on every lock acquire
    (sem_clockwait). One write(2) of a line is whole even when two threads (the Kerberos
    worker's) log at once, so no lock is needed. kink_privsep has its own (the daemon and the
    helper share only kink_privsep.protocol)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def createLock(self) -> None:
        self.lock = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            os.write(self._fd, (self.format(record) + "\n").encode("utf-8", "backslashreplace"))
        except Exception:
            self.handleError(record)


class _PlainFormatter(logging.Formatter):
    """ "<date> <time>,<ms> LEVEL name: message", as logging.Formatter would write it with
    PLAIN, but built directly: kinkd logs two lines per rekey on each side (1,000s a second
    under load), and the generic path (the %-style template over the record's dict, the
    date formatted anew for every line) cost about half of a line's CPU time."""

    def __init__(self) -> None:
        super().__init__(PLAIN)
        self._second = -1
        self._date = ""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)  # the traceback's lines: the generic path
        second = int(record.created)
        if second != self._second:  # the date changes once a second, not every line
            self._second = second
            self._date = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
        message = record.getMessage()
        return f"{self._date},{int(record.msecs):03d} {record.levelname} {record.name}: {message}"


class _JournalFormatter(logging.Formatter):
    """ "<N>name: message" for the journal (sd-daemon(3) priority prefix, no time)."""

    def __init__(self) -> None:
        super().__init__(JOURNAL)

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG.get(record.levelno, 2 if record.levelno > logging.ERROR else 7)
        if record.exc_info or record.exc_text or record.stack_info:
            return f"<{priority}>{super().format(record)}"
        return f"<{priority}>{record.name}: {record.getMessage()}"


def setup(level: str, environ: Mapping[str, str] = os.environ) -> logging.Handler:
    """Log to stderr at `level` (a key of LEVELS); the handler installed on the root logger."""
    # No format names the process or thread: a LogRecord need not ask (getpid is a syscall).
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    # Nor the caller's file, function and line: without a source file the logging module
    # skips the walk up the stack for them (the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    handler = LineHandler(sys.stderr.fileno())
    journal = bool(environ.get("JOURNAL_STREAM"))
    handler.setFormatter(_JournalFormatter() if journal else _PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)
    return handler


def set_level(level: str) -> None:
    """Change the level of every kink logger at run time; ValueError for an unknown name."""
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    logging.getLogger().setLevel(LEVELS[level])


def current_level() -> str:
    value = logging.getLogger().getEffectiveLevel()
    return next((name for name, v in LEVELS.items() if v == value), str(value))
