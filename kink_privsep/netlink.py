"""A minimal netlink socket: one request and its answer (two syscalls), or pending multicasts.

Why not pyroute2: its request path costs ~14 syscalls per request and it has no XFRM messages
anyway (see the notes on XFRM); what the helper needs from netlink fits here. Every buffer that
may hold key material (requests, GETSA replies, dumps) is zeroed once read.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

from kink_privsep.errors import KernelError

NLMSG_HDR = struct.Struct("@IHHII")  # struct nlmsghdr: len, type, flags, seq, pid
_SEQ_PID = struct.Struct("@II")  # nlmsghdr's seq and pid, at offset 8
NLA_HDR = struct.Struct("@HH")  # struct nlattr: len, type
_ERRNO = struct.Struct("@i")  # struct nlmsgerr's error: 0 (an ACK) or -errno
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLMSGERR_ATTR_MSG = 1
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # errors do not echo the request (it may hold keys)
NETLINK_EXT_ACK = 11  # errors carry the kernel's reason text
SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>; the socket module lacks it
RECV_SIZE = 65536  # a dump part never exceeds 32 KiB; one event or reply is far smaller
MAX_PENDING_READS = 256
_ZEROS = memoryview(bytes(RECV_SIZE))  # wipes the receive buffer without making a copy to do it
# Plain ints: socket.MSG_* are IntFlag members, and `0 | MSG_TRUNC` runs IntFlag.__ror__ in
# Python (as long as the rest of a request's receive).
_MSG_TRUNC, _MSG_DONTWAIT = int(socket.MSG_TRUNC), int(socket.MSG_DONTWAIT)
_NO_HEADER = bytes(NLMSG_HDR.size)  # the room `message` fills in
_PADDING = bytes(3)  # nlattrs are 4-byte aligned
# <linux/filter.h>: classic BPF, the socket filters of SO_ATTACH_FILTER.
SO_ATTACH_FILTER = 26
SOCK_FILTER = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
_LD_W_ABS, _LD_H_ABS, _JEQ_K, _RET_K = 0x20, 0x28, 0x15, 0x06
_NLMSG_TYPE_OFFSET, _NLMSG_PID_OFFSET = 4, 12


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


T = TypeVar("T")
Decoder = Callable[[int, int, memoryview], T]  # (message type, sender portid, payload) -> T


def align4(n: int) -> int:
    return (n + 3) & ~3


def attributes(data: memoryview, offset: int) -> dict[int, memoryview]:
    """The nlattr TLVs of data[offset:], by type (flag bits removed)."""
    attrs: dict[int, memoryview] = {}
    end = len(data)
    while offset + NLA_HDR.size <= end:
        length, kind = NLA_HDR.unpack_from(data, offset)
        if length < NLA_HDR.size or offset + length > end:
            raise KernelError(errno.EBADMSG, "bad netlink attribute")
        attrs[kind & 0x3FFF] = data[offset + NLA_HDR.size : offset + length]
        offset += align4(length)
    return attrs


def attribute(kind: int, *payload: bytes | bytearray) -> list[bytes | bytearray]:
    """The parts of one nlattr (header, payload, padding), for `message`."""
    length = NLA_HDR.size
    for part in payload:  # a loop, not sum() of a generator: a frame less per attribute
        length += len(part)
    return [NLA_HDR.pack(length, kind), *payload, _PADDING[: align4(length) - length]]


def message(kind: int, flags: int, parts: list[bytes | bytearray]) -> bytearray:
    """One netlink message in one fresh bytearray (seq and pid are set when it is sent).

    bytearray.join sizes the result first and copies each part once into it: no intermediate
    immutable copy of a key, and no reallocation leaving one behind in freed memory."""
    msg = bytearray().join((_NO_HEADER, *parts))
    NLMSG_HDR.pack_into(msg, 0, len(msg), kind, flags, 0, 0)
    return msg


class NetlinkSocket:
    def __init__(self, protocol: int, groups: int = 0, rcvbuf: int = 0) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            if rcvbuf:
                # Events arrive in bursts (a flush, mass expiry); a deep queue avoids ENOBUFS.
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
                except PermissionError:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.bind((0, groups))
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.portid: int = sock.getsockname()[0]
        self._buf = bytearray(RECV_SIZE)
        self._seq = 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def drop_echoes(self, portid: int, kinds: frozenset[int]) -> None:
        """Have the kernel drop, before they are queued here, the multicasts of `kinds` whose
        nlmsg_pid is `portid`: the echoes of the changes made through that socket. Why: each
        one would cost a wake-up and a read (a system call) to be thrown away; the reader must
        still skip them itself wherever no filter runs (this is only an optimisation)."""

        def big_endian(value: int, size: int) -> int:
            # BPF loads are big-endian; netlink headers are in host order.
            return int.from_bytes(value.to_bytes(size, sys.byteorder), "big")

        n = len(kinds)
        program = [
            (_LD_W_ABS, 0, 0, _NLMSG_PID_OFFSET),
            (_JEQ_K, 0, n + 1, big_endian(portid, 4)),  # another sender: accept
            (_LD_H_ABS, 0, 0, _NLMSG_TYPE_OFFSET),
            *((_JEQ_K, n - i, 0, big_endian(kind, 2)) for i, kind in enumerate(sorted(kinds))),
            (_RET_K, 0, 0, 0xFFFF_FFFF),  # accept, whole
            (_RET_K, 0, 0, 0),  # drop
        ]
        code = ctypes.create_string_buffer(b"".join(SOCK_FILTER.pack(*i) for i in program))
        fprog = _SockFprog(len(program), ctypes.addressof(code))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))

    def close(self) -> None:
        self._sock.close()

    def request(self, msg: bytearray, decode: Decoder[T] | None = None) -> list[T]:
        """Send `msg` (then zero it) and read its whole answer: the decoded replies (several for
        a dump), or [] for an ACK. A kernel error raises KernelError."""
        self._seq = self._seq % 0xFFFF_FFFF + 1
        _SEQ_PID.pack_into(msg, 8, self._seq, self.portid)  # the kernel echoes our portid
        flags = NLMSG_HDR.unpack_from(msg)[2]
        try:
            self._sock.send(msg)
        finally:
            msg[:] = bytes(len(msg))
        results: list[T] = []
        while True:
            n = self._recv(0)
            try:
                for kind, seq, pid, body in self._messages(n):
                    if seq != self._seq:
                        continue  # a late answer to an earlier, abandoned request
                    if kind in (NLMSG_ERROR, NLMSG_DONE):
                        _raise_error(body, kind)
                        return results
                    if decode is None:
                        raise KernelError(errno.EBADMSG, f"unexpected netlink message {kind}")
                    results.append(decode(kind, pid, body))
                    if not flags & (NLM_F_ACK | NLM_F_DUMP):
                        return results  # a GET or ALLOCSPI has exactly one reply
            finally:
                self._buf[:n] = _ZEROS[:n]

    def pending(self, decode: Decoder[T]) -> tuple[list[T], bool]:
        """The messages already queued (multicast events; at most MAX_PENDING_READS reads),
        without blocking; and whether the kernel dropped some (ENOBUFS: the queue overflowed)."""
        results: list[T] = []
        lost = False
        for _ in range(MAX_PENDING_READS):  # the rest waits for the next call: others' turn
            try:
                n = self._recv(_MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                lost = True
                continue
            try:
                results.extend(decode(kind, pid, body) for kind, _, pid, body in self._messages(n))
            finally:
                self._buf[:n] = _ZEROS[:n]
        return results, lost

    def _recv(self, flags: int) -> int:
        n = self._sock.recv_into(self._buf, 0, flags | _MSG_TRUNC)
        if n > len(self._buf):
            self._buf[:] = _ZEROS
            raise KernelError(errno.EMSGSIZE, f"netlink message of {n} bytes")
        return n

    def _messages(self, n: int) -> Iterator[tuple[int, int, int, memoryview]]:
        view = memoryview(self._buf)[:n]
        offset = 0
        while offset + NLMSG_HDR.size <= n:
            length, kind, _flags, seq, pid = NLMSG_HDR.unpack_from(view, offset)
            if length < NLMSG_HDR.size or offset + length > n:
                raise KernelError(errno.EBADMSG, "bad netlink message length")
            yield kind, seq, pid, view[offset + NLMSG_HDR.size : offset + length]
            offset += align4(length)


def _raise_error(body: memoryview, kind: int) -> None:
    """NLMSG_ERROR (an ACK when the error is 0) or the NLMSG_DONE ending a dump."""
    if len(body) < 4:
        if kind == NLMSG_DONE:
            return
        raise KernelError(errno.EBADMSG, "short netlink error")
    err = -_ERRNO.unpack_from(body)[0]
    if err == 0:
        return
    detail = ""
    # struct nlmsgerr: error, the request's header (NETLINK_CAP_ACK: no payload), then TLVs
    tlv_offset = 4 + NLMSG_HDR.size
    if kind == NLMSG_ERROR and len(body) > tlv_offset:
        try:
            text = attributes(body, tlv_offset).get(NLMSGERR_ATTR_MSG)
        except KernelError:
            text = None  # the errno matters more than a garbled reason
        if text is not None:
            detail = bytes(text).rstrip(b"\0").decode("utf-8", "replace")
    raise KernelError(err, detail)
