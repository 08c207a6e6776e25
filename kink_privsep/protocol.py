"""The protocol between the kink daemon and kink_privsep, its root helper for XFRM.

Both sides import this module; it needs only msgpack and the standard library.

Transport: a Unix SOCK_SEQPACKET connection; every message is one msgpack map (binary strings as
msgpack bin, text as str). The helper treats its peer as hostile: each request is checked against
REQUESTS below (and against the helper's reqid range / priority band) before anything reaches the
kernel, and a refused request costs only an error reply.

Envelope:
  request  {"v": 1, "id": u32, "op": str, "args": map}
  reply    {"v": 1, "id": u32, "ok": true, "result": map}
           {"v": 1, "id": u32, "ok": true, "more": true, "result": map}   (dump only, see below)
           {"v": 1, "id": u32 | nil, "ok": false, "error": ERR_*, "reason": str[, "errno": int]}
  event    {"v": 1, "event": EVENT_*, "data": map}
  batch    {"v": 1, "batch": [request | reply | event, ...]}   (see below)
Many requests may be in flight; replies carry the request's id and come in request order. Events
go to every connection, in kernel order; those pending when a message (a request or a batch)
is taken are sent before the replies to it. A `dump` reply may be split: parts
with "more": true, then a last part without it; concatenate the lists of every part
(`extend_result`). An undecodable request gets an error reply with id nil. An empty message
ends the connection, like EOF (SOCK_SEQPACKET reads both as 0 bytes).

Batches: one message may carry several requests, as a batch of 1 to MAX_BATCH request maps
(MAX_BATCH_BYTES in all; a lone request stays within MAX_REQUEST), when the hello
result's "max_batch" allows it. Why: each message costs a system call and a wake-up of the
other process, far more than the helper's work on a request. The requests of a batch are
exactly those of single messages, in order: each is checked on its own (one that is refused
is answered with its error and touches nothing; the others go ahead) and carried out in turn.
A batch that is itself malformed (not a list, empty, too long, other keys) gets one error reply
with id nil and none of its requests is carried out. A connection that has sent a batch gets
its replies and events batched too (as many as MAX_BATCH_BYTES holds, in the order they would
have come one by one); one that never has gets one per message.

Operations (args -> result); field types are in REQUESTS:
  hello          {} -> {"version", "backend", "reqid_range": [lo, hi], "priority_band": [lo, hi],
                        "max_sas", "max_policies", "owned_sas", "owned_policies", "max_batch",
                        "max_counters"}
                 ("max_batch": requests a batch may hold; a helper without it takes none;
                 "max_counters": SAs a `counters` request may name; a helper without it has no
                 `counters`)
  alloc_spi      SPI_REQUEST -> {"spi"}  a larval SA (reqid set) to fill with update_sa; the
                 kernel drops it after ~30 s (a hard "expire" event). "seq" answers an ACQUIRE
                 that this helper forwarded.
  add_sa         SA -> {}                XFRM_MSG_NEWSA ("seq": ACQUIRE answered, as for alloc_spi)
  update_sa      SA -> {}                XFRM_MSG_UPDSA on an SA kink owns (fills an allocated
                 SPI; on a mature SA the kernel changes lifetimes only, never keys: delete + add)
  delete_sa      SA_ID -> {}
  get_sa         SA_ID -> {"sa": SA_INFO}
  add_policy     POLICY -> {}            XFRM_MSG_NEWPOLICY
  update_policy  POLICY -> {}            XFRM_MSG_UPDPOLICY: replaces kink's policy, or adds one
  delete_policy  POLICY_ID -> {}
  dump           {"what": "all"|"sa"|"policy"} -> {"sas": [SA_INFO], "policies": [POLICY_INFO]}
  counters       {"sas": [SA_ID]} -> {"bytes": [int|nil]}  each SA's byte counter, in the order
                 named; nil for an SA that is gone or not kink's. For dead peer detection
                 (RFC 4430 §3.7), which needs only these: a dump of every SA with all its fields
                 cost 36-60 ms of the helper's time in one turn with 2,000 SAs (issue 9).
  flush          {"what": ...} -> {"sas": n, "policies": n}   deletes what kink owns, nothing else
kink owns an SA whose reqid is in the helper's reqid range (SPI 0, the kernel's own ACQUIRE
placeholder, excepted) and a policy whose priority is in its priority band; requests outside
them are refused (ERR_FORBIDDEN), objects outside them are never shown nor changed
(ERR_NOT_OWNED). Keys ("enc_key", "auth_key") are msgpack bin.

Results describing kernel objects (keys are never returned):
  SA_INFO      {"proto", "mode", "src", "dst", "spi", "reqid", "enc": name|nil, "auth": name|nil,
                "replay_window", "lifetime": LIFETIME, "counters": {"bytes", "packets",
                "add_time", "use_time", "last_used", "replay_errors", "integrity_errors",
                "replay_window_errors", "seq", "oseq"}[, "selector", "mark", "encap"]}
                An SA from alloc_spi not yet filled has enc and auth nil. Times are seconds
                since the epoch (0 = never); lifetime lists only the limits that are set.
  POLICY_INFO  POLICY fields (all of them; "mark" when set) + {"index", "add_time", "use_time"}
Events (data):
  acquire        {"seq", "proto", "src", "dst", "policy": POLICY_INFO}  (kink's policies only);
                 answer with alloc_spi/add_sa carrying this seq
  expire         {"hard": bool, "sa": SA_INFO}        soft: rekey now; hard: the SA is gone
  polexpire      {"hard": bool, "policy": POLICY_INFO}
  sa_deleted     {"sa": SA_INFO}          one of kink's SAs deleted by someone else
  policy_deleted {"policy": POLICY_INFO}  one of kink's policies deleted by someone else
  flushed        {"what": "sa"|"policy"}  someone flushed the kernel tables: dump to resync
  events_lost    {}                       the kernel dropped events (socket overrun): dump
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack

from kink_privsep.schema import Addr, Bin, Bool, Enum, Int, List, Map, Opt, Prefix

VERSION = 1
MAX_REQUEST = 8192  # bytes; the largest valid request (a policy with 4 templates) is ~1 KiB
MAX_BATCH = 64  # requests in one batch
# Bytes of a batch, either way: MAX_BATCH policies of ~1 KiB; and far below the socket's send
# buffer (net.core.wmem_default, 208 KiB), which bounds a SOCK_SEQPACKET message (EMSGSIZE).
MAX_BATCH_BYTES = 65536
MAX_MESSAGE = 262144  # bytes; no reply or event is larger (dumps are split below this)
# SAs one `counters` request may name: 64 IPv6 SA_IDs with marks are ~6 KiB, within MAX_REQUEST,
# and a turn of the helper that reads them (a netlink round trip each) stays short.
MAX_COUNTERS = 64

# Error codes of a refused request.
ERR_MALFORMED = "malformed"  # not one msgpack map of the envelope above, or too large
ERR_VERSION = "version"  # "v" is not VERSION
ERR_UNKNOWN_OP = "unknown_op"
ERR_INVALID = "invalid"  # args do not match REQUESTS, or are inconsistent (family, key length)
ERR_FORBIDDEN = "forbidden"  # reqid / priority outside kink's range, or a seq not from an ACQUIRE
ERR_NOT_OWNED = "not_owned"  # the kernel object exists but is not kink's
ERR_LIMIT = "limit"  # kink already owns the maximum number of SAs / policies
ERR_EXISTS = "exists"  # EEXIST
ERR_NOT_FOUND = "not_found"  # ENOENT / ESRCH
ERR_KERNEL = "kernel"  # any other kernel error; the reply carries "errno"
ERR_INTERNAL = "internal"  # a bug in the helper; the request may or may not have been applied

EVENT_ACQUIRE = "acquire"
EVENT_EXPIRE = "expire"
EVENT_POLEXPIRE = "polexpire"
EVENT_SA_DELETED = "sa_deleted"
EVENT_POLICY_DELETED = "policy_deleted"
EVENT_FLUSHED = "flushed"
EVENT_EVENTS_LOST = "events_lost"


@dataclass(frozen=True)
class EncAlgorithm:
    key_lengths: tuple[int, ...]  # bytes; AEAD keys include the 4-byte salt (RFC 4106 §8.1)
    aead: bool


# The allow-list. Key lengths decide the AES variant: 16/24/32 bytes for AES-CBC (RFC 3602),
# 16/32 + 4 salt for AES-GCM with a 16-byte ICV (RFC 4106). NULL encryption (RFC 2410) must come
# with an integrity algorithm, as must AES-CBC; AES-GCM must not.
ENC_ALGORITHMS: Mapping[str, EncAlgorithm] = {
    "aes-cbc": EncAlgorithm((16, 24, 32), aead=False),
    "aes-gcm": EncAlgorithm((20, 36), aead=True),
    "null": EncAlgorithm((0,), aead=False),
}
# name -> key length in bytes; HMAC-SHA1-96 (RFC 2404), HMAC-SHA2 (RFC 4868 §2.1.1).
AUTH_ALGORITHMS: Mapping[str, int] = {
    "hmac-sha1-96": 20,
    "hmac-sha256-128": 32,
    "hmac-sha384-192": 48,
    "hmac-sha512-256": 64,
}

LIFETIME_FIELDS = (
    "soft_bytes",
    "hard_bytes",
    "soft_packets",
    "hard_packets",
    "soft_add_seconds",
    "hard_add_seconds",
    "soft_use_seconds",
    "hard_use_seconds",
)

U8 = Int(0, 0xFF)
U16 = Int(0, 0xFFFF)
U32 = Int(0, 0xFFFF_FFFF)
SPI = Int(256, 0xFFFF_FFFF)  # RFC 4303 §2.1: 1-255 are reserved, 0 means "no SA"
PORT = Int(1, 0xFFFF)
COUNT = Int(1, 2**64 - 2)  # bytes, packets; "no limit" is the field left out
SECONDS = Int(1, 0xFFFF_FFFF)  # the kernel adds these to a time64_t: keep them far from 2**63
IPSEC_PROTO = Enum(("esp", "ah"))
MODE = Enum(("transport", "tunnel"))
WHAT = Enum(("all", "sa", "policy"))

MARK = Map({"value": U32, "mask": Opt(U32, 0xFFFF_FFFF)})
LIFETIME = Map({name: Opt(SECONDS if "seconds" in name else COUNT) for name in LIFETIME_FIELDS})
# Ports need a protocol; for ICMP they carry type (sport) and code (dport), as in XFRM.
SELECTOR = Map(
    {
        "src": Prefix(),
        "dst": Prefix(),
        "proto": Opt(U8, 0),
        "sport": Opt(U16, 0),
        "dport": Opt(U16, 0),
    }
)
# ESP-in-UDP (RFC 3948), passed to XFRMA_ENCAP; "oa" is the peer's original address.
ENCAP = Map(
    {"type": Enum(("espinudp", "espinudp-nonike")), "sport": PORT, "dport": PORT, "oa": Opt(Addr())}
)
SA = Map(
    {
        "proto": IPSEC_PROTO,
        "mode": MODE,
        "src": Addr(),
        "dst": Addr(),
        "spi": SPI,
        "reqid": U32,
        "enc": Opt(Enum(tuple(ENC_ALGORITHMS))),  # ESP only, required there
        "enc_key": Opt(Bin(64), b""),
        "auth": Opt(Enum(tuple(AUTH_ALGORITHMS))),  # AH, and ESP without AEAD
        "auth_key": Opt(Bin(64), b""),
        "replay_window": Opt(Int(0, 32), 32),  # packets; XFRM's legacy bitmap holds 32
        "lifetime": Opt(LIFETIME),
        "selector": Opt(SELECTOR),
        "mark": Opt(MARK),
        "encap": Opt(ENCAP),
        "seq": Opt(U32, 0),
    }
)
SA_ID = Map({"proto": IPSEC_PROTO, "dst": Addr(), "spi": SPI, "mark": Opt(MARK)})
SPI_REQUEST = Map(
    {
        "proto": IPSEC_PROTO,
        "mode": Opt(MODE, "transport"),
        "src": Addr(),
        "dst": Addr(),
        "reqid": U32,
        "spi_min": Opt(SPI, 256),
        "spi_max": Opt(SPI, 0xFFFF_FFFF),
        "seq": Opt(U32, 0),
        "mark": Opt(MARK),
    }
)
# Tunnel templates name both endpoints; transport templates may (0 / absent = any).
TEMPLATE = Map(
    {
        "proto": IPSEC_PROTO,
        "mode": MODE,
        "reqid": U32,
        "src": Opt(Addr()),
        "dst": Opt(Addr()),
        "spi": Opt(U32, 0),
        "optional": Opt(Bool(), False),
    }
)
POLICY = Map(
    {
        "dir": Enum(("in", "out", "fwd")),
        "selector": SELECTOR,
        "priority": U32,
        "action": Opt(Enum(("allow", "block")), "allow"),
        "templates": Opt(List(TEMPLATE, 4), ()),
        "mark": Opt(MARK),
        "lifetime": Opt(LIFETIME),
    }
)
POLICY_ID = Map({"dir": Enum(("in", "out", "fwd")), "selector": SELECTOR, "mark": Opt(MARK)})
SCOPE = Map({"what": Opt(WHAT, "all")})
COUNTERS = Map({"sas": List(SA_ID, MAX_COUNTERS)})

REQUESTS: Mapping[str, Map] = {
    "hello": Map({}),
    "alloc_spi": SPI_REQUEST,
    "add_sa": SA,
    "update_sa": SA,
    "delete_sa": SA_ID,
    "get_sa": SA_ID,
    "add_policy": POLICY,
    "update_policy": POLICY,
    "delete_policy": POLICY_ID,
    "dump": SCOPE,
    "flush": SCOPE,
    "counters": COUNTERS,
}

_ENVELOPE = {"v", "id", "op", "args"}
_BATCH = {"v", "batch"}


class ProtocolError(Exception):
    """A message that breaks this protocol; `code` is one of ERR_*."""

    def __init__(self, code: str, reason: str, req_id: int | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.req_id = req_id


# The decoded messages are named tuples, not frozen dataclasses: the daemon and the helper make
# one per request and per reply (thousands a second under load), and a frozen dataclass's
# __init__ (object.__setattr__ per field) cost three times as much. Immutable all the same.
class Request(NamedTuple):
    id: int
    op: str
    args: dict[str, Any]  # may hold keys: left out of the repr

    def __repr__(self) -> str:
        return f"Request(id={self.id!r}, op={self.op!r})"


class Reply(NamedTuple):
    id: int | None
    ok: bool
    result: dict[str, Any]
    error: str = ""
    reason: str = ""
    errno: int | None = None
    more: bool = False


class Event(NamedTuple):
    kind: str
    data: dict[str, Any]


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


_BATCH_HEAD = _pack({"v": VERSION, "batch": []})[:-1]  # the batch map up to its list
BATCH_OVERHEAD = len(_BATCH_HEAD) + 3  # bytes a batch adds to what it holds (encode_batch)


def _unpack(data: bytes | bytearray | memoryview, limit: int) -> object:
    if len(data) > limit:
        raise ProtocolError(ERR_MALFORMED, f"message larger than {limit} bytes")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, timestamp=0)
    except Exception as e:  # msgpack raises several types for bad input; all mean the same
        raise ProtocolError(ERR_MALFORMED, f"not msgpack: {type(e).__name__}") from None


def encode_request(req_id: int, op: str, args: Mapping[str, Any]) -> bytes:
    return _pack({"v": VERSION, "id": req_id, "op": op, "args": args})


def decode_request(data: bytes | bytearray | memoryview) -> Request:
    """The envelope of one request (args not yet checked: see REQUESTS); ProtocolError if bad."""
    return _request(_unpack(data, MAX_REQUEST))


def decode_requests(
    data: bytes | bytearray | memoryview,
) -> tuple[bool, list[Request | ProtocolError]]:
    """Whether a message is a batch, and its requests, each decoded on its own: a ProtocolError
    stands for each one that is bad, or alone for a message that is."""
    try:
        msg = _unpack(data, MAX_BATCH_BYTES)
        if type(msg) is not dict or "batch" not in msg:
            if len(data) > MAX_REQUEST:
                raise ProtocolError(ERR_MALFORMED, f"request larger than {MAX_REQUEST} bytes")
            return False, [_request(msg)]
    except ProtocolError as e:
        return False, [e]
    items = msg["batch"]
    if (
        set(msg) != _BATCH
        or type(msg["v"]) is not int
        or msg["v"] != VERSION
        or type(items) is not list
        or not 1 <= len(items) <= MAX_BATCH
    ):
        reason = f"a batch is {{v: {VERSION}, batch: [1 to {MAX_BATCH} requests]}}"
        return True, [ProtocolError(ERR_MALFORMED, reason)]
    out: list[Request | ProtocolError] = []
    for item in items:
        try:
            out.append(_request(item))
        except ProtocolError as e:
            out.append(e)
    return True, out


def _request(msg: object) -> Request:
    if type(msg) is not dict:
        raise ProtocolError(ERR_MALFORMED, "a request is a msgpack map")
    raw_id = msg.get("id")
    req_id = raw_id if type(raw_id) is int and 0 <= raw_id <= 0xFFFF_FFFF else None
    # type() and not ==: 1.0 and True equal 1 in Python, but are not this protocol's "v".
    if "v" in msg and (type(msg["v"]) is not int or msg["v"] != VERSION):
        raise ProtocolError(ERR_VERSION, f"this helper speaks version {VERSION}", req_id)
    op, args = msg.get("op"), msg.get("args")
    if msg.keys() != _ENVELOPE or req_id is None or type(op) is not str or type(args) is not dict:
        raise ProtocolError(ERR_MALFORMED, "a request is {v, id: u32, op: str, args: map}", req_id)
    if op not in REQUESTS:
        raise ProtocolError(ERR_UNKNOWN_OP, f"unknown op {op[:40]!r}", req_id)
    return Request(req_id, op, args)


# A reply is built from bytes made once: {"v": 1, "id": <uint 32>, "ok": true, "result": ...
# [, "more": true]}. Why: the helper answers every request (thousands a second under load),
# and packing the envelope as a dict each time cost as much as the rest of the encoding. The
# id always takes msgpack's uint 32 form, which every decoder reads as the same integer.
_REPLY_HEAD = bytes([0x84]) + _pack("v") + _pack(VERSION) + _pack("id") + b"\xce"
_REPLY_MORE_HEAD = bytes([0x85]) + _REPLY_HEAD[1:]
_REPLY_OK = _pack("ok") + _pack(True) + _pack("result")
_REPLY_MORE = _pack("more") + _pack(True)
_EMPTY_RESULT = _pack({})


def encode_reply(req_id: int, result: Mapping[str, Any], *, more: bool = False) -> bytes:
    packed = _pack(result) if result else _EMPTY_RESULT
    if more:
        return b"".join(
            (_REPLY_MORE_HEAD, req_id.to_bytes(4, "big"), _REPLY_OK, packed, _REPLY_MORE)
        )
    return b"".join((_REPLY_HEAD, req_id.to_bytes(4, "big"), _REPLY_OK, packed))


def encode_error(req_id: int | None, code: str, reason: str, errno: int | None = None) -> bytes:
    reply: dict[str, Any] = {"v": VERSION, "id": req_id, "ok": False, "error": code}
    reply["reason"] = reason
    if errno is not None:
        reply["errno"] = errno
    return _pack(reply)


def encode_event(kind: str, data: Mapping[str, Any]) -> bytes:
    return _pack({"v": VERSION, "event": kind, "data": data})


def encode_batch(messages: Sequence[bytes]) -> bytes:
    """A batch of already encoded requests (or replies and events): the batch map around them."""
    n = len(messages)
    head = bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")  # msgpack array
    return b"".join((_BATCH_HEAD, head, *messages))


def decode_messages(data: bytes | bytearray | memoryview) -> list[Reply | Event]:
    """The replies and events of one message from the helper (one, or a batch), in order;
    ProtocolError if any is not one."""
    msg = _unpack(data, MAX_MESSAGE)
    if type(msg) is dict and "batch" in msg:
        items = msg["batch"]
        if set(msg) != _BATCH or msg["v"] != VERSION or type(items) is not list:
            raise ProtocolError(ERR_MALFORMED, "not a version 1 batch")
        return [_message(item) for item in items]
    return [_message(msg)]


def decode_message(data: bytes | bytearray | memoryview) -> Reply | Event:
    """One message from the helper (the daemon's side); ProtocolError if it is not one."""
    return _message(_unpack(data, MAX_MESSAGE))


def _message(msg: object) -> Reply | Event:
    if type(msg) is not dict or msg.get("v") != VERSION:
        raise ProtocolError(ERR_MALFORMED, "not a version 1 message")
    try:
        if "event" in msg:
            return Event(str(msg["event"]), dict(msg["data"]))
        if msg["ok"] is True:
            return Reply(
                msg["id"], True, dict(msg["result"]), "", "", None, msg.get("more") is True
            )
        errno = msg.get("errno")
        return Reply(msg["id"], False, {}, str(msg["error"]), str(msg["reason"]), errno)
    except (KeyError, TypeError, ValueError):
        raise ProtocolError(ERR_MALFORMED, "incomplete reply or event") from None


def extend_result(acc: dict[str, Any], part: Mapping[str, Any]) -> None:
    """Add one part of a split reply ("more": true) to `acc`: lists are concatenated."""
    for key, value in part.items():
        if isinstance(value, list):
            acc.setdefault(key, []).extend(value)
        else:
            acc[key] = value
