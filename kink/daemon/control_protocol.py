"""The control protocol between kinkd and kinkctl (and any script): the one place it is defined.

Transport: the Unix stream socket at [daemon] control_socket (mode 0660, group control_group;
the kernel's file permissions are the access control). Every message is one JSON object on one
line (UTF-8, ending in "\\n"; a request at most MAX_LINE bytes, an answer or event at most
MAX_ANSWER). Requests on a connection are answered in order; a client may send several.

  request   {"v": 1, "id": int, "command": COMMAND, "args": {...}}
  response  {"v": 1, "id": int, "ok": true, "result": {...}}
            {"v": 1, "id": int, "ok": true, "more": true, "result": {...}}   a part, see below
            {"v": 1, "id": int | null, "ok": false, "error": ERR_*, "message": str}
  event     {"v": 1, "event": EVENT_*, "time": float (Unix time), "data": {...}}

Paged answers: a command of PAGED asked with "paged": true among its args is answered in parts,
each a response line; every part but the last has "more": true. Each part's result has the
whole result's keys, the list named in PAGED holding the next PAGE items (fewer in the last
part, which may hold none): the result is the parts' lists joined, in order. A client can use
(print) each part as it comes, and kinkd encodes and sends one part at a time (issue 9: the
`sas` answer for 100,000 SA pairs is some 60 MB of JSON, which a client should not have to
hold whole, nor wait for whole). An error response may follow parts (a failure while making
the rest): the answer is then that error, whatever parts came before it. Without "paged" the
answer is one response, as for any command (clients written before parts existed).

Commands (args -> result). SPIs are integers; times are seconds; absent values are null.
  status     {} -> {"version", "pid", "uid", "epoch", "uptime", "address", "port",
                    "listening": [[host, port]], "log_level", "principal",
                    "tgt_expiry": Unix time | null,
                    "helper": {"connected", "backend", "connects"},
                    "peers": {"total", "up", "down"}, "sas": int, "transactions": int,
                    "counters": {name: int},
                    "transport": {"received", "sent", "send_errors", "receive_queue_drops"},
                    "kerberos": {"fetches", "failures"}}
  peers      {} -> {"peers": [{"name", "address", "port", "principal", "start_action", "mode",
                    "epoch", "sas", "transactions", "queued", "rtt"}]}
  sas        {} | {"paged": true} -> {"sas": [{"child", "peer", "state", "initiator",
                    "mode", "reqid", "peer_epoch", "rekey_in", "expires_in", "age",
                    "local": SELECTOR, "remote": SELECTOR, "pfs_group": "modp2048" | null,
                    "life": {"soft_seconds", "hard_seconds", "soft_bytes", "hard_bytes"},
                    "sas": [{"protocol": "esp"|"ah", "spi_in", "spi_out",
                             "enc", "enc_key_bits", "icv_bits", "auth", "auth_trunc_bits",
                             "bytes_in", "packets_in", "bytes_out", "packets_out"}]}]}
             SELECTOR (RFC 4430 §5.3 IDci/IDcr): {"subnet": "10.1.0.0/24", "protocol": int
             (IANA number, 0 any; IP_PROTOCOL_NAMES names the common ones), "port": int (0 any)}.
             rekey_in / expires_in: seconds until we rekey (null: the peer rekeys, §3.6) / until
             the hard lifetime ends the SAs (null: none). life: what the SAs were installed
             with (null: no limit). enc: "aes-cbc" | "aes-gcm" (AEAD, icv_bits its ICV) |
             "null" | null (AH); enc_key_bits without GCM's salt; auth: "hmac-sha1" |
             "hmac-sha256" | "hmac-sha384" | "hmac-sha512" | null, truncated to auth_trunc_bits.
             Counters are the kernel's (null when it has no such SA).
  initiate   {"peer": name} -> {}                 negotiates the peer's policies now
  terminate  {"peer": name} | {"spi": int} -> {"children": n}   DELETE (RFC 4430 §3.3)
  rekey      {"peer": name} | {"spi": int} -> {"children": n}
  reload     {} -> {"added": [names], "removed": [names], "changed": [names],
                    "unchanged": [names]}         as SIGHUP; ERR_CONFIG with the loader's text
  log-level  {} | {"level": LEVEL} -> {"level"}   LEVEL: debug|info|notice|warning|error
  monitor    {} -> {} then events, until the client closes the connection
Events (monitor): sa-up {"peer", "child", "initiator", "spis": [["esp"|"ah", in, out]],
  "three_way", "rekey_of"}, sa-down {"peer", "child", "reason"}, peer-epoch {"peer", "old",
  "new"}, negotiation-failed {"peer", "command", "reason", "code"}, dropped {"cause", "from"},
  helper {"connected"}, reload {"added", "removed", "changed"}, log-level {"level"}.
"""

