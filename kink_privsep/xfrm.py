"""XFRM netlink messages (<linux/xfrm.h>) as bytes: struct layouts, encoders, decoders. No I/O.

Each kernel struct is a Layout: named members in a native-aligned struct.Struct, so sizes and
offsets follow the C ABI; tests/privsep/test_layout.py checks every one against gcc. Addresses
are 16-byte unions with IPv4 in the first 4 bytes; only SPIs and ports are big-endian.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Sequence
from typing import Any

from kink_privsep.errors import KernelError
from kink_privsep.model import (
    MODE_TUNNEL,
    Acquire,
    Counters,
    Encap,
    Expired,
    Flushed,
    KernelEvent,
    Lifetime,
    Mark,
    PolicyChanged,
    PolicyExpired,
    PolicyId,
    PolicyInfo,
    PolicySpec,
    SaChanged,
    SaId,
    SaInfo,
    SaSpec,
    Selector,
    SpiRequest,
    Template,
    family,
)
from kink_privsep.netlink import (
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    attribute,
    attributes,
    message,
)
from kink_privsep.protocol import AUTH_ALGORITHMS, ENC_ALGORITHMS
from kink_privsep.schema import IPAddress, IPNetwork

NETLINK_XFRM = 6
XFRMGRP_ACQUIRE, XFRMGRP_EXPIRE, XFRMGRP_SA, XFRMGRP_POLICY = 0x1, 0x2, 0x4, 0x8

XFRM_MSG_NEWSA = 0x10
XFRM_MSG_DELSA = 0x11
XFRM_MSG_GETSA = 0x12
XFRM_MSG_NEWPOLICY = 0x13
XFRM_MSG_DELPOLICY = 0x14
XFRM_MSG_GETPOLICY = 0x15
XFRM_MSG_ALLOCSPI = 0x16
XFRM_MSG_ACQUIRE = 0x17
XFRM_MSG_EXPIRE = 0x18
XFRM_MSG_UPDPOLICY = 0x19
XFRM_MSG_UPDSA = 0x1A
XFRM_MSG_POLEXPIRE = 0x1B
XFRM_MSG_FLUSHSA = 0x1C
XFRM_MSG_FLUSHPOLICY = 0x1D
XFRM_MSG_NEWAE = 0x1E
XFRM_MSG_GETAE = 0x1F
# What the SA and POLICY groups multicast for a change made through netlink.
CHANGE_MESSAGES = frozenset(
    {
        XFRM_MSG_NEWSA,
        XFRM_MSG_UPDSA,
        XFRM_MSG_DELSA,
        XFRM_MSG_NEWPOLICY,
        XFRM_MSG_UPDPOLICY,
        XFRM_MSG_DELPOLICY,
    }
)

XFRMA_ALG_CRYPT = 2
XFRMA_ENCAP = 4
XFRMA_TMPL = 5
XFRMA_SA = 6
XFRMA_POLICY = 7
XFRMA_LTIME_VAL = 9
XFRMA_REPLAY_VAL = 10
XFRMA_LASTUSED = 15
XFRMA_ALG_AEAD = 18
XFRMA_ALG_AUTH_TRUNC = 20
XFRMA_MARK = 21

# protocol.py algorithm names -> kernel crypto API names. Always XFRMA_ALG_AUTH_TRUNC: the legacy
# XFRMA_ALG_AUTH truncates every HMAC to 96 bits, RFC 4868 §2.3 wants half the hash.
KERNEL_ENC = {"aes-cbc": "cbc(aes)", "aes-gcm": "rfc4106(gcm(aes))", "null": "ecb(cipher_null)"}
KERNEL_AUTH = {
    "hmac-sha1-96": ("hmac(sha1)", 96),
    "hmac-sha256-128": ("hmac(sha256)", 128),
    "hmac-sha384-192": ("hmac(sha384)", 192),
    "hmac-sha512-256": ("hmac(sha512)", 256),
}
AEAD_ICV_BITS = 128  # RFC 4106 §8.1: the 16-octet ICV is the one kink offers
ALL_ALGOS = 0xFFFF_FFFF  # template masks: anything else drops inbound packets (XfrmInTmplMismatch)

Member = tuple[str, "str | Layout"]


class Layout:
    """A C struct as a flat struct.Struct with named members ("sel.daddr" for nested ones).

    Codes are struct codes; a leading "0I"/"0Q" aligns the member (xfrm_address_t is a union
    aligned like __be32). A nested Layout is aligned to its strictest member, as C does.
    """

    def __init__(self, c_type: str, members: Sequence[Member], align: str) -> None:
        self.c_type = c_type
        self.align = align
        self.names: list[str] = []
        self.offsets: dict[str, int] = {}
        body = ""
        for name, member in members:
            if isinstance(member, Layout):
                body += "0" + member.align
                base = struct.calcsize("@" + body)
                self.offsets[name] = base
                for sub, offset in member.offsets.items():
                    self.offsets[f"{name}.{sub}"] = base + offset
                self.names += [f"{name}.{sub}" for sub in member.names]
                body += member.body
            else:
                if member.startswith("0"):
                    body, member = body + member[:2], member[2:]
                self.offsets[name] = struct.calcsize(f"@{body}0{member[-1]}")
                self.names.append(name)
                body += member
        self.body: str = body + "0" + align  # trailing padding, as sizeof() counts it
        self.struct = struct.Struct("@" + self.body)
        self.size = self.struct.size

    def unpack(self, data: memoryview, offset: int = 0) -> dict[str, Any]:
        if len(data) < offset + self.size:
            raise KernelError(errno.EBADMSG, f"truncated {self.c_type}")
        return dict(zip(self.names, self.struct.unpack_from(data, offset), strict=True))


ADDR = "0I16s"
SELECTOR = Layout(
    "struct xfrm_selector",
    [
        ("daddr", ADDR),
        ("saddr", ADDR),
        ("dport", "H"),
        ("dport_mask", "H"),
        ("sport", "H"),
        ("sport_mask", "H"),
        ("family", "H"),
        ("prefixlen_d", "B"),
        ("prefixlen_s", "B"),
        ("proto", "B"),
        ("ifindex", "i"),
        ("user", "I"),
    ],
    "I",
)
XFRM_ID = Layout("struct xfrm_id", [("daddr", ADDR), ("spi", "I"), ("proto", "B")], "I")
LIFETIME_CFG = Layout(
    "struct xfrm_lifetime_cfg",
    [
        (name, "Q")
        for name in (
            "soft_byte_limit",
            "hard_byte_limit",
            "soft_packet_limit",
            "hard_packet_limit",
            "soft_add_expires_seconds",
            "hard_add_expires_seconds",
            "soft_use_expires_seconds",
            "hard_use_expires_seconds",
        )
    ],
    "Q",
)
LIFETIME_CUR = Layout(
    "struct xfrm_lifetime_cur",
    [("bytes", "Q"), ("packets", "Q"), ("add_time", "Q"), ("use_time", "Q")],
    "Q",
)
STATS = Layout(
    "struct xfrm_stats", [("replay_window", "I"), ("replay", "I"), ("integrity_failed", "I")], "I"
)
USERSA_INFO = Layout(
    "struct xfrm_usersa_info",
    [
        ("sel", SELECTOR),
        ("id", XFRM_ID),
        ("saddr", ADDR),
        ("lft", LIFETIME_CFG),
        ("curlft", LIFETIME_CUR),
        ("stats", STATS),
        ("seq", "I"),
        ("reqid", "I"),
        ("family", "H"),
        ("mode", "B"),
        ("replay_window", "B"),
        ("flags", "B"),
    ],
    "Q",
)
USERSA_ID = Layout(
    "struct xfrm_usersa_id",
    [("daddr", ADDR), ("spi", "I"), ("family", "H"), ("proto", "B")],
    "I",
)
AEVENT_ID = Layout(
    "struct xfrm_aevent_id",
    [("sa_id", USERSA_ID), ("saddr", ADDR), ("flags", "I"), ("reqid", "I")],
    "I",
)
USERSPI_INFO = Layout(
    "struct xfrm_userspi_info", [("info", USERSA_INFO), ("min", "I"), ("max", "I")], "Q"
)
USERPOLICY_INFO = Layout(
    "struct xfrm_userpolicy_info",
    [
        ("sel", SELECTOR),
        ("lft", LIFETIME_CFG),
        ("curlft", LIFETIME_CUR),
        ("priority", "I"),
        ("index", "I"),
        ("dir", "B"),
        ("action", "B"),
        ("flags", "B"),
        ("share", "B"),
    ],
    "Q",
)
USERPOLICY_ID = Layout(
    "struct xfrm_userpolicy_id", [("sel", SELECTOR), ("index", "I"), ("dir", "B")], "I"
)
USER_TMPL = Layout(
    "struct xfrm_user_tmpl",
    [
        ("id", XFRM_ID),
        ("family", "H"),
        ("saddr", ADDR),
        ("reqid", "I"),
        ("mode", "B"),
        ("share", "B"),
        ("optional", "B"),
        ("aalgos", "I"),
        ("ealgos", "I"),
        ("calgos", "I"),
    ],
    "I",
)
USER_ACQUIRE = Layout(
    "struct xfrm_user_acquire",
    [
        ("id", XFRM_ID),
        ("saddr", ADDR),
        ("sel", SELECTOR),
        ("policy", USERPOLICY_INFO),
        ("aalgos", "I"),
        ("ealgos", "I"),
        ("calgos", "I"),
        ("seq", "I"),
    ],
    "Q",
)
USER_EXPIRE = Layout("struct xfrm_user_expire", [("state", USERSA_INFO), ("hard", "B")], "Q")
USER_POLEXPIRE = Layout(
    "struct xfrm_user_polexpire", [("pol", USERPOLICY_INFO), ("hard", "B")], "Q"
)
ENCAP_TMPL = Layout(
    "struct xfrm_encap_tmpl",
    [("encap_type", "H"), ("encap_sport", "H"), ("encap_dport", "H"), ("encap_oa", ADDR)],
    "I",
)
MARK = Layout("struct xfrm_mark", [("v", "I"), ("m", "I")], "I")
ALGO = Layout("struct xfrm_algo", [("alg_name", "64s"), ("alg_key_len", "I")], "I")
ALGO_AUTH = Layout(
    "struct xfrm_algo_auth",
    [("alg_name", "64s"), ("alg_key_len", "I"), ("alg_trunc_len", "I")],
    "I",
)
ALGO_AEAD = Layout(
    "struct xfrm_algo_aead",
    [("alg_name", "64s"), ("alg_key_len", "I"), ("alg_icv_len", "I")],
    "I",
)
REPLAY_STATE = Layout(
    "struct xfrm_replay_state", [("oseq", "I"), ("seq", "I"), ("bitmap", "I")], "I"
)
LAYOUTS = (
    SELECTOR,
    XFRM_ID,
    LIFETIME_CFG,
    LIFETIME_CUR,
    STATS,
    USERSA_INFO,
    USERSA_ID,
    AEVENT_ID,
    USERSPI_INFO,
    USERPOLICY_INFO,
    USERPOLICY_ID,
    USER_TMPL,
    USER_ACQUIRE,
    USER_EXPIRE,
    USER_POLEXPIRE,
    ENCAP_TMPL,
    MARK,
    ALGO,
    ALGO_AUTH,
    ALGO_AEAD,
    REPLAY_STATE,
)

_ZERO_ADDR = bytes(16)
_ZERO_SELECTOR = (_ZERO_ADDR, _ZERO_ADDR, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
_ZERO_CUR_STATS = (0, 0, 0, 0, 0, 0, 0)  # struct xfrm_lifetime_cur + struct xfrm_stats


# -- encoders ------------------------------------------------------------------------------


def _addr(addr: IPAddress | None) -> bytes:
    return _ZERO_ADDR if addr is None else addr.packed.ljust(16, b"\0")


def _selector(sel: Selector | None) -> tuple[Any, ...]:
    if sel is None:
        return _ZERO_SELECTOR
    return (
        _addr(sel.dst.network_address),
        _addr(sel.src.network_address),
        socket.htons(sel.dport),
        0xFFFF if sel.dport else 0,
        socket.htons(sel.sport),
        0xFFFF if sel.sport else 0,
        sel.family,
        sel.dst.prefixlen,
        sel.src.prefixlen,
        sel.proto,
        0,
        0,
    )


def _mark(mark: Mark | None) -> list[bytes | bytearray]:
    return [] if mark is None else attribute(XFRMA_MARK, MARK.struct.pack(mark.value, mark.mask))


KeyAttribute = tuple[bytes, bytes]  # what goes before a key in its attribute, and after it


def _key_attribute(kind: int, algo: bytes, key_length: int) -> KeyAttribute:
    header, _, _, padding = attribute(kind, algo, bytes(key_length))
    return bytes(header) + algo, bytes(padding)


def _enc_attribute(enc: str, key_length: int) -> KeyAttribute:
    name, bits = KERNEL_ENC[enc].encode(), key_length * 8
    if ENC_ALGORITHMS[enc].aead:  # rfc4106: the AES key and the 4-byte salt, length in bits
        algo = ALGO_AEAD.struct.pack(name, bits, AEAD_ICV_BITS)
        return _key_attribute(XFRMA_ALG_AEAD, algo, key_length)
    return _key_attribute(XFRMA_ALG_CRYPT, ALGO.struct.pack(name, bits), key_length)


def _auth_attribute(auth: str, key_length: int) -> KeyAttribute:
    name, trunc = KERNEL_AUTH[auth]
    algo = ALGO_AUTH.struct.pack(name.encode(), key_length * 8, trunc)
    return _key_attribute(XFRMA_ALG_AUTH_TRUNC, algo, key_length)


# Made once for every algorithm and key length protocol.py allows, as none of it changes:
# packing them for each NEWSA was a fifth of encoding one.
_ENC_ATTRIBUTES = {
    (enc, n): _enc_attribute(enc, n) for enc, alg in ENC_ALGORITHMS.items() for n in alg.key_lengths
}
_AUTH_ATTRIBUTES = {(auth, n): _auth_attribute(auth, n) for auth, n in AUTH_ALGORITHMS.items()}


def encode_newsa(sa: SaSpec, update: bool) -> bytearray:
    """XFRM_MSG_NEWSA, or XFRM_MSG_UPDSA to fill a larval SA from ALLOCSPI (the message type
    decides: XFRM ignores NLM_F_CREATE/EXCL/REPLACE)."""
    info = USERSA_INFO.struct.pack(
        *_selector(sa.selector),
        _addr(sa.id.dst),
        socket.htonl(sa.id.spi),
        sa.id.proto,
        _addr(sa.src),
        *sa.lifetime.values(),
        *_ZERO_CUR_STATS,
        sa.seq,
        sa.reqid,
        family(sa.src),
        sa.mode,
        sa.replay_window,
        0,
    )
    parts: list[bytes | bytearray] = [info]
    if sa.enc is not None:
        head, padding = _ENC_ATTRIBUTES[sa.enc, len(sa.enc_key)]
        parts += (head, sa.enc_key, padding)
    if sa.auth is not None:
        head, padding = _AUTH_ATTRIBUTES[sa.auth, len(sa.auth_key)]
        parts += (head, sa.auth_key, padding)
    if sa.encap is not None:
        e = sa.encap
        tmpl = ENCAP_TMPL.struct.pack(
            e.type, socket.htons(e.sport), socket.htons(e.dport), _addr(e.oa)
        )
        parts += attribute(XFRMA_ENCAP, tmpl)
    parts += _mark(sa.id.mark)
    kind = XFRM_MSG_UPDSA if update else XFRM_MSG_NEWSA
    return message(kind, NLM_F_REQUEST | NLM_F_ACK, parts)


def encode_allocspi(r: SpiRequest) -> bytearray:
    info = USERSPI_INFO.struct.pack(
        *_ZERO_SELECTOR,
        _addr(r.dst),
        0,
        r.proto,
        _addr(r.src),
        *Lifetime().values(),
        *_ZERO_CUR_STATS,
        r.seq,
        r.reqid,
        family(r.dst),
        r.mode,
        0,
        0,
        r.spi_min,
        r.spi_max,
    )
    return message(XFRM_MSG_ALLOCSPI, NLM_F_REQUEST, [info, *_mark(r.mark)])


def encode_sa_id(kind: int, sa_id: SaId) -> bytearray:
    """XFRM_MSG_GETSA (one reply) or XFRM_MSG_DELSA (an ACK)."""
    body = USERSA_ID.struct.pack(
        _addr(sa_id.dst), socket.htonl(sa_id.spi), family(sa_id.dst), sa_id.proto
    )
    flags = NLM_F_REQUEST if kind == XFRM_MSG_GETSA else NLM_F_REQUEST | NLM_F_ACK
    return message(kind, flags, [body, *_mark(sa_id.mark)])


def encode_getae(sa_id: SaId) -> bytearray:
    """XFRM_MSG_GETAE: the SA's counters (one XFRM_MSG_NEWAE reply). The kernel finds the SA by
    sa_id and its mark alone; saddr, flags and reqid are left 0."""
    body = AEVENT_ID.struct.pack(
        _addr(sa_id.dst), socket.htonl(sa_id.spi), family(sa_id.dst), sa_id.proto, _ZERO_ADDR, 0, 0
    )
    return message(XFRM_MSG_GETAE, NLM_F_REQUEST, [body, *_mark(sa_id.mark)])


def encode_dump(kind: int) -> bytearray:
    """XFRM_MSG_GETSA or XFRM_MSG_GETPOLICY for every object of the netns."""
    return message(kind, NLM_F_REQUEST | NLM_F_DUMP, [])


def _template(t: Template, sel: Selector) -> bytes:
    endpoint = t.dst or t.src
    return USER_TMPL.struct.pack(
        _addr(t.dst),
        socket.htonl(t.spi),
        t.proto,
        sel.family if endpoint is None else family(endpoint),
        _addr(t.src),
        t.reqid,
        t.mode,
        0,
        int(t.optional),
        ALL_ALGOS,
        ALL_ALGOS,
        ALL_ALGOS,
    )


def encode_newpolicy(pol: PolicySpec, update: bool) -> bytearray:
    sel = pol.id.selector
    info = USERPOLICY_INFO.struct.pack(
        *_selector(sel),
        *pol.lifetime.values(),
        0,
        0,
        0,
        0,
        pol.priority,
        0,
        pol.id.dir,
        pol.action,
        0,
        0,
    )
    parts: list[bytes | bytearray] = [info]
    if pol.templates:
        parts += attribute(XFRMA_TMPL, b"".join(_template(t, sel) for t in pol.templates))
    parts += _mark(pol.id.mark)
    kind = XFRM_MSG_UPDPOLICY if update else XFRM_MSG_NEWPOLICY
    return message(kind, NLM_F_REQUEST | NLM_F_ACK, parts)


def encode_policy_id(kind: int, pid: PolicyId) -> bytearray:
    """XFRM_MSG_GETPOLICY (one reply) or XFRM_MSG_DELPOLICY (an ACK)."""
    body = USERPOLICY_ID.struct.pack(*_selector(pid.selector), 0, pid.dir)
    flags = NLM_F_REQUEST if kind == XFRM_MSG_GETPOLICY else NLM_F_REQUEST | NLM_F_ACK
    return message(kind, flags, [body, *_mark(pid.mark)])


# -- decoders ------------------------------------------------------------------------------

_EXPIRE_HARD = USER_EXPIRE.offsets["hard"]
_CUR_BYTES = struct.Struct("@Q")  # struct xfrm_lifetime_cur's bytes
_KERNEL_ENC_NAMES = {v: k for k, v in KERNEL_ENC.items()}
_KERNEL_AUTH_NAMES = {v: k for k, v in KERNEL_AUTH.items()}


def _address(raw: bytes, fam: int) -> IPAddress:
    if fam == socket.AF_INET:
        return ipaddress.IPv4Address(raw[:4])
    if fam == socket.AF_INET6:
        return ipaddress.IPv6Address(raw)
    raise KernelError(errno.EBADMSG, f"address family {fam}")


def _optional_address(raw: bytes, fam: int) -> IPAddress | None:
    return None if raw == _ZERO_ADDR else _address(raw, fam)


def _network(raw: bytes, fam: int, length: int) -> IPNetwork:
    """From the address's number: ip_network((address, length)) turns an address object into
    text and parses it again, most of the cost of decoding an SA event."""
    if fam == socket.AF_INET:
        return ipaddress.IPv4Network((int.from_bytes(raw[:4], "big"), length), strict=False)
    if fam == socket.AF_INET6:
        return ipaddress.IPv6Network((int.from_bytes(raw, "big"), length), strict=False)
    raise KernelError(errno.EBADMSG, f"address family {fam}")


def _decode_selector(d: dict[str, Any], p: str) -> Selector | None:
    fam = d[p + "family"]
    if fam == 0:
        return None  # an SA without selector
    src_len, dst_len = d[p + "prefixlen_s"], d[p + "prefixlen_d"]
    if max(src_len, dst_len) > (32 if fam == socket.AF_INET else 128):
        raise KernelError(errno.EBADMSG, "selector prefix too long")
    src = _network(d[p + "saddr"], fam, src_len)
    dst = _network(d[p + "daddr"], fam, dst_len)
    sport, dport = socket.ntohs(d[p + "sport"]), socket.ntohs(d[p + "dport"])
    return Selector(src, dst, d[p + "proto"], sport, dport)


def _decode_lifetime(d: dict[str, Any], p: str) -> Lifetime:
    return Lifetime(*(d[p + name] for name in LIFETIME_CFG.names))


def _decode_mark(attrs: dict[int, memoryview]) -> Mark | None:
    raw = attrs.get(XFRMA_MARK)
    if raw is None:
        return None
    m = MARK.unpack(raw)
    return Mark(m["v"], m["m"])


def _alg_name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def _decode_algorithms(attrs: dict[int, memoryview]) -> tuple[str | None, str | None]:
    """protocol.py names of the SA's algorithms (the kernel's name when kink has none)."""
    enc = auth = None
    if XFRMA_ALG_AEAD in attrs:
        name = _alg_name(ALGO_AEAD.unpack(attrs[XFRMA_ALG_AEAD])["alg_name"])
        enc = _KERNEL_ENC_NAMES.get(name, name)
    elif XFRMA_ALG_CRYPT in attrs:
        name = _alg_name(ALGO.unpack(attrs[XFRMA_ALG_CRYPT])["alg_name"])
        enc = _KERNEL_ENC_NAMES.get(name, name)
    if XFRMA_ALG_AUTH_TRUNC in attrs:
        a = ALGO_AUTH.unpack(attrs[XFRMA_ALG_AUTH_TRUNC])
        name = _alg_name(a["alg_name"])
        auth = _KERNEL_AUTH_NAMES.get((name, a["alg_trunc_len"]), name)
    return enc, auth


def _decode_sa(d: dict[str, Any], p: str, attrs: dict[int, memoryview]) -> SaInfo:
    fam = d[p + "family"]
    enc, auth = _decode_algorithms(attrs)
    encap = None
    if XFRMA_ENCAP in attrs:
        e = ENCAP_TMPL.unpack(attrs[XFRMA_ENCAP])
        oa = _optional_address(e["encap_oa"], fam)
        encap = Encap(
            e["encap_type"], socket.ntohs(e["encap_sport"]), socket.ntohs(e["encap_dport"]), oa
        )
    last_used = 0
    if XFRMA_LASTUSED in attrs and len(attrs[XFRMA_LASTUSED]) >= 8:
        last_used = struct.unpack_from("@Q", attrs[XFRMA_LASTUSED])[0]
    seq = oseq = 0
    if XFRMA_REPLAY_VAL in attrs:
        r = REPLAY_STATE.unpack(attrs[XFRMA_REPLAY_VAL])
        seq, oseq = r["seq"], r["oseq"]
    counters = Counters(
        bytes=d[p + "curlft.bytes"],
        packets=d[p + "curlft.packets"],
        add_time=d[p + "curlft.add_time"],
        use_time=d[p + "curlft.use_time"],
        last_used=last_used,
        replay_errors=d[p + "stats.replay"],
        integrity_errors=d[p + "stats.integrity_failed"],
        replay_window_errors=d[p + "stats.replay_window"],
        seq=seq,
        oseq=oseq,
    )
    sa_id = SaId(
        _address(d[p + "id.daddr"], fam),
        socket.ntohl(d[p + "id.spi"]),
        d[p + "id.proto"],
        _decode_mark(attrs),
    )
    return SaInfo(
        id=sa_id,
        src=_address(d[p + "saddr"], fam),
        mode=d[p + "mode"],
        reqid=d[p + "reqid"],
        enc=enc,
        auth=auth,
        replay_window=d[p + "replay_window"],
        lifetime=_decode_lifetime(d, p + "lft."),
        selector=_decode_selector(d, p + "sel."),
        encap=encap,
        counters=counters,
    )


def _decode_templates(attrs: dict[int, memoryview]) -> tuple[Template, ...]:
    raw = attrs.get(XFRMA_TMPL)
    if raw is None:
        return ()
    templates = []
    for offset in range(0, len(raw) - USER_TMPL.size + 1, USER_TMPL.size):
        t = USER_TMPL.unpack(raw, offset)
        fam = t["family"]
        templates.append(
            Template(
                proto=t["id.proto"],
                mode=t["mode"],
                reqid=t["reqid"],
                src=_optional_address(t["saddr"], fam),
                dst=_optional_address(t["id.daddr"], fam),
                spi=socket.ntohl(t["id.spi"]),
                optional=bool(t["optional"]),
            )
        )
    return tuple(templates)


def _decode_policy(d: dict[str, Any], p: str, attrs: dict[int, memoryview]) -> PolicyInfo:
    sel = _decode_selector(d, p + "sel.")
    if sel is None:
        raise KernelError(errno.EBADMSG, "policy without selector family")
    spec = PolicySpec(
        id=PolicyId(d[p + "dir"], sel, _decode_mark(attrs)),
        priority=d[p + "priority"],
        action=d[p + "action"],
        templates=_decode_templates(attrs),
        lifetime=_decode_lifetime(d, p + "lft."),
    )
    return PolicyInfo(spec, d[p + "index"], d[p + "curlft.add_time"], d[p + "curlft.use_time"])


def decode_sa(kind: int, pid: int, body: memoryview) -> SaInfo:
    """A NEWSA message: the reply to GETSA/ALLOCSPI and each part of an SA dump."""
    if kind != XFRM_MSG_NEWSA:
        raise KernelError(errno.EBADMSG, f"expected XFRM_MSG_NEWSA, got {kind}")
    return _decode_sa(USERSA_INFO.unpack(body), "", attributes(body, USERSA_INFO.size))


def decode_ae_bytes(kind: int, pid: int, body: memoryview) -> int:
    """The byte counter of a NEWAE message (the reply to GETAE): XFRMA_LTIME_VAL's bytes."""
    if kind != XFRM_MSG_NEWAE:
        raise KernelError(errno.EBADMSG, f"expected XFRM_MSG_NEWAE, got {kind}")
    if len(body) < AEVENT_ID.size:
        raise KernelError(errno.EBADMSG, f"truncated {AEVENT_ID.c_type}")
    current = attributes(body, AEVENT_ID.size).get(XFRMA_LTIME_VAL)
    if current is None or len(current) < LIFETIME_CUR.size:
        raise KernelError(errno.EBADMSG, "NEWAE without its struct xfrm_lifetime_cur")
    return int(_CUR_BYTES.unpack_from(current, LIFETIME_CUR.offsets["bytes"])[0])


