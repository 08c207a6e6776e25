"""A blocking client of the helper, for tests and tools (the daemon uses protocol.py with its
own trio socket). Requests may be pipelined: send() several (or send_batch() them), then
wait() for each id."""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Sequence
from typing import Any

from kink_privsep import protocol
from kink_privsep.protocol import Event, Reply


class PrivsepError(Exception):
    """The helper refused a request: `code` is a protocol.ERR_*."""

    def __init__(self, code: str, reason: str, errno: int | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.errno = errno


class Client:
    def __init__(self, path: str, timeout: float | None = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        except BaseException:
            self.sock.close()
            raise
        self.events: deque[Event] = deque()
        self._next_id = 0
        self._replies: dict[int | None, Reply] = {}
        self._parts: dict[int, dict[str, Any]] = {}

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, op: str, args: dict[str, Any] | None = None) -> int:
        """Send one request; its id, for wait()."""
        self._next_id = self._next_id % 0xFFFF_FFFF + 1
        self.sock.send(protocol.encode_request(self._next_id, op, args or {}))
        return self._next_id

    def send_batch(self, requests: Sequence[tuple[str, dict[str, Any]]]) -> list[int]:
        """Send requests as one batch (protocol.py, "Batches"); their ids, for wait()."""
        ids, encoded = [], []
        for op, args in requests:
            self._next_id = self._next_id % 0xFFFF_FFFF + 1
            ids.append(self._next_id)
            encoded.append(protocol.encode_request(self._next_id, op, args))
        self.sock.send(protocol.encode_batch(encoded))
        return ids

    def wait(self, req_id: int | None) -> Reply:
        """The (whole) reply to request `req_id` (None: to an undecodable request); events and
        other replies that come first are kept."""
        while req_id not in self._replies:
            self._read()
        return self._replies.pop(req_id)

    def call(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """send + wait; the result, or PrivsepError."""
        reply = self.wait(self.send(op, args))
        if not reply.ok:
            raise PrivsepError(reply.error, reply.reason, reply.errno)
        return reply.result

    def next_event(self) -> Event:
        while not self.events:
            self._read()
        return self.events.popleft()

    def _read(self) -> None:
        data = self.sock.recv(protocol.MAX_MESSAGE)
        if not data:
            raise ConnectionError("the helper closed the connection")
        for msg in protocol.decode_messages(data):
            if isinstance(msg, Event):
                self.events.append(msg)
            elif msg.more and msg.id is not None:
                protocol.extend_result(self._parts.setdefault(msg.id, {}), msg.result)
            else:
                if msg.id in self._parts:
                    result = self._parts.pop(msg.id)
                    protocol.extend_result(result, msg.result)
                    msg = Reply(msg.id, msg.ok, result)
                self._replies[msg.id] = msg
