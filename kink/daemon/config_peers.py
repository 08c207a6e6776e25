"""[defaults] and [peers.NAME]: each peer's keys over [defaults], checked and built into
kink.engine.config.PeerConfig with its policies (the selectors it may negotiate, RFC 4430 §10)
and their reqids."""

import hashlib
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
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
    by_name,
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
PEER_FIELDS = by_name(
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
PEER_KEYS = tuple(PEER_FIELDS)
# What a peer gets for a key neither it nor [defaults] sets: PeerConfig's defaults.
_UNSET: dict[str, Any] = {f.name: f.default for f in fields(PeerConfig) if f.default is not MISSING}

Pair = tuple[Selector, Selector]  # a policy's (local, remote) selectors, before its reqid


@dataclass(slots=True)
class _Draft:
    """A peer whose keys are checked, built into its PeerConfig once its policies have their
    reqids (_numbered): one PeerConfig per peer, made once (10,000 peers load in a start-up)."""

    name: str
    values: Values
    address: str
    settings: dict[str, Any]  # PeerConfig's keyword arguments but name, address, policies
    pairs: tuple[Pair, ...]
    send_ids: bool  # False: host to host without ID payloads (RFC 4430 §5.3)


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
    drafts: list[_Draft] = []
    here: Selector | None = None  # daemon.address's host selector, shared by every peer
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
        if here is None:
            here = Selector(_host(ip_address(engine.address)))
        draft = _draft(ctx, name, values, engine, here)
        if draft is not None:
            drafts.append(draft)
    return _numbered(ctx, _unique(ctx, drafts), reqids)


def _numbered(
    ctx: Collector, drafts: list[_Draft], reqids: tuple[int, int]
) -> tuple[PeerConfig, ...]:
    """The peers, built with their policies' reqids: each peer a run of whole blocks (see
    BLOCK), in the order of the file."""
    base, count = reqids
    blocks = (count - IMPLICIT_REQIDS) // BLOCK
    taken = bytearray(blocks)  # 1: the block is some peer's
    out: dict[str, PeerConfig] = {}
    for draft in sorted(drafts, key=lambda d: d.name):
        size = -(-len(draft.pairs) // BLOCK)
        start = _free_run(taken, size, _hash(draft.name) % blocks)
        if start is None:
            ctx.problem(
                ("peers",),
                f"the peers need more than the {blocks} blocks of {BLOCK} reqids that "
                f"daemon.helper_reqids ({count:#x}) leaves them (one per {BLOCK} policies of "
                "a peer)",
            )
            return ()
        taken[start : start + size] = b"\x01" * size
        send_ids = draft.send_ids
        policies = tuple(
            Policy(local, remote, base + _offset(start + i // BLOCK) + i % BLOCK, send_ids)
            for i, (local, remote) in enumerate(draft.pairs)
        )
        out[draft.name] = PeerConfig(
            name=draft.name, address=draft.address, policies=policies, **draft.settings
        )
    return tuple(out[draft.name] for draft in drafts)


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


def _draft(
    ctx: Collector,
    name: str,
    values: Values,
    engine: EngineConfig,
    here: Selector,
) -> _Draft | None:
    """The peer's checked keys (`here`: daemon.address's host selector); None (with problems
    recorded) if they do not fit together."""
    before = ctx.count
    local = here.network.network_address
    remote = values.get(ADDRESS, local)  # required: read_peers checked it is set
    settings = {
        "principal": values.get(PRINCIPAL, ""),
        "proposals": values.get(PROPOSALS, DEFAULT_PROPOSALS),
        **values.kwargs(_DIRECT),
    }
    if remote.version != local.version:
        ctx.key_problem(
            values,
            ADDRESS.name,
            f"an IPv{remote.version} address, but daemon.address {local} is "
            f"IPv{local.version} (the engine negotiates from that one address)",
        )
    elif remote == local:
        ctx.key_problem(values, ADDRESS.name, f"{remote} is daemon.address, this host's own")
    pfs_group = settings.get("pfs_group", _UNSET["pfs_group"])
    if settings.get("pfs_required", _UNSET["pfs_required"]) and pfs_group is None:
        ctx.key_problem(values, PFS_REQUIRED.name, "needs a pfs_group other than 'none'")
    lifetime = settings.get("lifetime_seconds", _UNSET["lifetime_seconds"])
    if lifetime <= engine.rekey_margin:
        ctx.key_problem(
            values,
            LIFETIME_SECONDS.name,
            f"{lifetime} s is not longer than daemon.rekey_margin "
            f"({engine.rekey_margin:g} s): the SA would be rekeyed as soon as it is up",
        )
    mode = settings.get("mode", _UNSET["mode"])
    pairs, send_ids = _policies(ctx, values, here, remote, mode)
    if ctx.count > before:
        return None
    return _Draft(name, values, str(remote), settings, pairs, send_ids)


def _policies(
    ctx: Collector, values: Values, here_selector: Selector, remote: IpAddress, mode: str
) -> tuple[tuple[Pair, ...], bool]:
    """The selector pairs of the peer, and whether they go in ID payloads.

    No subnets, protocol or ports: host to host without ID payloads (RFC 4430 §5.3). Otherwise
    every local subnet with every remote subnet of the same family, a side without subnets
    standing for its host address; the selectors then go in IDci/IDcr (RFC 2407 §4.6.2)."""
    protocol = values.get(PROTOCOL, 0)
    local_port, remote_port = values.get(LOCAL_PORT, 0), values.get(REMOTE_PORT, 0)
    for name, port in ((LOCAL_PORT.name, local_port), (REMOTE_PORT.name, remote_port)):
        if port and protocol not in _PORTED:
            ctx.key_problem(values, name, "a port needs protocol 'tcp', 'udp' or 'sctp'")
    here, there = here_selector.network, _host(remote)
    mine, theirs = values.get(LOCAL_SUBNETS, ()), values.get(REMOTE_SUBNETS, ())
    if not (mine or theirs or protocol or local_port or remote_port):
        return ((here_selector, Selector(there)),), False
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
        (Selector(ours, protocol, local_port), Selector(peer, protocol, remote_port))
        for ours, peer in pairs
    ), True


def _host(address: IpAddress) -> IPv4Network | IPv6Network:
    """address/32 or /128, from its number: ip_network parses its text again (10,000 peers)."""
    if isinstance(address, IPv4Address):
        return IPv4Network((int(address), 32))
    return IPv6Network((int(address), 128))


def _unique(ctx: Collector, drafts: list[_Draft]) -> list[_Draft]:
    """No two peers share an address (the engine finds a peer by it) or a selector pair (the
    kernel holds one policy per pair)."""
    addresses: dict[str, str] = {}
    pairs: dict[Pair, str] = {}
    kept: list[_Draft] = []
    for draft in drafts:
        values = draft.values
        owner = addresses.setdefault(draft.address, draft.name)
        if owner != draft.name:
            ctx.key_problem(
                values,
                ADDRESS.name,
                f"{draft.address} is already the address of {format_path(('peers', owner))}",
            )
            continue
        clash = next((pair for pair in draft.pairs if pair in pairs), None)
        if clash is not None:
            key = REMOTE_SUBNETS if values.has(REMOTE_SUBNETS.name) else LOCAL_SUBNETS
            ctx.key_problem(
                values,
                key.name,
                f"selectors {_selector(clash[0])} -> {_selector(clash[1])} are already "
                f"used by {format_path(('peers', pairs[clash]))}",
            )
            continue
        pairs.update(dict.fromkeys(draft.pairs, draft.name))
        kept.append(draft)
    return kept


def _selector(selector: Selector) -> str:
    out = str(selector.network)
    if selector.protocol:
        out += f" protocol {selector.protocol}"
    if selector.port:
        out += f" port {selector.port}"
    return out
