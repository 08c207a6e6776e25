"""The helper as a process: its socket, SO_PEERCRED, systemd socket activation, and the drop
to CAP_NET_ADMIN."""

from __future__ import annotations

import os
import pwd
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kink_privsep import protocol
from kink_privsep.client import Client
from kink_privsep.privileges import CAP_NET_ADMIN
from tests.privsep.harness import REPO, process_helper, short_dir, thread_helper

NOBODY = pwd.getpwnam("nobody")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (setuid, capabilities)")


def _status(pid: int | str) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _peer(path: str, uid: int, gid: int) -> str:
    """Connect as uid/gid (a forked child), ask "hello": "answered" or "closed"."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery from here on, only os._exit
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
                s.settimeout(10)
                s.connect(path)
                try:  # the helper may close before our request is even sent
                    s.send(protocol.encode_request(1, "hello", {}))
                    data = s.recv(65536)
                except (BrokenPipeError, ConnectionResetError):
                    data = b""
            answer = "answered" if data else "closed"
        except BaseException as e:
            answer = f"error: {e!r}"
        os.write(w, answer.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        answer = f.read().decode()
    os.waitpid(pid, 0)
    return answer


def test_only_the_daemon_uid_is_served() -> None:
    with thread_helper() as h:
        # Let anyone reach the socket, so that SO_PEERCRED (not file modes) is what refuses.
        os.chmod(os.path.dirname(h.path), 0o755)
        os.chmod(h.path, 0o666)
        assert _peer(h.path, os.getuid(), os.getgid()) == "answered"
        assert _peer(h.path, NOBODY.pw_uid, NOBODY.pw_gid) == "closed"
        assert h.backend.calls == []


def test_the_socket_file_is_for_the_daemon_only() -> None:
    with process_helper("--backend", "recording", "--daemon-uid", str(NOBODY.pw_uid)) as h:
        st = os.stat(h.path)
        assert stat.S_ISSOCK(st.st_mode)
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, NOBODY.pw_uid)


def test_it_runs_with_cap_net_admin_only() -> None:
    with process_helper("--backend", "recording") as h:
        with h.client() as c:
            assert c.call("hello")["backend"] == "recording"
        status = _status(h.process.pid)
    only = f"{1 << CAP_NET_ADMIN:016x}"
    assert [status[f"Cap{s}"] for s in ("Eff", "Prm", "Bnd")] == [only] * 3
    assert [status[f"Cap{s}"] for s in ("Inh", "Amb")] == ["0" * 16] * 2
    assert status["NoNewPrivs"] == "1"
    assert status["Uid"].split() == [str(NOBODY.pw_uid)] * 4
    assert status["Gid"].split() == [str(NOBODY.pw_gid)] * 4
    assert status["Groups"] == ""


DROPPED = """
import os, sys
from kink_privsep.backend import XfrmBackend
from kink_privsep.privileges import drop_privileges
backend = XfrmBackend()
drop_privileges(int(sys.argv[1]), int(sys.argv[2]))
backend.dump_policies()  # XFRM still works: CAP_NET_ADMIN is kept
try:
    os.setuid(0)
except PermissionError:
    print("setuid refused")
try:
    os.open("/proc/1/environ", os.O_RDONLY)
except PermissionError:
    print("other processes hidden")
"""


def test_after_the_drop_xfrm_works_and_nothing_else() -> None:
    result = subprocess.run(
        [sys.executable, "-c", DROPPED, str(NOBODY.pw_uid), str(NOBODY.pw_gid)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["setuid refused", "other processes hidden"]


ACTIVATE = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_systemd_socket_activation() -> None:
    with short_dir() as d:
        path = str(d / "activated.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(path)
        listener.listen()
        # What systemd does: the socket as fd 3, LISTEN_FDS=1, LISTEN_PID=<the helper's pid>.
        command = [sys.executable, "-c", ACTIVATE, str(listener.fileno()), sys.executable]
        command += ["-m", "kink_privsep", "--daemon-uid", str(os.getuid())]
        command += ["--backend", "recording"]
        process = subprocess.Popen(
            command, pass_fds=(listener.fileno(),), cwd=REPO, stderr=subprocess.PIPE
        )
        try:
            with Client(path, timeout=60) as c:
                assert c.call("hello")["version"] == 1
            assert Path(path).exists()
        finally:
            process.terminate()
            _, err = process.communicate(timeout=30)
            listener.close()
        assert process.returncode == 0, err
        assert b"an activated socket" in err


def test_no_socket_and_no_activation_is_an_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kink_privsep", "--daemon-uid", "0", "--backend", "recording"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--socket is required" in result.stderr
