"""[defaults] and [peers.NAME]: each peer's keys over [defaults], checked and built into
kink.engine.config.PeerConfig with its policies (the selectors it may negotiate, RFC 4430 §10)
and their reqids."""

import hashlib
import re
from collections.abc import Mapping
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_address
from typing import Any

from kink.daemon.config_fields import (
    Collector,
    Field,
    Invalid,
    IpAddress,
    Values,
    address,
    array,
    boolean,
    integer,
    network,
    one_of,
    table,
    text,
)
from kink.daemon.config_proposals import DEFAULT_PROPOSALS, proposals
from kink.daemon.control_protocol import IP_PROTOCOL_NAMES
from kink.daemon.toml_lines import format_path
from kink.engine.config import EngineConfig, PeerConfig, Policy, StartAction, U2u
from kink.engine.events import Selector
from kink.wire.ipsec_doi import GroupDescription

# Selectors: IP protocols by name (the names kinkctl shows); any number 0-255 is accepted too.
PROTOCOLS = {name: number for number, name in IP_PROTOCOL_NAMES.items()}
_PORTED = frozenset({6, 17, 132})  # protocols with ports a selector can name (RFC 2407 §4.6.2)

# PFS groups by name: the MODP groups kink.crypto.dh implements (RFC 2409 §6, RFC 3526).
PFS_GROUPS: dict[str, int | None] = {
    "none": None,
    "modp1024": GroupDescription.MODP_1024,
    "modp1536": GroupDescription.MODP_1536,
    "modp2048": GroupDescription.MODP_2048,
    "modp3072": GroupDescription.MODP_3072,
    "modp4096": GroupDescription.MODP_4096,
}

