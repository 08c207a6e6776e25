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
