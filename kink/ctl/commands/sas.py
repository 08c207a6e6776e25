"""`kinkctl sas`: the SAs kinkd negotiated, with the kernel's counters.

kinkd answers `sas` in parts (kink.daemon.control_protocol: paged answers); each part is
printed as it comes, so that 100,000 SA pairs are never held whole (issue 9)."""

import argparse
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from kink.ctl import units
from kink.ctl.command import EXIT_OK, Command
from kink.ctl.connect import EXIT_CODES_HELP, Failure, add_common, ask_parts, fail
from kink.ctl.table import Table
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
such SA); one SA bundle a line. A failure after the first bundles were printed ends the
document with "error" and "message" next to "sas".

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


def rows(children: Iterable[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The table's rows of `sas` entries: one per protocol of each bundle."""
    return [
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


def render(parts: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The lines of the table, a part of the answer at a time (kink.ctl.table.Table)."""
    table = Table(_HEADERS, _RIGHT)
    for part in parts:
        if part["sas"]:
            yield from table.lines(rows(part["sas"]))
    if not table.started:
        yield "no SAs"


def render_json(parts: Iterable[dict[str, Any]]) -> Iterator[str]:
    """{"sas": [...]} a part at a time, one bundle a line (keys sorted), once the first part
    is in. A Failure between parts comes out once every bundle before it is out."""
    parts = iter(parts)
    first = next(parts)
    yield '{"sas": ['
    held: str | None = None  # the last bundle: its comma depends on what follows
    try:
        for part in itertools.chain((first,), parts):
            for child in part["sas"]:
                if held is not None:
                    yield held + ","
                held = json.dumps(child, sort_keys=True)
    except Failure:
        if held is not None:
            yield held
        raise
    if held is not None:
        yield held
    yield "]}"


def _run(args: argparse.Namespace) -> int:
    printed = False
    try:
        for line in (render_json if args.json else render)(ask_parts(args.socket, "sas")):
            print(line)
            printed = True
    except Failure as failure:
        if not (printed and args.json):
            return fail(args, failure)
        # The document is open: closed with the error, so that it stays JSON.
        print(f"kinkctl: {failure.message}", file=sys.stderr)
        print(f"], {json.dumps({'error': failure.code, 'message': failure.message})[1:]}")
        return failure.exit_code
    return EXIT_OK


COMMAND = Command(
    name="sas",
    summary="list the SAs: peer, SPIs, selectors, algorithms, mode, age, rekey time, traffic",
    description=_DESCRIPTION,
    configure=add_common,
    run=_run,
)
