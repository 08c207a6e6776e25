"""The engine's SA actions and the daemon's policies as kink_privsep requests, and the helper's
events as engine inputs. Pure functions: the protocol itself is kink_privsep.protocol.

Reqids: the helper only lets kink touch SAs and policies whose reqid lies in its range (given in
its hello). The configuration numbers every policy inside that range (configured ones per peer,
the engine's implicit host-to-host ones from EngineConfig.reqid_base), so engine and kernel
reqids are the same numbers: SAs a restarted kinkd finds in the kernel still match its policies'
templates, and an ACQUIRE names the engine's reqid.
"""

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kink.engine.config import PeerConfig, Policy
from kink.engine.events import (
    Acquire,
    AllocateSpi,
    DeleteSa,
    Expire,
    KernelEvent,
    SaGone,
    SaSpec,
    Selector,
)
from kink.wire.ipsec_doi import ProtocolId
from kink_privsep import protocol

PROTOCOL_NAMES: Mapping[int, str] = {ProtocolId.ESP: "esp", ProtocolId.AH: "ah"}
PROTOCOL_NUMBERS: Mapping[str, int] = {name: number for number, name in PROTOCOL_NAMES.items()}

# kink.crypto.algorithms XFRM names -> the helper's names (kink_privsep.protocol allow-list).
_ENC = {"cbc(aes)": "aes-cbc", "ecb(cipher_null)": "null"}
_AEAD = {("rfc4106(gcm(aes))", 128): "aes-gcm"}
_AUTH = {
    ("hmac(sha1)", 96): "hmac-sha1-96",
    ("hmac(sha256)", 128): "hmac-sha256-128",
    ("hmac(sha384)", 192): "hmac-sha384-192",
    ("hmac(sha512)", 256): "hmac-sha512-256",
}
_LIFETIMES = (
    ("soft_seconds", "soft_add_seconds"),
    ("hard_seconds", "hard_add_seconds"),
    ("soft_bytes", "soft_bytes"),
    ("hard_bytes", "hard_bytes"),
)


class Unsupported(Exception):
    """An algorithm the helper does not offer (the engine was configured with more)."""


@dataclass(frozen=True)
class HelperRanges:
    """What the helper's hello says kink may use."""

    reqid_lo: int
    reqid_hi: int
    priority_lo: int
    priority_hi: int

    @classmethod
    def from_hello(cls, hello: Mapping[str, Any]) -> "HelperRanges":
        (rlo, rhi), (plo, phi) = hello["reqid_range"], hello["priority_band"]
        return cls(int(rlo), int(rhi), int(plo), int(phi))

    def covers(self, first_reqid: int, last_reqid: int) -> bool:
        """Whether kink may use every reqid from first to last."""
        return self.reqid_lo <= first_reqid and last_reqid <= self.reqid_hi

    @property
    def bypass_priority(self) -> int:
        """The best priority of the band: bypass policies win over every SA policy."""
        return self.priority_lo

    def priority(self, policy: Policy) -> int:
        """Longer prefixes first (XFRM: the lowest priority value wins)."""
        specificity = policy.local.network.prefixlen + policy.remote.network.prefixlen
        specificity += (policy.local.protocol != 0) + (policy.local.port != 0)
        specificity += policy.remote.port != 0
        return max(self.priority_lo, self.priority_hi - specificity)


# Every SA install and policy names its selectors' networks, which ipaddress formats in Python
# (~4 us a network, two a selector, issue 9): the text is kept per Selector (hashed once),
# bounded as kink.daemon.sa_report keeps its selectors' text.
@lru_cache(maxsize=4096)
def _prefix(selector: Selector) -> str:
    return str(selector.network)


def _selector(src: Selector, src_text: str, dst: Selector, dst_text: str) -> dict[str, Any]:
    return {
        "src": src_text,
        "dst": dst_text,
        "proto": src.protocol or dst.protocol,
        "sport": src.port,
        "dport": dst.port,
    }


def selector(src: Selector, dst: Selector) -> dict[str, Any]:
    """An SA's selector without the protocol and ports the helper takes as 0 (any) when absent
    (kink_privsep.protocol.SELECTOR): a host-to-host rekey's SAs name neither. (A policy's
    keeps every field, _selector: its dict is its identity, runner._policy_key.)"""
    out: dict[str, Any] = {"src": _prefix(src), "dst": _prefix(dst)}
    proto = src.protocol or dst.protocol
    if proto:
        out["proto"] = proto
    if src.port:
        out["sport"] = src.port
    if dst.port:
        out["dport"] = dst.port
    return out


def alloc_spi(action: AllocateSpi, ranges: HelperRanges) -> dict[str, Any]:
    """A larval inbound SA; its reqid is replaced when the engine fills it (InstallSa.fills:
    update_sa)."""
    return {
        "proto": PROTOCOL_NAMES[action.protocol],
        "src": action.src,
        "dst": action.dst,
        "reqid": ranges.reqid_lo,
    }


