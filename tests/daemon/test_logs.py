"""kinkd's log lines (kink.daemon.logs): the two formats, each line whole on stderr."""

import logging
from collections.abc import Iterator

import pytest

from kink.daemon import logs


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_plain_lines_have_time_level_and_name(
    root_restored: None, capfd: pytest.CaptureFixture[str]
) -> None:
    logs.setup("notice", environ={})
    logging.getLogger("kinkd.test").log(logs.NOTICE, "SA %d up", 7)
    logging.getLogger("kinkd.test").info("not shown at notice")
    out = capfd.readouterr().err.splitlines()
    assert len(out) == 1
    date, time, rest = out[0].split(" ", 2)
    assert date.count("-") == 2 and time.count(":") == 2
    assert rest == "NOTICE kinkd.test: SA 7 up"


def test_journal_lines_carry_the_priority_and_no_time(
    root_restored: None, capfd: pytest.CaptureFixture[str]
) -> None:
    logs.setup("debug", environ={"JOURNAL_STREAM": "8:1"})
    log = logging.getLogger("kinkd.test")
    log.debug("d")
    log.log(logs.NOTICE, "n")
    log.error("e\nsecond line")
    assert (
        capfd.readouterr().err
        == "<7>kinkd.test: d\n<5>kinkd.test: n\n<3>kinkd.test: e\nsecond line\n"
    )


def test_an_unencodable_message_still_makes_a_line(
    root_restored: None, capfd: pytest.CaptureFixture[str]
) -> None:
    logs.setup("info", environ={"JOURNAL_STREAM": "8:1"})
    logging.getLogger("kinkd.test").info("peer \udcff")
    assert capfd.readouterr().err == "<6>kinkd.test: peer \\udcff\n"


@pytest.mark.parametrize("journal", [False, True])
def test_lines_are_what_the_stdlib_formatter_makes_of_the_same_format(
    root_restored: None, journal: bool
) -> None:
    handler = logs.setup("info", environ={"JOURNAL_STREAM": "8:1"} if journal else {})
    assert handler.formatter is not None
    generic = logging.Formatter(logs.JOURNAL if journal else logs.PLAIN)
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.5, 1_700_000_000.25):
        record = logging.LogRecord("kinkd.x", logs.NOTICE, "", 0, "SA %d %s", (7, "up"), None)
        record.created, record.msecs = created, created % 1 * 1000
        expected = generic.format(record)
        assert handler.formatter.format(record) == ("<5>" + expected if journal else expected)


def test_a_traceback_follows_its_line(
    root_restored: None, capfd: pytest.CaptureFixture[str]
) -> None:
    logs.setup("info", environ={})
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("kinkd.test").exception("failed %s", "here")
    lines = capfd.readouterr().err.splitlines()
    assert lines[0].endswith(" ERROR kinkd.test: failed here")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"
