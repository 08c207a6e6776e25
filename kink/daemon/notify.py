"""systemd's notification protocol (sd_notify(3)) without libsystemd: one datagram per message
to the AF_UNIX socket named by $NOTIFY_SOCKET ("@" = abstract namespace)."""

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("kinkd")


class Notifier:
    """READY=1 (with STATUS=), RELOADING=1, WATCHDOG=1, STOPPING=1 when started by systemd;
    else nothing."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address: str | bytes | None = None
        if address:
            # An abstract socket name starts with a NUL byte where systemd writes "@".
            self._address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval = watchdog_usec / 1e6 if watchdog_usec else None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "Notifier":
        """$NOTIFY_SOCKET, and $WATCHDOG_USEC when $WATCHDOG_PID is unset or ours."""
        usec: int | None = None
        pid = environ.get("WATCHDOG_PID")
        if environ.get("WATCHDOG_USEC", "").isdigit() and (pid is None or pid == str(os.getpid())):
            usec = int(environ["WATCHDOG_USEC"]) or None
        return cls(environ.get("NOTIFY_SOCKET"), usec)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> None:
        if self._address is None:
            return
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self._address)
        except OSError as exc:
            # systemd going away must not take the daemon with it.
            log.warning("sd_notify failed: %s", exc.strerror or exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> None:
        # Type=notify-reload wants the reload's start time on CLOCK_MONOTONIC.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")
