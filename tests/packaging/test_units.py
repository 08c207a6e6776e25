"""The systemd units, sysusers.d and tmpfiles.d entries: checked by systemd's own tools, and
against the daemon's defaults."""

import configparser
import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kink.daemon.config import DaemonSettings
from tests.packaging.conftest import PACKAGING, ROOT, UNITS

UNIT_NAMES = ("kink-privsep.socket", "kink-privsep.service", "kinkd.service")
BIN = Path(sys.executable).parent  # the console scripts of the installed project

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def units_with_real_programs(tmp_path: Path) -> Path:
    """The units with /usr/bin/ pointing at this tree's installed console scripts, which
    `systemd-analyze verify` checks exist and are executable."""
    for name in UNIT_NAMES:
        text = (UNITS / name).read_text().replace("/usr/bin/", f"{BIN}/")
        (tmp_path / name).write_text(text)
    return tmp_path


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read(UNITS / name)
    return parser


@needs_systemd
def test_units_verify(tmp_path: Path) -> None:
    directory = units_with_real_programs(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(directory / n) for n in UNIT_NAMES)],
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@needs_systemd
@pytest.mark.parametrize(("name", "limit"), [("kinkd.service", 2.0), ("kink-privsep.service", 1.2)])
def test_security_exposure(tmp_path: Path, name: str, limit: float) -> None:
    """`systemd-analyze security` rates both services OK; the helper (whose only capability is
    CAP_NET_ADMIN and which cannot have PrivateUsers/PrivateNetwork) at the 1.2 it reaches."""
    directory = units_with_real_programs(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", name],
        capture_output=True,
        text=True,
        cwd=directory,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", done.stdout)
    assert found is not None, done.stdout + done.stderr
    exposed = [line for line in done.stdout.splitlines() if line.startswith("✗")]
    print(f"\n{name}: {found[1]} {found[2]}\n" + "\n".join(exposed))
    assert float(found[1]) <= limit


def test_units_agree_with_daemon_defaults() -> None:
    """The paths and user the units set up are the ones kinkd uses when kink.toml does not
    say otherwise."""
    defaults = DaemonSettings()
    kinkd = unit("kinkd.service")["Service"]
    socket = unit("kink-privsep.socket")["Socket"]
    helper = unit("kink-privsep.service")["Service"]
    assert Path("/var/lib", kinkd["StateDirectory"]) == defaults.state_dir
    assert Path("/run", kinkd["RuntimeDirectory"]) == defaults.runtime_dir
    assert defaults.control_socket.parent == defaults.runtime_dir
    assert (kinkd["User"], kinkd["Group"]) == (defaults.user, defaults.group)
    assert Path(socket["ListenSequentialPacket"]) == defaults.helper_socket
    assert socket["SocketUser"] == defaults.user and socket["SocketMode"] == "0600"
    argv = helper["ExecStart"].split()
    assert argv[argv.index("--daemon-uid") + 1] == defaults.user
    assert argv[argv.index("--user") + 1] == helper["User"]
    assert helper["CapabilityBoundingSet"] == helper["AmbientCapabilities"] == "CAP_NET_ADMIN"
    assert kinkd["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_sysusers_and_tmpfiles(tmp_path: Path) -> None:
    """The users come into being, and the directories with their owners and modes."""
    (tmp_path / "etc").mkdir()
    for name in ("passwd", "group"):
        shutil.copy(f"/etc/{name}", tmp_path / "etc" / name)
    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(PACKAGING / "sysusers.d/kink.conf")],
        check=True,
        capture_output=True,
    )
    passwd = {
        line.split(":")[0]: line.split(":")
        for line in (tmp_path / "etc/passwd").read_text().splitlines()
    }
    for user in ("kink", "kink-privsep"):
        assert passwd[user][6] in ("/usr/sbin/nologin", "/sbin/nologin")
        assert int(passwd[user][2]) < 1000  # a system user
    subprocess.run(
        [
            "systemd-tmpfiles",
            f"--root={tmp_path}",
            "--create",
            str(PACKAGING / "tmpfiles.d/kink.conf"),
        ],
        check=True,
        capture_output=True,
    )
    kink_uid = int(passwd["kink"][2])
    for path, mode, uid in (
        ("var/lib/kink", 0o750, kink_uid),
        ("run/kink", 0o750, kink_uid),
        ("run/kink-privsep", 0o755, 0),
    ):
        st = (tmp_path / path).stat()
        assert (oct(st.st_mode & 0o7777), st.st_uid) == (oct(mode), uid)


PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
# Run argv with W^X enforced by the kernel (prctl PR_SET_MDWE, Linux 6.3), which refuses what
# MemoryDenyWriteExecute= refuses (writable+executable mappings, making memory executable)
# and, unlike the unit's seccomp filter, needs no systemd as PID 1. It is kept across execve.
_MDWE = f"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
    sys.exit(77)
os.execv(sys.argv[1], sys.argv[1:])
"""
# What the two services do that could need W^X memory: import everything (the cffi libkrb5
# binding included), and kink-privsep's ctypes calls (prctl, capset) in its drop.
_HELPER_DROP = """
import kink.daemon.main, kink.ctl.cli, kink_privsep.main
from kink_privsep.privileges import drop_privileges
drop_privileges(65534, 65534)
print(open("/proc/self/status").read().split("CapEff:")[1].split()[0])
"""


def _mdwe_supported() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_SET_MDWE + 1, 0, 0, 0, 0) >= 0)  # PR_GET_MDWE


@pytest.mark.skipif(not _mdwe_supported(), reason="kernel without PR_SET_MDWE (Linux < 6.3)")
@pytest.mark.skipif(os.geteuid() != 0, reason="kink-privsep's drop needs root")
def test_memory_deny_write_execute_holds() -> None:
    """MemoryDenyWriteExecute=yes in both units is safe: CPython, cffi and ctypes run under
    W^X (no JIT, no writable trampolines)."""
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            _MDWE,
            f"{BIN}/kinkd",
            "--config",
            str(ROOT / "kink.toml.example"),
            "--check-config",
        ],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    drop = subprocess.run(
        [sys.executable, "-c", _MDWE, sys.executable, "-c", _HELPER_DROP],
        capture_output=True,
        text=True,
    )
    assert drop.returncode == 0, drop.stderr
    assert int(drop.stdout, 16) == 1 << 12  # CAP_NET_ADMIN and nothing else
