"""kinkd as a process: --check-config, the drop from root to `nobody`, sd_notify through
$NOTIFY_SOCKET, SIGHUP (reload), SIGTERM (clean exit), systemd socket activation."""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kink.daemon.control_protocol import ControlClient
from tests.daemon.conftest import Principals
from tests.daemon.harness import ThreadHelper, free_port, short_dir
from tests.support.kdc import Realm

REPO = Path(__file__).resolve().parents[2]
WAIT = 30.0


def _config(d: Path, port: int, principal: str, peer_principal: str, extra: str = "") -> str:
    return f"""\
[daemon]
address = "127.0.0.1"
listen = ["127.0.0.1"]
port = {port}
user = "nobody"
group = "nogroup"
state_dir = "{d}/state"
runtime_dir = "{d}/run"
control_socket = "{d}/run/kinkd.sock"
helper_socket = "{d}/privsep.sock"
keytab = "{d}/kink.keytab"
principal = "{principal}"
krb5_config = "{d}/krb5.conf"
log_level = "debug"

[peers.b]
address = "127.0.0.2"
principal = "{peer_principal}"
port = {port}
start_action = "trap"
[[peers.b.proposals]]
[peers.b.proposals.esp]
encryption = "aes-cbc"
key_length = 128
integrity = "sha1"
{extra}"""


@pytest.fixture
def node(realm: Realm, principals: Principals) -> Iterator[tuple[Path, ThreadHelper]]:
    if os.geteuid() != 0:
        pytest.skip("the privilege drop needs root")
    nobody = pwd.getpwnam("nobody")
    with short_dir() as d:
        d.chmod(0o755)  # nobody must reach the helper's socket and its files
        principal, keytab = principals["a"]
        shutil.copy(keytab, d / "kink.keytab")
        os.chown(d / "kink.keytab", nobody.pw_uid, nobody.pw_gid)
        shutil.copy(realm.krb5_conf, d / "krb5.conf")
        (d / "krb5.conf").chmod(0o644)
        port = free_port(("127.0.0.1",))
        (d / "kink.toml").write_text(_config(d, port, principal, principals["b"][0]))
        helper = ThreadHelper(d / "privsep.sock", daemon_uid=nobody.pw_uid)
        try:
            yield d, helper
        finally:
            helper.close()


