"""Running kink_privsep for tests: in a thread (recording backend) or as its own process."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kink_privsep.client import Client
from kink_privsep.main import listening_socket
from kink_privsep.model import Config
from kink_privsep.protocol import Event
from kink_privsep.recording import RecordingBackend
from kink_privsep.server import Server
from kink_privsep.service import Service

REPO = Path(__file__).resolve().parents[2]

# Tests get their own reqid range and priority band, far from the defaults and from other
# software, so that they never own (nor touch) anything else on a shared kernel.
TEST_REQIDS = (0x6B70_0000, 0x6B70_00FF)
TEST_PRIORITIES = (0x6B70_0000, 0x6B70_00FF)
TEST_CONFIG = Config(TEST_REQIDS, TEST_PRIORITIES, max_sas=8, max_policies=4)
TEST_RANGES = [  # the same, as the helper's command line takes them
    "--reqid-range",
    "{}-{}".format(*TEST_REQIDS),
    "--priority-band",
    "{}-{}".format(*TEST_PRIORITIES),
]


@contextlib.contextmanager
def short_dir() -> Iterator[Path]:
    """A temp dir with a path short enough for a Unix socket (pytest's may exceed 108 bytes)."""
    d = tempfile.mkdtemp(prefix="kp-")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class ThreadHelper:
    path: str
    backend: RecordingBackend
    service: Service
    server: Server

    def client(self) -> Client:
        return Client(self.path)


@contextlib.contextmanager
def thread_helper(
    config: Config = TEST_CONFIG, service_class: type[Service] = Service
) -> Iterator[ThreadHelper]:
    """The helper's server on a thread of this process, on a RecordingBackend; `calls` is
    empty when the helper is ready."""
    with short_dir() as d:
        path = str(d / "privsep.sock")
        listener, _ = listening_socket(path, os.getuid())
        backend = RecordingBackend()
        service = service_class(backend, config)
        server = Server(listener, service, os.getuid())
        thread = threading.Thread(target=server.run, name="privsep", daemon=True)
        thread.start()
        backend.calls.clear()
        try:
            yield ThreadHelper(path, backend, service, server)
        finally:
            server.stop()
            thread.join()
            listener.close()
            backend.close()


@dataclass
class ProcessHelper:
    path: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self) -> Client:
        return Client(self.path)


@contextlib.contextmanager
def process_helper(*args: str, netns: str | None = None) -> Iterator[ProcessHelper]:
    """`python -m kink_privsep --socket ... --daemon-uid <ours> *args`, in `netns` if given,
    running until the block ends. Its log is helper.log next to the socket."""
    with short_dir() as d:
        path = str(d / "privsep.sock")
        cmd = [sys.executable, "-m", "kink_privsep", "--socket", path]
        cmd += ["--daemon-uid", str(os.getuid()), *args]
        if netns is not None:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        log = d / "helper.log"
        with log.open("wb") as out:
            process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            _wait_connectable(path, process, log)
            yield ProcessHelper(path, process, log)
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wait_connectable(path: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"helper exited {process.returncode}:\n{log.read_text()}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            try:
                s.connect(path)
                return
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.05)
    raise RuntimeError(f"helper did not listen on {path}:\n{log.read_text()}")


def wait_event(client: Client, match: Callable[[Event], bool], timeout: float = 30.0) -> Event:
    """The first event that `match`es (others are dropped); TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    before = client.sock.gettimeout()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching event")
            client.sock.settimeout(remaining)
            event = client.next_event()
            if match(event):
                return event
    finally:
        client.sock.settimeout(before)
