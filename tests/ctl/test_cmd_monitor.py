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
from dataclasses import dataclass
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
    """The lines of a byte stream (a monitor's stdout or stderr)."""

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

    async def rest(self) -> str:
        """Everything until the stream ends."""
        while chunk := await self._stream.receive_some():
            self._buffer += chunk
        return bytes(self._buffer).decode()


@dataclass
class Monitor:
    process: trio.Process
    stdout: Lines
    stderr: Lines


@contextlib.asynccontextmanager
async def _monitor(pair: Pair, *argv: str) -> AsyncIterator[Monitor]:
    """`kinkctl monitor argv...` in its own process, killed if the test leaves it running;
    subscribed once this returns: kinkctl says it monitors only once kinkd said so."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "kink.ctl", "--socket", socket_of(pair.a), "monitor", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert process.stdout is not None and process.stderr is not None
    monitor = Monitor(process, Lines(process.stdout), Lines(process.stderr))
    try:
        with trio.fail_after(WAIT):
            subscribed = await monitor.stderr.next()
        assert subscribed == f"kinkctl: monitoring kinkd at {socket_of(pair.a)} (Ctrl-C to stop)"
        yield monitor
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()


async def test_monitor_human_until_ctrl_c(capsys: pytest.CaptureFixture[str], pair: Pair) -> None:
    async with _monitor(pair) as monitor:
        run = await kinkctl(capsys, pair.a, "initiate", "b")
        assert run.code == 0
        with trio.fail_after(WAIT):
            line = await monitor.stdout.next()
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

        monitor.process.send_signal(signal.SIGINT)
        with trio.fail_after(WAIT):
            assert await monitor.process.wait() == 0
            assert await monitor.stderr.rest() == ""


async def test_monitor_json_until_kinkd_stops(
    capsys: pytest.CaptureFixture[str], pair: Pair
) -> None:
    async with _monitor(pair, "--json") as monitor:
        assert (await kinkctl(capsys, pair.a, "log-level", "debug")).code == 0
        assert (await kinkctl(capsys, pair.a, "initiate", "b")).code == 0
        with trio.fail_after(WAIT):
            level = json.loads(await monitor.stdout.next())
            event = json.loads(await monitor.stdout.next())
        assert (level["event"], level["data"]) == (cp.EVENT_LOG_LEVEL, {"level": "debug"})
        assert sorted(event) == ["data", "event", "time"]
        assert isinstance(event["time"], float)
        assert event["event"] == cp.EVENT_SA_UP
        data = event["data"]
        assert (data["peer"], data["initiator"], data["rekey_of"]) == ("b", True, None)
        (child,) = json.loads((await kinkctl(capsys, pair.a, "sas", "--json")).out)["sas"]
        sa = child["sas"][0]
        assert data["spis"] == [["esp", sa["spi_in"], sa["spi_out"]]]  # as `sas` names them

        await pair.a.stop()
        with trio.fail_after(WAIT):
            assert await monitor.process.wait() == 0
            stderr = await monitor.stderr.rest()
    assert stderr.splitlines()[-1] == "kinkctl: kinkd closed the connection"
