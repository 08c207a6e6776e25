"""`kinkctl sas`: the SAs kinkd negotiated, with the kernel's counters."""

import argparse
from collections.abc import Iterator
from typing import Any

from kink.ctl import units
from kink.ctl.command import Command
from kink.ctl.connect import EXIT_CODES_HELP, add_common, answer
from kink.ctl.table import table
from kink.daemon.control_protocol import IP_PROTOCOL_NAMES

_DESCRIPTION = f"""\
One line per SA pair (per protocol of each negotiated bundle): peer, bundle number, state
(larval: being installed, installed, dying: deleted, inbound side kept for a grace time),
whether we initiated it, mode, protocol, inbound and outbound SPIs, the traffic selectors
(local <-> remote subnet, [port] when one is set, and the IP protocol unless any), algorithms
with their key and ICV lengths in bits (aes-gcm-256, aes-cbc-128/hmac-sha256-128), the PFS
group ("-": none), age, time until we rekey it ("-": the peer rekeys, RFC 4430 §3.6), time
until its hard lifetime ends it, and the bytes and packets the kernel counted in each
direction.

With --json: the result of the control protocol's `sas` command
(kink.daemon.control_protocol), with the selectors, lifetimes and reqid as well: SPIs as
integers, times in seconds, counters as the kernel reports them (null when the kernel has no
such SA).

{EXIT_CODES_HELP}"""

_HEADERS = (
    "PEER",
    "SA",
    "STATE",
    "ROLE",
    "MODE",
    "PROTO",
    "SPI-IN",
    "SPI-OUT",
    "SELECTORS",
    "ALGORITHMS",
    "PFS",
    "AGE",
    "REKEY-IN",
    "EXPIRES-IN",
    "IN",
    "OUT",
)
_RIGHT = (1, 11, 12, 13, 14, 15)


def _traffic(octets: int | None, packets: int | None) -> str:
    if octets is None and packets is None:
        return units.ABSENT
    return f"{units.size(octets)}, {units.count(packets)} pkts"


def _side(selector: dict[str, Any]) -> str:
    port = selector["port"]
    return f"{selector['subnet']}[{port}]" if port else str(selector["subnet"])


def selectors(child: dict[str, Any]) -> str:
    """ "10.1.0.0/24 <-> 10.2.0.0/24 udp": local <-> remote, the IP protocol unless any."""
    local, remote = child["local"], child["remote"]
    if local is None or remote is None:
        return units.ABSENT
    numbers = dict.fromkeys(p for p in (local["protocol"], remote["protocol"]) if p)
    protocols = "/".join(IP_PROTOCOL_NAMES.get(p, str(p)) for p in numbers)
    return f"{_side(local)} <-> {_side(remote)}" + (f" {protocols}" if protocols else "")


def algorithms(sa: dict[str, Any]) -> str:
    """ "aes-gcm-256", "aes-cbc-128/hmac-sha256-128", "hmac-sha256-128" (AH): names with the
    key length and, for HMACs, the truncated ICV in bits; an AEAD ICV other than 128 bits
    (RFC 4106 §8) is added as "/icv96"."""
    parts = []
    if sa["enc"] is not None:
        bits = sa["enc_key_bits"]
        parts.append(f"{sa['enc']}-{bits}" if bits else sa["enc"])
        if sa["icv_bits"] not in (None, 128):
            parts.append(f"icv{sa['icv_bits']}")
    if sa["auth"] is not None:
        trunc = sa["auth_trunc_bits"]
        parts.append(f"{sa['auth']}-{trunc}" if trunc else sa["auth"])
    return "/".join(parts) or units.ABSENT


def render(result: dict[str, Any]) -> Iterator[str]:
    children = result["sas"]
    if not children:
        yield "no SAs"
        return
    rows = [
        (
            child["peer"],
            str(child["child"]),
            child["state"],
            "initiator" if child["initiator"] else "responder",
            child["mode"],
            sa["protocol"],
            units.spi(sa["spi_in"]),
            units.spi(sa["spi_out"]),
            selectors(child),
            algorithms(sa),
            child["pfs_group"] or units.ABSENT,
            units.duration(child["age"]),
            units.duration(child["rekey_in"]),
            units.duration(child["expires_in"]),
            _traffic(sa["bytes_in"], sa["packets_in"]),
            _traffic(sa["bytes_out"], sa["packets_out"]),
        )
        for child in children
        for sa in child["sas"]
    ]
    yield from table(_HEADERS, rows, _RIGHT)


def _run(args: argparse.Namespace) -> int:
    return answer(args, "sas", {}, render)


COMMAND = Command(
    name="sas",
    summary="list the SAs: peer, SPIs, selectors, algorithms, mode, age, rekey time, traffic",
    description=_DESCRIPTION,
    configure=add_common,
    run=_run,
)
