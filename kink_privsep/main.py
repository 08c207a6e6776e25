"""Command line of the helper: `python -m kink_privsep --socket PATH --daemon-uid UID ...`.

Start-up order: open the listening socket (bound here, or fd 3 from systemd socket activation)
and the XFRM netlink sockets as root, then drop to CAP_NET_ADMIN as --user, then serve.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import pwd
import signal
import socket
import stat
import sys

from kink_privsep.backend import Backend, XfrmBackend
from kink_privsep.model import Config
from kink_privsep.privileges import drop_privileges
from kink_privsep.recording import RecordingBackend
from kink_privsep.server import Server
from kink_privsep.service import Service

log = logging.getLogger("kink_privsep")

SD_LISTEN_FDS_START = 3
# Middle-generation collections per full one (Python's default: 10). A full collection goes over
# every object the helper holds, above all its owned SAs and policies (service.py), 100,000s at
# scale: they live until kink deletes them and hold no reference cycles, so full passes over them
# find nothing. With the 20,000 policies of 10,000 peers installed at kinkd's start, full passes
# were a fifth of the helper's CPU at the default (issue 9).
FULL_COLLECTION_EVERY = 100


def _range(text: str) -> tuple[int, int]:
    """ "A-B", decimal or 0x-hex, within u32."""
    try:
        lo, hi = (int(part, 0) for part in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A-B, got {text!r}") from None
    if not 0 <= lo <= hi <= 0xFFFF_FFFF:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= A <= B < 2**32")
    return lo, hi


def _user(text: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(text)) if text.isdigit() else pwd.getpwnam(text)
    except KeyError:
        raise argparse.ArgumentTypeError(f"no such user {text!r}") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = Config()
    ap = argparse.ArgumentParser(
        prog="kink-privsep",
        description="kink's privileged helper: programs XFRM for the kink daemon.",
    )
    ap.add_argument("--socket", help="Unix socket path (unless started by socket activation)")
    ap.add_argument("--daemon-uid", type=_user, required=True, help="the only uid (or user) served")
    ap.add_argument(
        "--reqid-range",
        type=_range,
        default="{:#x}-{:#x}".format(*d.reqid_range),
        metavar="A-B",
        help="the reqids of kink's SAs and templates (default %(default)s)",
    )
    ap.add_argument(
        "--priority-band",
        type=_range,
        default="{:#x}-{:#x}".format(*d.priority_band),
        metavar="A-B",
        help="the priorities of kink's policies (default %(default)s)",
    )
    ap.add_argument(
        "--backend",
        choices=("xfrm", "recording"),
        default="xfrm",
        help="recording: in-memory tables instead of the kernel, for tests and benchmarks",
    )
    ap.add_argument("--max-sas", type=_positive, default=d.max_sas, metavar="N")
    ap.add_argument("--max-policies", type=_positive, default=d.max_policies, metavar="N")
    ap.add_argument("--user", type=_user, default="nobody", help="run as this user after start")
    ap.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    return ap.parse_args(argv)


def listening_socket(path: str | None, owner_uid: int) -> tuple[socket.socket, str | None]:
    """The socket systemd passed (LISTEN_FDS/LISTEN_PID, fd 3), or a new one at `path`
    (mode 0600, owned by the daemon's uid); and the path to remove at exit."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS"):
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
        sock.set_inheritable(False)
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
            sock.close()
            raise SystemExit("kink-privsep: the activated socket is not AF_UNIX SOCK_SEQPACKET")
        return sock, None
    if path is None:
        raise SystemExit("kink-privsep: --socket is required without socket activation")
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # left by a previous run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chown(path, owner_uid, -1)
    sock.listen(16)
    return sock, path


class LineHandler(logging.Handler):
    """Each record as one line in one write(2) to `fd`, unbuffered and without a lock.

    Why not logging.StreamHandler: it takes its lock, writes through the buffered stream (whose
    lock is another) and flushes; CPython 3.11 reads the monotonic clock on every lock acquire
    (sem_clockwait), and LogRecord asks for the process id: seven system calls a line, against
    two here (the record's time and the write). One write(2) of a line is whole even when two
    threads log at once, so no lock is needed."""

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


def setup_logging(level: str) -> None:
    logging.logProcesses = False  # journald and the log file name the process
    handler = LineHandler(sys.stderr.fileno())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def collect_less() -> None:
    """Full collections of the cycle collector after FULL_COLLECTION_EVERY middle ones."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.log_level)
    collect_less()
    config = Config(args.reqid_range, args.priority_band, args.max_sas, args.max_policies)
    daemon_uid: int = args.daemon_uid.pw_uid
    listener, path = listening_socket(args.socket, daemon_uid)
    backend: Backend = XfrmBackend() if args.backend == "xfrm" else RecordingBackend()
    try:
        try:
            drop_privileges(args.user.pw_uid, args.user.pw_gid)
        except OSError as e:
            raise SystemExit(f"kink-privsep: cannot drop to CAP_NET_ADMIN: {e}") from None
        server = Server(listener, Service(backend, config), daemon_uid)
        signal.signal(signal.SIGTERM, lambda *_: server.stop())
        signal.signal(signal.SIGINT, lambda *_: server.stop())
        log.info(
            "serving uid %d on %s, %s backend, reqids %d-%d, priorities %d-%d",
            daemon_uid,
            path or "an activated socket",
            backend.name,
            *config.reqid_range,
            *config.priority_band,
        )
        server.run()
    finally:
        backend.close()
        listener.close()
        if path is not None:
            # After the drop to --user the directory may forbid this; the next start cleans up.
            with contextlib.suppress(OSError):
                os.unlink(path)


if __name__ == "__main__":
    main()