def decode_policy(kind: int, pid: int, body: memoryview) -> PolicyInfo:
    """A NEWPOLICY message: the reply to GETPOLICY and each part of a policy dump."""
    if kind != XFRM_MSG_NEWPOLICY:
        raise KernelError(errno.EBADMSG, f"expected XFRM_MSG_NEWPOLICY, got {kind}")
    return _decode_policy(USERPOLICY_INFO.unpack(body), "", attributes(body, USERPOLICY_INFO.size))


def decode_event(kind: int, body: memoryview) -> KernelEvent | None:
    """A multicast of the ACQUIRE, EXPIRE, SA and POLICY groups (None: of no interest)."""
    if kind in (XFRM_MSG_NEWSA, XFRM_MSG_UPDSA):
        info = USERSA_INFO.unpack(body)
        return SaChanged(False, _decode_sa(info, "", attributes(body, USERSA_INFO.size)))
    if kind == XFRM_MSG_DELSA:  # xfrm_usersa_id, then the SA in XFRMA_SA
        attrs = attributes(body, USERSA_ID.size)
        if XFRMA_SA not in attrs:
            raise KernelError(errno.EBADMSG, "DELSA without XFRMA_SA")
        return SaChanged(True, _decode_sa(USERSA_INFO.unpack(attrs[XFRMA_SA]), "", attrs))
    if kind in (XFRM_MSG_NEWPOLICY, XFRM_MSG_UPDPOLICY):
        d = USERPOLICY_INFO.unpack(body)
        policy = _decode_policy(d, "", attributes(body, USERPOLICY_INFO.size))
        return PolicyChanged(False, policy)
    if kind == XFRM_MSG_DELPOLICY:  # xfrm_userpolicy_id, then the policy in XFRMA_POLICY
        attrs = attributes(body, USERPOLICY_ID.size)
        if XFRMA_POLICY not in attrs:
            raise KernelError(errno.EBADMSG, "DELPOLICY without XFRMA_POLICY")
        d = USERPOLICY_INFO.unpack(attrs[XFRMA_POLICY])
        return PolicyChanged(True, _decode_policy(d, "", attrs))
    if kind == XFRM_MSG_EXPIRE:
        # The SA's xfrm_usersa_info comes first: read as such, not as "state." members (one
        # event per SA and rekey; each of those names was made again and hashed to be read).
        if len(body) < USER_EXPIRE.size:
            raise KernelError(errno.EBADMSG, f"truncated {USER_EXPIRE.c_type}")
        sa = _decode_sa(USERSA_INFO.unpack(body), "", attributes(body, USER_EXPIRE.size))
        return Expired(sa, bool(body[_EXPIRE_HARD]))
    if kind == XFRM_MSG_POLEXPIRE:
        d = USER_POLEXPIRE.unpack(body)
        policy = _decode_policy(d, "pol.", attributes(body, USER_POLEXPIRE.size))
        return PolicyExpired(policy, bool(d["hard"]))
    if kind == XFRM_MSG_ACQUIRE:
        d = USER_ACQUIRE.unpack(body)
        policy = _decode_policy(d, "policy.", attributes(body, USER_ACQUIRE.size))
        # The addresses are the SA's: a tunnel template's family, else the flow's.
        fam = d["sel.family"]
        for t in policy.spec.templates:
            if t.proto == d["id.proto"] and t.mode == MODE_TUNNEL and t.dst is not None:
                fam = family(t.dst)
                break
        src = _address(d["saddr"], fam)
        dst = _address(d["id.daddr"], fam)
        return Acquire(d["seq"], d["id.proto"], src, dst, policy)
    if kind == XFRM_MSG_FLUSHSA:
        return Flushed("sa")
    if kind == XFRM_MSG_FLUSHPOLICY:
        return Flushed("policy")
    return None
