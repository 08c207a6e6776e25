"""`kinkctl monitor` as a separate process: it prints sa-up when an SA comes up, one line per
event with a timestamp (JSON lines with --json), and ends with 0 on Ctrl-C or when kinkd stops.
"""

import contextlib
import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from kink.daemon import control_protocol as cp
from tests.ctl.conftest import Pair, kinkctl, socket_of
from tests.daemon.harness import WAIT

pytestmark = pytest.mark.trio

REPO = Path(__file__).resolve().parents[2]
_STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}"
_SPI = r"0x[0-9a-f]{8}"


class Lines:
    """The lines of a byte stream (a monitor's stdout)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def next(self) -> str:
        while (end := self._buffer.find(b"\n")) < 0:
            chunk = await self._stream.receive_some()
            if not chunk:
                raise EOFError(f"the stream ended; unterminated: {bytes(self._buffer)!r}")
            self._buffer += chunk
        line = bytes(self._buffer[:end]).decode()
        del self._buffer[: end + 1]
        return line


@contextlib.asynccontextmanager
async def _monitor(pair: Pair, *argv: str) -> AsyncIterator[tuple[trio.Process, Lines]]:
    """`kinkctl monitor argv...` in its own process, killed if the test leaves it running."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "kink.ctl", "--socket", socket_of(pair.a), "monitor", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert process.stdout is not None
    try:
        yield process, Lines(process.stdout)
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()


async def _subscribed(pair: Pair, lines: Lines, is_log_level: re.Pattern[str]) -> None:
    """Wait until the monitor gets events: set the log level (an event) until one shows.
    (The subscription is made after the process starts; only an event proves it.)"""
    with trio.fail_after(WAIT):
        while True:
            await pair.a.request("log-level", level="debug")
            with trio.move_on_after(0.2):
                line = await lines.next()
                assert is_log_level.fullmatch(line), line
                return


async def _after_pokes(lines: Lines, is_log_level: re.Pattern[str]) -> str:
    """The next line that is not the event of a log-level poke (late ones may still come)."""
    with trio.fail_after(WAIT):
        while is_log_level.fullmatch(line := await lines.next()):
            pass
    return line


async def _stderr(process: trio.Process) -> str:
    assert process.stderr is not None
    data = bytearray()
    while chunk := await process.stderr.receive_some():
        data += chunk
    return data.decode()


async def test_monitor_human_until_ctrl_c(capsys: pytest.CaptureFixture[str], pair: Pair) -> None:
    async with _monitor(pair) as (process, lines):
        poke = re.compile(rf"{_STAMP}  log-level {8 * ' '}  log level now debug")
        await _subscribed(pair, lines, poke)
        run = await kinkctl(capsys, pair.a, "initiate", "b")
        assert run.code == 0
        line = await _after_pokes(lines, poke)
        up = re.fullmatch(
            rf"{_STAMP}  sa-up {12 * ' '}  b: SA (\d+) up \(initiator\): esp in ({_SPI}) "
            rf"out ({_SPI})",
            line,
        )
        assert up is not None, line
        (child,) = json.loads((await kinkctl(capsys, pair.a, "sas", "--json")).out)["sas"]
        sa = child["sas"][0]
        assert up.groups() == (
            str(child["child"]),
            f"{sa['spi_in']:#010x}",
            f"{sa['spi_out']:#010x}",
        )

        process.send_signal(signal.SIGINT)
        with trio.fail_after(WAIT):
            assert await process.wait() == 0
            stderr = await _stderr(process)
    assert stderr == f"kinkctl: monitoring kinkd at {socket_of(pair.a)} (Ctrl-C to stop)\n"


async def test_monitor_json_until_kinkd_stops(
    capsys: pytest.CaptureFixture[str], pair: Pair
) -> None:
    async with _monitor(pair, "--json") as (process, lines):
        poke = re.compile(r'\{"data": \{"level": "debug"\}, "event": "log-level", .*')
        await _subscribed(pair, lines, poke)
        assert (await kinkctl(capsys, pair.a, "initiate", "b")).code == 0
        event = json.loads(await _after_pokes(lines, poke))
        assert sorted(event) == ["data", "event", "time"]
        assert isinstance(event["time"], float)
        assert event["event"] == cp.EVENT_SA_UP
        data = event["data"]
        assert (data["peer"], data["initiator"], data["rekey_of"]) == ("b", True, None)
        (child,) = json.loads((await kinkctl(capsys, pair.a, "sas", "--json")).out)["sas"]
        sa = child["sas"][0]
        assert data["spis"] == [[3, sa["spi_in"], sa["spi_out"]]]  # ESP: 3 (RFC 2407 §4.4.1)

        await pair.a.stop()
        with trio.fail_after(WAIT):
            assert await process.wait() == 0
            stderr = await _stderr(process)
    assert stderr.splitlines()[-1] == "kinkctl: kinkd closed the connection"
