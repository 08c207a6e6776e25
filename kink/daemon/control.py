"""The control socket server: kinkctl's requests (kink.daemon.control_protocol) to the daemon.

Access control is the socket file's: mode 0660, owned by the daemon's user and the configured
control group. Each connection is a task of the server's nursery; a monitoring connection gets
events through a bounded channel and is dropped if it stops reading (the daemon never waits for
a slow kinkctl).
"""

import contextlib
import grp
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import trio

from kink.daemon import control_protocol as cp

log = logging.getLogger("kinkd.control")

Handler = Callable[[cp.Request], Awaitable[dict[str, Any]]]
MONITOR_QUEUE = 1024
MAX_CONNECTIONS = 64


def bind(path: Path, group: str | None) -> socket.socket:
    """The listening socket at `path` (a stale one is replaced), mode 0660, group `group`."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        old = os.umask(0o117)  # never world-accessible, not even between bind and chmod
        try:
            sock.bind(os.fspath(path))
        finally:
            os.umask(old)
        if group is not None:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
        os.chmod(path, 0o660)
        sock.listen(16)
    except BaseException:
        sock.close()
        raise
    return sock


class ControlServer:
    def __init__(self, sock: socket.socket, path: Path, handler: Handler) -> None:
        self._listener = trio.socket.from_stdlib_socket(sock)
        self.path = path
        self._handler = handler
        self._monitors: set[trio.MemorySendChannel[bytes]] = set()
        self._connections = 0

    @property
    def listening(self) -> bool:
        """Whether a monitor is attached: an event's data is made only then (1,000s a second)."""
        return bool(self._monitors)

    def publish(self, kind: str, data: Mapping[str, Any]) -> None:
        """Send an event to every monitor; one that cannot keep up is dropped."""
        if not self._monitors:
            return
        line = cp.encode_event(kind, time.time(), data)
        for channel in list(self._monitors):
            try:
                channel.send_nowait(line)
            except trio.WouldBlock:
                log.info("dropping a monitor that does not read its events")
                self._monitors.discard(channel)
                channel.close()
            except trio.ClosedResourceError:
                self._monitors.discard(channel)

    async def serve(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    conn, _ = await self._listener.accept()
                    if self._connections >= MAX_CONNECTIONS:
                        conn.close()
                        continue
                    nursery.start_soon(self._connection, conn)
        finally:
            self._listener.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    async def _connection(self, conn: trio.socket.SocketType) -> None:
        self._connections += 1
        stream = trio.SocketStream(conn)
        try:
            async with stream:
                buffer = bytearray()
                while True:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    buffer += chunk
                    while (end := buffer.find(b"\n")) >= 0:
                        line, buffer = bytes(buffer[:end]), buffer[end + 1 :]
                        replies, monitor = await self._answer(line)
                        for reply in replies:  # a paged answer: a part encoded, then sent
                            await stream.send_all(reply)
                        if monitor:
                            await self._monitor(stream)
                            return
                    if len(buffer) > cp.MAX_LINE:
                        await stream.send_all(cp.encode_error(None, cp.ERR_MALFORMED, "too long"))
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            self._connections -= 1

    async def _answer(self, line: bytes) -> tuple[Iterable[bytes], bool]:
        """The response lines to a request line, and whether it starts a monitor stream."""
        try:
            request = cp.decode_request(line)
        except cp.ControlError as exc:
            return [cp.encode_error(exc.request_id, exc.code, exc.message)], False
        if request.command == "monitor":
            return [cp.encode_result(request.id, {})], True
        try:
            result = await self._handler(request)
        except cp.ControlError as exc:
            return [cp.encode_error(request.id, exc.code, exc.message)], False
        except Exception:
            return [self._failed(request)], False
        return self._parts(request, result), False

    def _parts(self, request: cp.Request, result: dict[str, Any]) -> Iterator[bytes]:
        """The parts of the answer (cp.encode_parts); a failure while making them (a paged
        list made as it is gone through) ends the answer with an error."""
        try:
            yield from cp.encode_parts(request, result)
        except Exception:
            yield self._failed(request)

    @staticmethod
    def _failed(request: cp.Request) -> bytes:
        log.exception("control command %s failed", request.command)
        return cp.encode_error(request.id, cp.ERR_INTERNAL, "see the daemon's log")

    async def _monitor(self, stream: trio.SocketStream) -> None:
        send, receive = trio.open_memory_channel[bytes](MONITOR_QUEUE)
        self._monitors.add(send)
        try:
            async with trio.open_nursery() as nursery:
                # The client sends nothing more; its EOF ends the subscription.
                async def watch_eof() -> None:
                    while await stream.receive_some(4096):
                        pass
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch_eof)
                async for line in receive:
                    await stream.send_all(line)
                nursery.cancel_scope.cancel()
        finally:
            self._monitors.discard(send)
            send.close()