def _kinkd(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kink.daemon", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_check_config(node: tuple[Path, ThreadHelper]) -> None:
    d, _ = node
    done = subprocess.run(
        [sys.executable, "-m", "kink.daemon", "--config", str(d / "kink.toml"), "--check-config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    assert "OK (1 peers)" in done.stdout
    bad = d / "bad.toml"
    bad.write_text((d / "kink.toml").read_text().replace('log_level = "debug"', "log_lvl = 1"))
    done = subprocess.run(
        [sys.executable, "-m", "kink.daemon", "--config", str(bad), "--check-config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"kinkd: {bad}:14: daemon.log_lvl: ")


def _receive_until(sock: socket.socket, field: str, seen: list[str]) -> None:
    while field not in seen:
        seen.extend(sock.recv(4096).decode().split("\n"))


def test_root_drops_to_nobody_notifies_reloads_and_stops(
    node: tuple[Path, ThreadHelper],
) -> None:
    d, helper = node
    nobody = pwd.getpwnam("nobody")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(d / "notify.sock"))
    (d / "notify.sock").chmod(0o666)  # kinkd writes to it as nobody, as to systemd's
    notify.settimeout(WAIT)
    env = {**os.environ, "NOTIFY_SOCKET": str(d / "notify.sock"), "JOURNAL_STREAM": "8:1"}
    process = _kinkd("--config", str(d / "kink.toml"), env=env)
    seen: list[str] = []
    try:
        _receive_until(notify, "READY=1", seen)
        assert f"MAINPID={process.pid}" in seen
        uids = Path(f"/proc/{process.pid}/status").read_text().split("Uid:")[1].split()[:4]
        assert uids == [str(nobody.pw_uid)] * 4
        with ControlClient(str(d / "run" / "kinkd.sock")) as client:
            status = client.request("status")
        assert status["uid"] == nobody.pw_uid and status["pid"] == process.pid
        assert oct((d / "run" / "kinkd.sock").stat().st_mode & 0o777) == "0o660"
        assert len(helper.backend.dump_policies()) == 2  # b's trap policies

        # SIGHUP: the file now has no peer b; its policies go.
        toml = (d / "kink.toml").read_text()
        (d / "kink.toml").write_text(toml[: toml.index("[peers.b]")])
        seen.clear()
        process.send_signal(signal.SIGHUP)
        _receive_until(notify, "RELOADING=1", seen)
        _receive_until(notify, "READY=1", seen)
        with ControlClient(str(d / "run" / "kinkd.sock")) as client:
            assert client.request("peers")["peers"] == []
        process.send_signal(signal.SIGTERM)
        _receive_until(notify, "STOPPING=1", seen)
        assert process.wait(timeout=WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        notify.close()
        output = process.stdout.read() if process.stdout else ""
        print(output)  # shown by pytest when the test fails
    assert "<5>kinkd: kinkd 0.1.0 ready on 127.0.0.1:" in output  # journal form, no timestamp
    assert f"uid {nobody.pw_uid}" in output
    assert helper.backend.dump_policies() == []


# systemd's side of socket activation (sd_listen_fds(3)): the sockets on fds 3, 4, ...,
# $LISTEN_FDS their count and $LISTEN_PID the pid of the process that gets them (known only
# in the child: this sets it, then becomes kinkd). argv: the fds to pass, then kinkd's args.
_ACTIVATE = """\
import os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
for index, fd in enumerate(fds):
    os.dup2(fd, 3 + index)
for fd in set(fds) - set(range(3, 3 + len(fds))):
    os.close(fd)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(fds)))
os.execv(sys.executable, [sys.executable, "-m", "kink.daemon", *sys.argv[2:]])
"""


def _activated(sockets: list[socket.socket], *args: str) -> subprocess.Popen[str]:
    fds = [s.fileno() for s in sockets]
    assert min(fds) >= 3 + len(fds)  # not overwritten by the dup2 of another
    return subprocess.Popen(
        [sys.executable, "-c", _ACTIVATE, ",".join(map(str, fds)), *args],
        cwd=REPO,
        pass_fds=fds,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _status_until(path: Path, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """kinkd's status once `done` holds (its socket may not exist yet)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            with ControlClient(str(path), timeout=WAIT) as client:
                status = client.request("status")
        except (FileNotFoundError, ConnectionRefusedError):
            status = None
        if status is not None and done(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"kinkd's status never satisfied the test (last: {status})")


def test_systemd_socket_activation(node: tuple[Path, ThreadHelper]) -> None:
    d, _ = node
    configured = int(tomllib.loads((d / "kink.toml").read_text())["daemon"]["port"])
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    passed = udp.getsockname()[1]
    assert passed != configured
    process = _activated([udp], "--config", str(d / "kink.toml"))
    udp.close()  # kinkd has its own copy
    try:
        path = d / "run" / "kinkd.sock"
        status = _status_until(path, lambda s: True)
        # kinkd listens on the socket it was given, not on the configured port.
        assert status["listening"] == [["127.0.0.1", passed]]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as free:
            free.bind(("127.0.0.1", configured))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"not KINK", ("127.0.0.1", passed))
        status = _status_until(path, lambda s: s["transport"]["received"] == 1)
        assert status["transport"]["receive_queue_drops"] == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output = process.stdout.read() if process.stdout else ""
        print(output)
    assert f"ready on 127.0.0.1:{passed} as uid {pwd.getpwnam('nobody').pw_uid}" in output


def test_systemd_socket_activation_refuses_a_stream_socket(
    node: tuple[Path, ThreadHelper],
) -> None:
    d, _ = node
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", 0))
        process = _activated([tcp], "--config", str(d / "kink.toml"))
    output, _ = process.communicate(timeout=WAIT)
    assert process.returncode == 1
    assert "cannot start: systemd passed fd 3, which is not a UDP socket" in output