_PRINCIPAL = re.compile(r"[^\s@/]+(/[^\s@/]+)*@[^\s@]+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

# Reqids: the helper owns daemon.helper_reqids of them from helper_reqid_base
# (kink_privsep.model.Config.reqid_range). The IMPLICIT_REQIDS from offset IMPLICIT_START are
# the engine's, for the host-to-host policies of peers added without configured ones
# (EngineConfig.reqid_base), so that no reload can make a configured reqid clash with one of
# those. The others make blocks of BLOCK reqids: each peer gets a run of blocks (one per BLOCK
# policies), starting at a block picked from a hash of its name, so that its reqids survive
# restarts and reloads that add or remove other peers and kernel SAs keep matching the
# templates of its policies (a collision moves the later name, in sorted order, to the next free
# run). With helper_reqids = 0x10000 this is kink 0.1's fixed numbering (704 blocks).
DEFAULT_REQIDS = 0x10_0000
MIN_REQIDS = 0x10000
IMPLICIT_START = 0xB000
IMPLICIT_REQIDS = 0x5000
BLOCK = 64


def principal(value: object) -> str:
    name = text(value)
    if not _PRINCIPAL.fullmatch(name):
        raise Invalid(f"{name!r} is not a Kerberos principal like 'kink/gw.example.org@REALM'")
    return name


def ip_protocol(value: object) -> int:
    if isinstance(value, str):
        return one_of(PROTOCOLS)(value)
    return integer(0, 255)(value)


ADDRESS = Field("address", address)
PRINCIPAL = Field("principal", principal)
PORT = Field("port", integer(1, 65535))
MODE = Field("mode", one_of({"transport": "transport", "tunnel": "tunnel"}))
LOCAL_SUBNETS = Field("local_subnets", array(network))
REMOTE_SUBNETS = Field("remote_subnets", array(network))
PROTOCOL = Field("protocol", ip_protocol)
LOCAL_PORT = Field("local_port", integer(0, 65535))
REMOTE_PORT = Field("remote_port", integer(0, 65535))
PROPOSALS = Field("proposals", proposals)
LIFETIME_SECONDS = Field("lifetime_seconds", integer(1, 0xFFFF_FFFF))
LIFETIME_KILOBYTES = Field("lifetime_kilobytes", integer(0, 0xFFFF_FFFF))
PFS_GROUP = Field("pfs_group", one_of(PFS_GROUPS))
PFS_REQUIRED = Field("pfs_required", boolean)
U2U = Field("u2u", one_of({u.value: u for u in U2u}))
GIVE_TGT = Field("give_tgt", boolean)
START_ACTION = Field("start_action", one_of({a.value: a for a in StartAction}))

# Keys that are PeerConfig fields of the same name (PeerConfig holds their defaults).
_DIRECT: tuple[Field[Any], ...] = (
    PORT,
    MODE,
    LIFETIME_SECONDS,
    LIFETIME_KILOBYTES,
    PFS_GROUP,
    PFS_REQUIRED,
    U2U,
    GIVE_TGT,
    START_ACTION,
)
PEER_FIELDS: tuple[Field[Any], ...] = (
    ADDRESS,
    PRINCIPAL,
    *_DIRECT,
    LOCAL_SUBNETS,
    REMOTE_SUBNETS,
    PROTOCOL,
    LOCAL_PORT,
    REMOTE_PORT,
    PROPOSALS,
)
PEER_KEYS = tuple(f.name for f in PEER_FIELDS)


def read_peers(
    ctx: Collector,
    document: Mapping[str, object],
    engine: EngineConfig | None,
    reqids: tuple[int, int],
) -> tuple[PeerConfig, ...]:
    """The peers of the document, checked against the engine's host-wide settings (None if
    [daemon] was bad: the peers' own keys are still checked). Problems go to `ctx`; the peers
    without any are returned, numbered in `reqids` (helper_reqid_base, helper_reqids)."""
    defaults = Values(("defaults",))
    if "defaults" in document:
        try:
            defaults = ctx.read(("defaults",), table(document["defaults"]), PEER_FIELDS)
        except Invalid as e:
            ctx.problem(("defaults",), e.reason)
    if "peers" not in document:
        return ()
    try:
        tables = table(document["peers"])
    except Invalid as e:
        ctx.problem(("peers",), e.reason)
        return ()
    built: list[PeerConfig] = []
    where: dict[str, Values] = {}
    for name, data in tables.items():
        before = ctx.count
        if not _NAME.fullmatch(name):
            ctx.problem(("peers", name), "a peer name is 1-64 letters, digits, '-' or '_'")
            continue
        try:
            own = ctx.read(("peers", name), table(data), PEER_FIELDS)
        except Invalid as e:
            ctx.problem(("peers", name), e.reason)
            continue
        values = own.over(defaults)
        ctx.require(values, (ADDRESS.name, PRINCIPAL.name))
        if engine is None or ctx.count > before or values.invalid:
            continue
        peer = _build(ctx, name, values, engine)
        if peer is not None:
            built.append(peer)
            where[name] = values
    return _numbered(ctx, _unique(ctx, built, where), reqids)


def _numbered(
    ctx: Collector, peers: tuple[PeerConfig, ...], reqids: tuple[int, int]
) -> tuple[PeerConfig, ...]:
    """The peers with their policies' reqids: each peer a run of whole blocks (see BLOCK)."""
    base, count = reqids
    blocks = (count - IMPLICIT_REQIDS) // BLOCK
    taken = bytearray(blocks)  # 1: the block is some peer's
    out: dict[str, PeerConfig] = {}
    for peer in sorted(peers, key=lambda p: p.name):
        size = -(-len(peer.policies) // BLOCK)
        start = _free_run(taken, size, _hash(peer.name) % blocks)
        if start is None:
            ctx.problem(
                ("peers",),
                f"the peers need more than the {blocks} blocks of {BLOCK} reqids that "
                f"daemon.helper_reqids ({count:#x}) leaves them (one per {BLOCK} policies of "
                "a peer)",
            )
            return ()
        taken[start : start + size] = b"\x01" * size
        policies = tuple(
            replace(p, reqid=base + _offset(start + i // BLOCK) + i % BLOCK)
            for i, p in enumerate(peer.policies)
        )
        out[peer.name] = replace(peer, policies=policies)
    return tuple(out[peer.name] for peer in peers)


def _offset(block: int) -> int:
    """The offset of a block's first reqid from helper_reqid_base (past the engine's)."""
    offset = block * BLOCK
    return offset if offset < IMPLICIT_START else offset + IMPLICIT_REQIDS


def _hash(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def _free_run(taken: bytearray, size: int, start: int) -> int | None:
    """The first block from `start` on, then from the first block on (wrapping around), where
    `size` free blocks follow each other; None if there is no such place."""
    for at in (start, 0):
        while at + size <= len(taken):
            busy = taken.find(1, at, at + size)
            if busy < 0:
                return at
            at = busy + 1
    return None


def _build(ctx: Collector, name: str, values: Values, engine: EngineConfig) -> PeerConfig | None:
    """The peer's PeerConfig, its policies' reqids still 0 (_numbered gives them); None (with
    problems recorded) if its keys do not fit together."""
    before = ctx.count
    local = ip_address(engine.address)
    remote = values.get(ADDRESS, local)  # required: read_peers checked it is set
    peer = PeerConfig(
        name=name,
        address=str(remote),
        principal=values.get(PRINCIPAL, ""),
        policies=(),
        proposals=values.get(PROPOSALS, DEFAULT_PROPOSALS),
        **values.kwargs(_DIRECT),
    )
    if remote.version != local.version:
        ctx.key_problem(
            values,
            ADDRESS.name,
            f"an IPv{remote.version} address, but daemon.address {local} is "
            f"IPv{local.version} (the engine negotiates from that one address)",
        )
    elif remote == local:
        ctx.key_problem(values, ADDRESS.name, f"{remote} is daemon.address, this host's own")
    if peer.pfs_required and peer.pfs_group is None:
        ctx.key_problem(values, PFS_REQUIRED.name, "needs a pfs_group other than 'none'")
    if peer.lifetime_seconds <= engine.rekey_margin:
        ctx.key_problem(
            values,
            LIFETIME_SECONDS.name,
            f"{peer.lifetime_seconds} s is not longer than daemon.rekey_margin "
            f"({engine.rekey_margin:g} s): the SA would be rekeyed as soon as it is up",
        )
    policies = _policies(ctx, values, local, remote, peer.mode)
    if ctx.count > before:
        return None
    return replace(peer, policies=policies)


def _policies(
    ctx: Collector, values: Values, local: IpAddress, remote: IpAddress, mode: str
) -> tuple[Policy, ...]:
    """The selector pairs of the peer (reqids still 0).

    No subnets, protocol or ports: host to host without ID payloads (RFC 4430 §5.3). Otherwise
    every local subnet with every remote subnet of the same family, a side without subnets
    standing for its host address; the selectors then go in IDci/IDcr (RFC 2407 §4.6.2)."""
    protocol = values.get(PROTOCOL, 0)
    local_port, remote_port = values.get(LOCAL_PORT, 0), values.get(REMOTE_PORT, 0)
    for name, port in ((LOCAL_PORT.name, local_port), (REMOTE_PORT.name, remote_port)):
        if port and protocol not in _PORTED:
            ctx.key_problem(values, name, "a port needs protocol 'tcp', 'udp' or 'sctp'")
    here, there = _host(local), _host(remote)
    mine, theirs = values.get(LOCAL_SUBNETS, ()), values.get(REMOTE_SUBNETS, ())
    if not (mine or theirs or protocol or local_port or remote_port):
        return (Policy(Selector(here), Selector(there), 0, send_ids=False),)
    sides = (
        (LOCAL_SUBNETS, mine, here, theirs or (there,), REMOTE_SUBNETS),
        (REMOTE_SUBNETS, theirs, there, mine or (here,), LOCAL_SUBNETS),
    )
    for field, subnets, host, others, other in sides:
        families = {subnet.version for subnet in others}
        for index, subnet in enumerate(subnets):
            if mode == "transport" and subnet != host:
                # Transport mode protects the two hosts' own traffic only (RFC 4301 §4.1).
                ctx.key_problem(
                    values,
                    field.name,
                    f"{subnet} is not {host}: transport mode carries only traffic between "
                    'the two hosts (use mode = "tunnel")',
                    (index,),
                )
            elif subnet.version not in families:
                ctx.key_problem(
                    values,
                    field.name,
                    f"IPv{subnet.version} subnet {subnet} has no IPv{subnet.version} subnet "
                    f"to pair with in {other.name}",
                    (index,),
                )
    pairs = [
        (ours, peer)
        for ours in mine or (here,)
        for peer in theirs or (there,)
        if ours.version == peer.version
    ]
    return tuple(
        Policy(Selector(ours, protocol, local_port), Selector(peer, protocol, remote_port), 0)
        for ours, peer in pairs
    )


def _host(address: IpAddress) -> IPv4Network | IPv6Network:
    """address/32 or /128, from its number: ip_network parses its text again (10,000 peers)."""
    if isinstance(address, IPv4Address):
        return IPv4Network((int(address), 32))
    return IPv6Network((int(address), 128))


def _unique(
    ctx: Collector, peers: list[PeerConfig], where: dict[str, Values]
) -> tuple[PeerConfig, ...]:
    """No two peers share an address (the engine finds a peer by it) or a selector pair (the
    kernel holds one policy per pair)."""
    addresses: dict[str, str] = {}
    pairs: dict[tuple[Selector, Selector], str] = {}
    kept: list[PeerConfig] = []
    for peer in peers:
        values = where[peer.name]
        owner = addresses.setdefault(peer.address, peer.name)
        if owner != peer.name:
            ctx.key_problem(
                values,
                ADDRESS.name,
                f"{peer.address} is already the address of {format_path(('peers', owner))}",
            )
            continue
        clash = next((p for p in peer.policies if (p.local, p.remote) in pairs), None)
        if clash is not None:
            key = REMOTE_SUBNETS if values.has(REMOTE_SUBNETS.name) else LOCAL_SUBNETS
            ctx.key_problem(
                values,
                key.name,
                f"selectors {_selector(clash.local)} -> {_selector(clash.remote)} are already "
                f"used by {format_path(('peers', pairs[(clash.local, clash.remote)]))}",
            )
            continue
        for p in peer.policies:
            pairs[(p.local, p.remote)] = peer.name
        kept.append(peer)
    return tuple(kept)


def _selector(selector: Selector) -> str:
    out = str(selector.network)
    if selector.protocol:
        out += f" protocol {selector.protocol}"
    if selector.port:
        out += f" port {selector.port}"
    return out