import json
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

VERSION = 1
# Where kinkd listens unless [daemon] control_socket says otherwise, and where kinkctl looks.
DEFAULT_CONTROL_SOCKET = "/run/kink/kinkd.sock"
# Selector protocols by IANA number: the names kink.toml accepts and kinkctl shows.
IP_PROTOCOL_NAMES = {0: "any", 1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 58: "icmpv6", 132: "sctp"}
MAX_LINE = 1 << 20  # a request: what kinkd reads from a client
# What a client reads in one line: the largest answers are paged (a part of `sas` is ~0.6 MB);
# `peers` is not, at ~250 bytes a peer.
MAX_ANSWER = 1 << 28
PAGE = 1000  # items in a part of a paged answer
# Paged commands (see above): the result key holding the list that is split among the parts.
PAGED = {"sas": "sas"}

COMMANDS = (
    "status",
    "peers",
    "sas",
    "initiate",
    "terminate",
    "rekey",
    "reload",
    "log-level",
    "monitor",
)

ERR_MALFORMED = "malformed"  # not a request of this protocol
ERR_VERSION = "version"
ERR_UNKNOWN_COMMAND = "unknown-command"
ERR_INVALID = "invalid"  # bad or missing arguments
ERR_UNKNOWN_PEER = "unknown-peer"
ERR_NOT_FOUND = "not-found"  # no SA with that SPI
ERR_CONFIG = "config"  # reload: the new configuration is invalid (nothing changed)
ERR_INTERNAL = "internal"

EVENT_SA_UP = "sa-up"
EVENT_SA_DOWN = "sa-down"
EVENT_PEER_EPOCH = "peer-epoch"
EVENT_NEGOTIATION_FAILED = "negotiation-failed"
EVENT_DROPPED = "dropped"
EVENT_HELPER = "helper"
EVENT_RELOAD = "reload"
EVENT_LOG_LEVEL = "log-level"


