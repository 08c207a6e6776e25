"""What the helper works with once a request is validated: SAs, policies, kernel events.

Numbers are the kernel's (IANA protocol numbers, XFRM modes/directions), so backends need no
translation; `*_to_wire` give the protocol.py shapes. Key material lives only in SaSpec, in
bytearrays that `wipe()` zeroes, and never appears in a repr.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kink_privsep.protocol import LIFETIME_FIELDS
from kink_privsep.schema import IPAddress, IPNetwork

_IPV4 = (ipaddress.IPv4Address, ipaddress.IPv4Network)

IPPROTO_ESP = 50
IPPROTO_AH = 51
MODE_TRANSPORT = 0
MODE_TUNNEL = 1
DIR_IN, DIR_OUT, DIR_FWD = 0, 1, 2
ACTION_ALLOW, ACTION_BLOCK = 0, 1
ENCAP_ESPINUDP_NONIKE, ENCAP_ESPINUDP = 1, 2  # <linux/udp.h> UDP_ENCAP_*
XFRM_INF = 2**64 - 1

PROTOS = {"esp": IPPROTO_ESP, "ah": IPPROTO_AH}
MODES = {"transport": MODE_TRANSPORT, "tunnel": MODE_TUNNEL}
DIRS = {"in": DIR_IN, "out": DIR_OUT, "fwd": DIR_FWD}
ACTIONS = {"allow": ACTION_ALLOW, "block": ACTION_BLOCK}
ENCAP_TYPES = {"espinudp-nonike": ENCAP_ESPINUDP_NONIKE, "espinudp": ENCAP_ESPINUDP}


def _name(table: dict[str, int], number: int) -> str:
    for name, n in table.items():
        if n == number:
            return name
    return str(number)


def family(addr: IPAddress | IPNetwork) -> int:
    # isinstance, not .version: a property call in Python, per address of every SA encoded
    return socket.AF_INET if isinstance(addr, _IPV4) else socket.AF_INET6


def _keep_hash(key: SaId | PolicyId, fields: tuple[object, ...]) -> int:
    """The hash of a key of the owned sets and the recording backend's tables, kept in it from
    its first use: such a key is looked up several times per request, and hashing its addresses
    (ipaddress, in Python) each time cost more than checking the request. Not at creation: the
    SAs of a dump (100,000s) are made and never looked up."""
    kept = hash(fields)
    object.__setattr__(key, "_hash", kept)
    return kept


@dataclass(frozen=True)
class Config:
    """What kink may touch (command line of the helper)."""

    # From "KI", as many as kinkd's [daemon] helper_reqids default (kink.daemon.config_peers).
    reqid_range: tuple[int, int] = (0x4B49_0000, 0x4B58_FFFF)
    priority_band: tuple[int, int] = (0x4B49_0000, 0x4B49_FFFF)
    # Bounds on what kink may make the kernel hold: 100,000 SA pairs with their rekeys in
    # flight, and a policy (in, out and forward) for each of 100,000 selector pairs.
    max_sas: int = 262_144
    max_policies: int = 393_216

    def owns_reqid(self, reqid: int) -> bool:
        return self.reqid_range[0] <= reqid <= self.reqid_range[1]

    def owns_priority(self, priority: int) -> bool:
        return self.priority_band[0] <= priority <= self.priority_band[1]


# The values of a request or a kernel object (Selector, Lifetime, Mark, Encap, Template, Counters,
# SaInfo) are NamedTuples: immutable and hashable like the frozen dataclasses here, but made in a
# third of the time (a frozen dataclass sets each field through object.__setattr__), and several
# are made for every SA and policy added or dumped. SaId and PolicyId stay dataclasses: they keep
# their hash (_keep_hash).
class Selector(NamedTuple):
    src: IPNetwork
    dst: IPNetwork
    proto: int = 0
    sport: int = 0
    dport: int = 0

    @property
    def family(self) -> int:
        return family(self.src)


class Lifetime(NamedTuple):
    """struct xfrm_lifetime_cfg. "No limit" is XFRM_INF for counts (0 would expire at the first
    packet) but 0 for times (the kernel adds them to add_time: XFRM_INF would wrap around and
    expire the object at its first timer tick, 1 s after it is added)."""

    soft_bytes: int = XFRM_INF
    hard_bytes: int = XFRM_INF
    soft_packets: int = XFRM_INF
    hard_packets: int = XFRM_INF
    soft_add_seconds: int = 0
    hard_add_seconds: int = 0
    soft_use_seconds: int = 0
    hard_use_seconds: int = 0

    def values(self) -> tuple[int, ...]:
        return tuple(self)


INFINITE = Lifetime()


class Mark(NamedTuple):
    value: int
    mask: int


class Encap(NamedTuple):
    type: int
    sport: int
    dport: int
    oa: IPAddress | None


@dataclass(frozen=True)
class SaId:
    """How the kernel finds an SA (XFRM_MSG_GETSA/DELSA)."""

    dst: IPAddress
    spi: int
    proto: int
    mark: Mark | None = None
    _hash: int | None = field(default=None, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        kept = self._hash
        if kept is None:
            kept = _keep_hash(self, (self.dst, self.spi, self.proto, self.mark))
        return kept


@dataclass
class SaSpec:
    """An SA to install; `enc`/`auth` are protocol.py algorithm names."""

    id: SaId
    src: IPAddress
    mode: int
    reqid: int
    enc: str | None
    enc_key: bytearray = field(repr=False)
    auth: str | None
    auth_key: bytearray = field(repr=False)
    replay_window: int = 32
    lifetime: Lifetime = INFINITE
    selector: Selector | None = None
    encap: Encap | None = None
    seq: int = 0

    def wipe(self) -> None:
        """Zero the keys: after the kernel has them the helper holds no secret."""
        self.enc_key[:] = bytes(len(self.enc_key))
        self.auth_key[:] = bytes(len(self.auth_key))


@dataclass
class SpiRequest:
    """XFRM_MSG_ALLOCSPI: a larval SA src->dst with an SPI from [spi_min, spi_max]."""

    proto: int
    mode: int
    src: IPAddress
    dst: IPAddress
    reqid: int
    spi_min: int
    spi_max: int
    seq: int = 0
    mark: Mark | None = None


class Template(NamedTuple):
    proto: int
    mode: int
    reqid: int
    src: IPAddress | None
    dst: IPAddress | None
    spi: int = 0
    optional: bool = False


@dataclass(frozen=True)
class PolicyId:
    """How the kernel finds a policy (XFRM_MSG_GETPOLICY/DELPOLICY, main policy type)."""

    dir: int
    selector: Selector
    mark: Mark | None = None
    _hash: int | None = field(default=None, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        kept = self._hash
        if kept is None:
            kept = _keep_hash(self, (self.dir, self.selector, self.mark))
        return kept


@dataclass(frozen=True)
class PolicySpec:
    id: PolicyId
    priority: int
    action: int = ACTION_ALLOW
    templates: tuple[Template, ...] = ()
    lifetime: Lifetime = INFINITE


class Counters(NamedTuple):
    """struct xfrm_lifetime_cur, struct xfrm_stats, XFRMA_LASTUSED, XFRMA_REPLAY_VAL."""

    bytes: int = 0
    packets: int = 0
    add_time: int = 0
    use_time: int = 0
    last_used: int = 0
    replay_errors: int = 0
    integrity_errors: int = 0
    replay_window_errors: int = 0
    seq: int = 0
    oseq: int = 0


class SaInfo(NamedTuple):
    """An SA as the kernel reports it (no keys)."""

    id: SaId
    src: IPAddress
    mode: int
    reqid: int
    enc: str | None
    auth: str | None
    replay_window: int = 0
    lifetime: Lifetime = INFINITE
    selector: Selector | None = None
    encap: Encap | None = None
    counters: Counters = Counters()


@dataclass(frozen=True)
class PolicyInfo:
    spec: PolicySpec
    index: int = 0
    add_time: int = 0
    use_time: int = 0


# Kernel events. SaChanged/PolicyChanged are changes by other processes: a backend does not
# report the echo of the helper's own requests (the service tracks those itself).
@dataclass(frozen=True)
class SaChanged:
    deleted: bool
    sa: SaInfo


@dataclass(frozen=True)
class PolicyChanged:
    deleted: bool
    policy: PolicyInfo


@dataclass(frozen=True)
class Flushed:
    what: str  # "sa" | "policy"


@dataclass(frozen=True)
class Expired:
    sa: SaInfo
    hard: bool


@dataclass(frozen=True)
class PolicyExpired:
    policy: PolicyInfo
    hard: bool


@dataclass(frozen=True)
class Acquire:
    seq: int
    proto: int
    src: IPAddress
    dst: IPAddress
    policy: PolicyInfo


@dataclass(frozen=True)
class EventsLost:
    pass


KernelEvent = SaChanged | PolicyChanged | Flushed | Expired | PolicyExpired | Acquire | EventsLost


# Validated requests (validate.py makes them, service.py carries them out). Not frozen: each is
# made for one request and dropped, and a frozen dataclass costs ~100 ns more per field.
@dataclass
class Hello:
    pass


@dataclass
class AddSa:
    sa: SaSpec
    update: bool


@dataclass
class GetSa:
    id: SaId


@dataclass
class DeleteSa:
    id: SaId


@dataclass
class AddPolicy:
    policy: PolicySpec
    update: bool


@dataclass
class DeletePolicy:
    id: PolicyId


@dataclass
class Dump:
    sas: bool
    policies: bool


@dataclass
class Flush:
    sas: bool
    policies: bool


@dataclass
class ReadBytes:
    """The byte counters of these SAs (protocol.py `counters`)."""

    ids: list[SaId]


Command = (
    Hello
    | SpiRequest
    | AddSa
    | GetSa
    | DeleteSa
    | AddPolicy
    | DeletePolicy
    | Dump
    | Flush
    | ReadBytes
)


def mark_to_wire(mark: Mark) -> dict[str, int]:
    return {"value": mark.value, "mask": mark.mask}


def selector_to_wire(sel: Selector) -> dict[str, Any]:
    return {
        "src": str(sel.src),
        "dst": str(sel.dst),
        "proto": sel.proto,
        "sport": sel.sport,
        "dport": sel.dport,
    }


def lifetime_to_wire(lft: Lifetime) -> dict[str, int]:
    """Only the limits that are set."""
    values = zip(LIFETIME_FIELDS, lft.values(), strict=True)
    return {n: v for n, v in values if v not in (0, XFRM_INF)}


def sa_to_wire(sa: SaInfo) -> dict[str, Any]:
    c = sa.counters
    out: dict[str, Any] = {
        "proto": _name(PROTOS, sa.id.proto),
        "mode": _name(MODES, sa.mode),
        "src": str(sa.src),
        "dst": str(sa.id.dst),
        "spi": sa.id.spi,
        "reqid": sa.reqid,
        "enc": sa.enc,
        "auth": sa.auth,
        "replay_window": sa.replay_window,
        "lifetime": lifetime_to_wire(sa.lifetime),
        "counters": {
            "bytes": c.bytes,
            "packets": c.packets,
            "add_time": c.add_time,
            "use_time": c.use_time,
            "last_used": c.last_used,
            "replay_errors": c.replay_errors,
            "integrity_errors": c.integrity_errors,
            "replay_window_errors": c.replay_window_errors,
            "seq": c.seq,
            "oseq": c.oseq,
        },
    }
    if sa.selector is not None:
        out["selector"] = selector_to_wire(sa.selector)
    if sa.id.mark is not None:
        out["mark"] = mark_to_wire(sa.id.mark)
    if sa.encap is not None:
        e = sa.encap
        out["encap"] = {"type": _name(ENCAP_TYPES, e.type), "sport": e.sport, "dport": e.dport}
        if e.oa is not None:
            out["encap"]["oa"] = str(e.oa)
    return out


def template_to_wire(t: Template) -> dict[str, Any]:
    out: dict[str, Any] = {
        "proto": _name(PROTOS, t.proto),
        "mode": _name(MODES, t.mode),
        "reqid": t.reqid,
        "spi": t.spi,
        "optional": t.optional,
    }
    if t.src is not None:
        out["src"] = str(t.src)
    if t.dst is not None:
        out["dst"] = str(t.dst)
    return out


def policy_to_wire(info: PolicyInfo) -> dict[str, Any]:
    p = info.spec
    out: dict[str, Any] = {
        "dir": _name(DIRS, p.id.dir),
        "selector": selector_to_wire(p.id.selector),
        "priority": p.priority,
        "action": _name(ACTIONS, p.action),
        "templates": [template_to_wire(t) for t in p.templates],
        "lifetime": lifetime_to_wire(p.lifetime),
        "index": info.index,
        "add_time": info.add_time,
        "use_time": info.use_time,
    }
    if p.id.mark is not None:
        out["mark"] = mark_to_wire(p.id.mark)
    return out


def acquire_to_wire(ev: Acquire) -> dict[str, Any]:
    return {
        "seq": ev.seq,
        "proto": _name(PROTOS, ev.proto),
        "src": str(ev.src),
        "dst": str(ev.dst),
        "policy": policy_to_wire(ev.policy),
    }