def sa(spec: SaSpec, acquire_seq: int | None = None) -> dict[str, Any]:
    """add_sa / update_sa arguments. The keys are copied into the request (bytes): the engine
    may zero its bytearrays once the helper has them. `acquire_seq`: the kernel ACQUIRE this
    (outbound) SA answers, so that XFRM replaces the ACQUIRE's larval state with it."""
    args: dict[str, Any] = {
        "proto": PROTOCOL_NAMES[spec.protocol],
        "mode": spec.mode,
        "src": spec.src,
        "dst": spec.dst,
        "spi": spec.spi,
        "reqid": spec.reqid,
        "selector": selector(spec.src_selector, spec.dst_selector),
    }
    # Fields equal to the helper's defaults are left out: fewer to pack here and to check
    # there, two add_sa per rekey on each side. Its window (kink_privsep.protocol.SA) is 32
    # packets, as wide as XFRM's legacy bitmap: a wider one asked for is that one too.
    if spec.replay_window < 32:
        args["replay_window"] = spec.replay_window
    if spec.encryption is not None:
        if spec.aead_icv_bits is not None:
            name = _AEAD.get((spec.encryption, spec.aead_icv_bits))
        else:
            name = _ENC.get(spec.encryption)
        if name is None:
            raise Unsupported(f"encryption {spec.encryption} ({spec.aead_icv_bits} bit ICV)")
        args["enc"], args["enc_key"] = name, bytes(spec.enc_key)
    if spec.authentication is not None:
        auth = _AUTH.get((spec.authentication, spec.auth_trunc_bits or 0))
        if auth is None:
            raise Unsupported(f"authentication {spec.authentication}/{spec.auth_trunc_bits}")
        args["auth"], args["auth_key"] = auth, bytes(spec.auth_key)
    lifetime = {wire: getattr(spec, ours) for ours, wire in _LIFETIMES if getattr(spec, ours)}
    if lifetime:
        args["lifetime"] = lifetime
    if acquire_seq is not None:
        args["seq"] = acquire_seq
    return args


def sa_id(protocol_number: int, spi: int, dst: str) -> dict[str, Any]:
    return {"proto": PROTOCOL_NAMES[protocol_number], "spi": spi, "dst": dst}


def delete_sa(action: DeleteSa) -> dict[str, Any]:
    return sa_id(action.protocol, action.spi, action.dst)


def policies(
    peer: PeerConfig, peer_policies: Iterable[Policy], local: str, ranges: HelperRanges
) -> list[dict[str, Any]]:
    """The kernel policies (out, in, and fwd for tunnels) that make traffic of `peer`'s policies
    use IPsec, with templates naming the reqid of the SAs the engine negotiates: a packet that
    finds no SA makes the kernel ACQUIRE (trap, RFC 4301 §4.4.1)."""
    protocols = [PROTOCOL_NAMES[t.protocol] for t in peer.proposals[0].transforms]
    # Outer first: AH over ESP (RFC 4301 §4.5, as XFRM lists templates inner to outer).
    protocols.sort(key=lambda name: name != "esp")
    out: list[dict[str, Any]] = []
    for policy in peer_policies:
        reqid = policy.reqid
        priority = ranges.priority(policy)
        # Each side's prefix once for its two or three policies (ipaddress formats slowly:
        # 10,000 peers are installed at start-up).
        ours, theirs = policy.local, policy.remote
        here, there = _prefix(ours), _prefix(theirs)
        for direction, src, src_text, dst, dst_text, a, b in (
            ("out", ours, here, theirs, there, local, peer.address),
            ("in", theirs, there, ours, here, peer.address, local),
            ("fwd", theirs, there, ours, here, peer.address, local),
        ):
            if direction == "fwd" and peer.mode != "tunnel":
                continue
            templates = []
            for name in protocols:
                template: dict[str, Any] = {"proto": name, "mode": peer.mode, "reqid": reqid}
                if peer.mode == "tunnel":
                    template["src"], template["dst"] = a, b
                templates.append(template)
            out.append(
                {
                    "dir": direction,
                    "selector": _selector(src, src_text, dst, dst_text),
                    "priority": priority,
                    "templates": templates,
                }
            )
    return out


# ICMPv6 neighbour discovery (RFC 4861 §4: router solicitation and advertisement, neighbour
# solicitation and advertisement, redirect) must pass in the clear: a host-to-host policy of any
# protocol would otherwise take the peer's neighbour advertisements, and no SA can come up
# without the peer's link-layer address (RFC 4301 §4.4.1.1 lets ICMP bypass by type).
ICMPV6 = 58
ND_TYPES = range(133, 138)


def nd_bypass(ranges: HelperRanges) -> list[dict[str, Any]]:
    """Policies letting neighbour discovery through both ways (XFRM takes an ICMP type as the
    source port and the code as the destination port), at the band's best priority."""
    return [
        {
            "dir": direction,
            "selector": {"src": "::/0", "dst": "::/0", "proto": ICMPV6, "sport": kind, "dport": 0},
            "priority": ranges.bypass_priority,
            "action": "allow",
        }
        for kind in ND_TYPES
        for direction in ("out", "in", "fwd")
    ]


def policy_id(policy: Mapping[str, Any]) -> dict[str, Any]:
    return {"dir": policy["dir"], "selector": policy["selector"]}


def kernel_event(event: protocol.Event, reqids: Container[int]) -> KernelEvent | None:
    """The engine input for a helper event (None: not one the engine takes). `reqids`: those
    of the engine's policies."""
    data = event.data
    if event.kind == protocol.EVENT_ACQUIRE:
        for template in data["policy"].get("templates", ()):
            if template["reqid"] in reqids:
                return Acquire(template["reqid"], data.get("seq") or None)
        return None
    if event.kind in (protocol.EVENT_EXPIRE, protocol.EVENT_SA_DELETED):
        info = data["sa"]
        number = PROTOCOL_NUMBERS.get(info["proto"])
        if number is None:
            return None
        if event.kind == protocol.EVENT_EXPIRE:
            return Expire(number, info["spi"], info["dst"], bool(data["hard"]))
        return SaGone(number, info["spi"], info["dst"])
    return None