class ControlError(Exception):
    """An error answer (`code` is ERR_*), or a message breaking this protocol."""

    def __init__(self, code: str, message: str, request_id: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class Request:
    id: int
    command: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Event:
    kind: str
    time: float
    data: dict[str, Any]


def _line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _parse(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError:
        raise ControlError(ERR_MALFORMED, "not a JSON line") from None
    if type(obj) is not dict:
        raise ControlError(ERR_MALFORMED, "a message is a JSON object")
    return obj


def encode_request(request_id: int, command: str, args: Mapping[str, Any] | None = None) -> bytes:
    return _line({"v": VERSION, "id": request_id, "command": command, "args": dict(args or {})})


def decode_request(line: bytes) -> Request:
    """ControlError (with the request id when it could be read) if `line` is not a request."""
    obj = _parse(line)
    rid = obj.get("id")
    request_id = rid if type(rid) is int else None
    if obj.get("v") != VERSION:
        raise ControlError(ERR_VERSION, f"this daemon speaks version {VERSION}", request_id)
    command, args = obj.get("command"), obj.get("args", {})
    if request_id is None or type(command) is not str or type(args) is not dict:
        raise ControlError(ERR_MALFORMED, "a request is {v, id: int, command: str, args: {}}")
    if command not in COMMANDS:
        raise ControlError(ERR_UNKNOWN_COMMAND, f"unknown command {command[:40]!r}", request_id)
    return Request(request_id, command, args)


def encode_result(request_id: int, result: Mapping[str, Any], *, more: bool = False) -> bytes:
    """A response; `more`: a part of a paged answer that others follow."""
    message: dict[str, Any] = {"v": VERSION, "id": request_id, "ok": True}
    if more:
        message["more"] = True
    message["result"] = dict(result)
    return _line(message)


def encode_parts(request: Request, result: Mapping[str, Any]) -> Iterator[bytes]:
    """The response lines answering `request` with `result`: one, or the parts of a paged
    answer, each encoded when asked for (the paged list may be any iterable, gone through
    once, a part at a time)."""
    key = PAGED.get(request.command)
    if key is None:
        yield encode_result(request.id, result)
        return
    items = iter(result[key])
    if request.args.get("paged") is not True:
        yield encode_result(request.id, {**result, key: list(items)})
        return
    page = list(islice(items, PAGE))
    while True:
        following = list(islice(items, PAGE))
        yield encode_result(request.id, {**result, key: page}, more=bool(following))
        if not following:
            return
        page = following


def encode_error(request_id: int | None, code: str, message: str) -> bytes:
    return _line({"v": VERSION, "id": request_id, "ok": False, "error": code, "message": message})


def encode_event(kind: str, time: float, data: Mapping[str, Any]) -> bytes:
    return _line({"v": VERSION, "event": kind, "time": time, "data": dict(data)})


class ControlClient:
    """A blocking client (kinkctl, tests, scripts).

    Connecting raises FileNotFoundError / ConnectionRefusedError when the daemon is not
    running and PermissionError when the socket's permissions deny access."""

    def __init__(self, path: str, timeout: float | None = 30.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(path)
        except BaseException:
            self._sock.close()
            raise
        self._file = self._sock.makefile("rb")
        self._next_id = 0

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> dict[str, Any]:
        line = self._file.readline(MAX_ANSWER + 1)
        if not line:
            raise ConnectionError("kinkd closed the control connection")
        return _parse(line)

    def request(self, command: str, **args: Any) -> dict[str, Any]:
        """The result of one command (a paged answer's parts joined); ControlError for an
        error answer."""
        parts = self.parts(command, **args)
        result = next(parts)
        key = PAGED.get(command)
        for part in parts:
            assert key is not None  # only paged answers come in parts
            result[key] += part[key]
        return result

    def parts(self, command: str, **args: Any) -> Iterator[dict[str, Any]]:
        """Send one command now (a PAGED one asking for a paged answer); its result part by
        part (one part unless the command is PAGED), each as it is read. ControlError for an
        error answer, when it comes."""
        if command in PAGED:
            args = {**args, "paged": True}
        self._next_id += 1
        self._sock.sendall(encode_request(self._next_id, command, args))
        return self._results()

    def _results(self) -> Iterator[dict[str, Any]]:
        while True:
            reply = self._read()
            if "event" in reply:
                continue  # a monitor stream's event; callers of request() do not monitor
            if reply.get("ok") is not True:
                code, message = str(reply.get("error")), str(reply.get("message"))
                raise ControlError(code, message, reply.get("id"))
            result: dict[str, Any] = reply["result"]
            yield result
            if reply.get("more") is not True:
                return

    def subscribe(self) -> Iterator[Event]:
        """Subscribe to the events (the `monitor` command) and return them as an iterator.

        Returns once kinkd has answered `{}`: every event from then on is in the iterator, which
        ends with ConnectionError when the daemon stops. ControlError if kinkd refused."""
        self.request("monitor")
        return self._events()

    def _events(self) -> Iterator[Event]:
        while True:
            msg = self._read()
            if "event" in msg:
                yield Event(str(msg["event"]), float(msg["time"]), dict(msg["data"]))
