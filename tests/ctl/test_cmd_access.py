"""kinkctl when kinkd cannot be reached: not running (no socket, or a stale one: exit 3) and a
socket the caller may not use (exit 4), each with its message; the exit codes in --help."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from kink.ctl.cli import build_parser
from kink.daemon.config import DaemonSettings
from kink.daemon.control_protocol import DEFAULT_CONTROL_SOCKET
from tests.ctl.conftest import Pair, kinkctl, socket_of
from tests.ctl.helpers import run
from tests.daemon.harness import short_dir

REPO = Path(__file__).resolve().parents[2]
# Root without the capabilities that bypass file permissions (CAP_DAC_OVERRIDE,
# CAP_DAC_READ_SEARCH): the kernel then checks the socket's mode as for anyone. (Running as
# `nobody` is not possible here: the interpreter lives under /root, closed to other users.)
_NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]


def test_default_socket_is_the_daemons() -> None:
    default = build_parser().parse_args(["status"]).socket
    assert Path(default) == Path(DEFAULT_CONTROL_SOCKET) == DaemonSettings().control_socket


@pytest.mark.parametrize("command", ["status", "peers", "sas", "reload", "log-level", "monitor"])
def test_not_running_no_socket(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with short_dir() as d:
        path = str(d / "kinkd.sock")
        result = run(capsys, "--socket", path, command)
        assert (result.code, result.out) == (3, "")
        assert result.err == f"kinkctl: kinkd is not running (no socket at {path})\n"
        result = run(capsys, "--socket", path, command, "--json")
        assert result.code == 3
        assert json.loads(result.out) == {
            "error": "not-running",
            "message": f"kinkd is not running (no socket at {path})",
        }


def test_not_running_stale_socket(capsys: pytest.CaptureFixture[str]) -> None:
    with short_dir() as d, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        path = str(d / "kinkd.sock")
        stale.bind(path)  # what a killed kinkd leaves: the file, nobody listening
        result = run(capsys, "--socket", path, "initiate", "b")
        assert result.code == 3
        assert result.err == f"kinkctl: kinkd is not running (nothing listens on {path})\n"


def test_not_running_in_a_subprocess() -> None:
    with short_dir() as d:
        path = str(d / "kinkd.sock")
        done = subprocess.run(
            [sys.executable, "-m", "kink.ctl", "--socket", path, "status"],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
        )
        assert (done.returncode, done.stdout) == (3, "")
        assert done.stderr == f"kinkctl: kinkd is not running (no socket at {path})\n"


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["sas", "--help"], ["terminate", "--help"]):
        result = run(capsys, *argv)
        assert result.code == 0
        assert "3  kinkd is not running" in result.out
        assert "4  permission denied on the control socket" in result.out


@pytest.mark.trio
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
async def test_permission_denied(capsys: pytest.CaptureFixture[str], pair: Pair) -> None:
    path = socket_of(pair.a)
    assert os.stat(path).st_mode & 0o777 == 0o660
    os.chmod(path, 0)
    try:
        done = await trio.run_process(
            [*_NO_DAC, sys.executable, "-m", "kink.ctl", "--socket", path, "status"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=REPO,
        )
    finally:
        os.chmod(path, 0o660)
    group = Path(path).group()
    assert (done.returncode, done.stdout) == (4, b""), done.stderr
    assert done.stderr.decode() == (
        f"kinkctl: cannot connect to kinkd at {path}: permission denied: ask for membership "
        f"of the group that owns it ({group})\n"
    )
    # The same socket, its mode back, serves its owner.
    assert (await kinkctl(capsys, pair.a, "status")).code == 0
