"""The helper's loop: the Unix socket, its clients, and the kernel's events, on one thread.

Why an epoll loop and not trio: every kernel request is a synchronous netlink round trip of
some microseconds, so there is nothing to overlap; one thread taking requests in order keeps
the root process small (no trio in it) and makes ordering trivial. Clients still pipeline:
they may send many requests before reading replies, and replies carry the request id.

Each message is handled the same way, one request or a batch of them (protocol.py): pending
kernel events are forwarded first (so a client sees them before the reply to anything that
followed them), then each request in turn: decode -> validate -> execute. A refused request
costs only its error reply. What a message brings about is sent once it is all done: the
replies to a batch (and the events before them) leave together, batched for a client that
batches (one send, one wake-up of the daemon). A client that does not read its replies and
events is first no longer read from, then dropped.

One message is taken from each ready client per turn of the loop; epoll is level-triggered, so
a client with more queued is ready again at once. Why: reading on until the queue is empty
cost a read that finds nothing (a system call and an exception) on every wake-up, and the
events socket had to be read before each message after the first (another that mostly found
nothing). Now the turn itself says whether events are pending, and the events socket is read
only then (and before a second client's message in the same turn). Three system calls a
message: wait, receive, send. epoll is used directly, not through the selectors module, whose
select() builds a list of its keys in Python on every turn (half a microsecond each).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import struct
from collections import deque
from dataclasses import dataclass, field
from itertools import islice

from kink_privsep import protocol, validate
from kink_privsep.errors import Refusal
from kink_privsep.service import Forward, Service

log = logging.getLogger(__name__)

MAX_CLIENTS = 16
PAUSE_QUEUE = 256  # queued messages above which a client's requests wait
MAX_QUEUE = 65536  # queued messages above which a client is dropped (it stopped reading)
_UCRED = struct.Struct("@iII")  # struct ucred: pid, uid, gid

_LISTENER, _KERNEL, _WAKE = "listener", "kernel", "wake"
# A hang-up or error is reported whatever the mask: it counts as both, so that the receive or
# send that follows meets it and drops the client.
_READABLE = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR
_WRITABLE = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR
_ZEROS = memoryview(bytes(protocol.MAX_BATCH_BYTES))  # wipes the receive buffer, no copy made


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    pid: int  # for the log
    out: deque[bytes] = field(default_factory=deque)
    events: int = 0  # the epoll mask it is registered with (EPOLLIN, EPOLLOUT)
    batches: bool = False  # it has sent a batch: it gets its replies and events batched


class Server:
    def __init__(self, listener: socket.socket, service: Service, daemon_uid: int) -> None:
        self._listener = listener
        self._service = service
        self._daemon_uid = daemon_uid
        self._clients: set[_Client] = set()
        self._buf = bytearray(protocol.MAX_BATCH_BYTES)
        self._view = memoryview(self._buf)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopping = False
        self._pumped = False  # the kernel's events are forwarded up to the last wake-up
        self.requests = 0  # taken so far, and the messages that brought them (for benchmarks)
        self.messages = 0
        self._epoll = select.epoll()
        self._fds: dict[int, _Client | str] = {}  # what each registered descriptor is
        listener.setblocking(False)
        for fd, what in (
            (listener.fileno(), _LISTENER),
            (service.backend.fileno(), _KERNEL),
            (self._wake_r, _WAKE),
        ):
            self._epoll.register(fd, select.EPOLLIN)
            self._fds[fd] = what

    def stop(self) -> None:
        """Make run() return; safe from a signal handler or another thread."""
        self._stopping = True
        with contextlib.suppress(OSError):  # a full or closed pipe: run() is waking or gone
            os.write(self._wake_w, b"\0")

    def run(self) -> None:
        try:
            while not self._stopping:
                # A plain loop: in Python 3.11 a comprehension or any() makes a function object
                # and a frame each time, a sixth of the loop's own instructions per message.
                kernel, ready = False, []
                for fd, mask in self._epoll.poll():
                    what = self._fds.get(fd)
                    if what is _KERNEL:
                        kernel = True
                    else:
                        ready.append((what, mask))
                if kernel:
                    self._forward(self._service.pump())
                    self._flush()
                self._pumped = True
                for what, mask in ready:
                    if isinstance(what, _Client):
                        if what not in self._clients:
                            continue  # dropped earlier in this turn
                        if mask & _WRITABLE and what.events & select.EPOLLOUT:
                            self._send(what)
                        if mask & _READABLE and what.events & select.EPOLLIN:
                            self._receive(what)
                    elif what is _LISTENER:
                        self._accept()
                    elif what is _WAKE:
                        os.read(self._wake_r, 4096)
        finally:
            for client in list(self._clients):
                self._drop(client, "helper stopping")
            self._epoll.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    # -- clients -----------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            pid, uid, _gid = _UCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            )
            if uid != self._daemon_uid:
                log.warning("refused connection from uid %d pid %d", uid, pid)
                sock.close()
                continue
            if len(self._clients) >= MAX_CLIENTS:
                self._drop_hung_up()
            if len(self._clients) >= MAX_CLIENTS:
                log.warning("refused connection from pid %d: %d clients", pid, MAX_CLIENTS)
                sock.close()
                continue
            sock.setblocking(False)
            client = _Client(sock, pid)
            self._clients.add(client)
            self._update(client)
            log.info("client pid %d connected", pid)

    def _drop_hung_up(self) -> None:
        """Drop clients that have closed their end but whose requests are still queued here.

        Why: a daemon that restarts quickly reconnects before this loop has read its old
        connection to the end; that connection can never read a reply, so it must not hold
        one of the MAX_CLIENTS places (its unread requests are abandoned with it)."""
        poller = select.poll()
        for client in self._clients:
            poller.register(client.sock, 0)  # POLLHUP and POLLERR are always reported
        hung_up = {fd for fd, mask in poller.poll(0) if mask & (select.POLLHUP | select.POLLERR)}
        for client in list(self._clients):
            if client.sock.fileno() in hung_up:
                self._drop(client, "closed, requests abandoned")

    def _drop(self, client: _Client, why: str) -> None:
        self._clients.discard(client)
        if client.events:
            fd = client.sock.fileno()
            self._epoll.unregister(fd)
            del self._fds[fd]
        client.sock.close()
        log.info("client pid %d gone: %s", client.pid, why)

    def _update(self, client: _Client) -> None:
        """Register for reading unless its queue is long, for writing while it has one."""
        want = select.EPOLLIN if len(client.out) < PAUSE_QUEUE else 0
        if client.out:
            want |= select.EPOLLOUT
        if want == client.events:
            return
        fd = client.sock.fileno()
        if not client.events:
            self._epoll.register(fd, want)
            self._fds[fd] = client
        elif not want:
            self._epoll.unregister(fd)
            del self._fds[fd]
        else:
            self._epoll.modify(fd, want)
        client.events = want

    def _receive(self, client: _Client) -> None:
        """Take one message (see the module's docstring for why only one)."""
        try:
            n = client.sock.recv_into(self._buf, 0, socket.MSG_TRUNC)
        except BlockingIOError:
            return
        except OSError as e:
            self._drop(client, e.strerror or "receive failed")
            return
        if n == 0:
            self._drop(client, "closed")
            return
        size = min(n, len(self._buf))
        try:
            self._handle(client, self._view[:size], n)
        finally:
            self._view[:size] = _ZEROS[:size]  # requests may carry keys
        self._flush()

    def _queue(self, client: _Client, message: bytes) -> None:
        if client not in self._clients:
            return
        if len(client.out) >= MAX_QUEUE:
            self._drop(client, f"{MAX_QUEUE} messages unread")
            return
        client.out.append(message)

    def _flush(self) -> None:
        """Send what was queued (to every client: events go to all)."""
        for client in list(self._clients):
            if client.out:
                self._send(client)

    def _send(self, client: _Client) -> None:
        out = client.out
        while out:
            count = _batchable(out) if client.batches else 1
            message = out[0] if count == 1 else protocol.encode_batch(list(islice(out, count)))
            try:
                client.sock.send(message)
            except BlockingIOError:
                break
            except OSError as e:
                self._drop(client, e.strerror or "send failed")
                return
            for _ in range(count):
                out.popleft()
        self._update(client)

    def _forward(self, events: list[Forward]) -> None:
        for kind, data in events:
            message = protocol.encode_event(kind, data)
            for client in list(self._clients):
                self._queue(client, message)

    # -- one message -----------------------------------------------------------------------

    def _handle(self, client: _Client, data: memoryview, size: int) -> None:
        """Queue the events pending now, then the replies to the message's requests."""
        if not self._pumped:
            self._forward(self._service.pump())
        self._pumped = False
        self.messages += 1
        requests: list[protocol.Request | protocol.ProtocolError]
        if size > len(data):
            reason = f"message larger than {protocol.MAX_BATCH_BYTES} bytes"
            batch, requests = False, [protocol.ProtocolError(protocol.ERR_MALFORMED, reason)]
        else:
            batch, requests = protocol.decode_requests(data)
        client.batches |= batch
        for request in requests:
            for reply in self._answer(request):
                self._queue(client, reply)

    def _answer(self, request: protocol.Request | protocol.ProtocolError) -> list[bytes]:
        """The encoded reply (or replies, for a split dump) to one request."""
        self.requests += 1
        if isinstance(request, protocol.ProtocolError):
            return [protocol.encode_error(request.req_id, request.code, request.reason)]
        try:
            command = validate.command(request.op, request.args, self._service.config)
            results = self._service.execute(command)
        except Refusal as e:
            log.info("refused %s #%d: %s: %s", request.op, request.id, e.code, e.reason)
            return [protocol.encode_error(request.id, e.code, e.reason, e.errno)]
        except Exception:
            # A bug: say so and keep serving. The traceback shows code, not the arguments.
            log.exception("internal error in %s #%d", request.op, request.id)
            reason = "internal error (see the helper's log)"
            return [protocol.encode_error(request.id, protocol.ERR_INTERNAL, reason)]
        if len(results) == 1:  # every request but a split dump
            return [protocol.encode_reply(request.id, results[0])]
        last = len(results) - 1
        return [protocol.encode_reply(request.id, r, more=i < last) for i, r in enumerate(results)]


def _batchable(out: deque[bytes]) -> int:
    """How many of the first queued messages one batch holds (at least one)."""
    room = protocol.MAX_BATCH_BYTES - protocol.BATCH_OVERHEAD
    count = 0
    for message in out:
        room -= len(message)
        if room < 0:
            break
        count += 1
    return max(1, count)
