"""`kinkctl sas`: the SAs kinkd negotiated, with the kernel's counters."""

import argparse
from collections.abc import Iterator
from typing import Any

from kink.ctl import units
from kink.ctl.command import Command
from kink.ctl.connect import EXIT_CODES_HELP, add_common, answer
from kink.ctl.table import table

_DESCRIPTION = f"""\
One line per SA pair (per protocol of each negotiated bundle): peer, bundle number, state
(larval: being installed, installed, dying: deleted, inbound side kept for a grace time),
whether we initiated it, mode, protocol, inbound and outbound SPIs, algorithms, age, time
until we rekey it ("-": the peer rekeys, RFC 4430 §3.6), and the bytes and packets the kernel
counted in each direction.

With --json: the result of the control protocol's `sas` command
(kink.daemon.control_protocol): SPIs as integers, times in seconds, counters as the kernel
reports them (null when the kernel has no such SA).

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
    "ALGORITHMS",
    "AGE",
    "REKEY-IN",
    "IN",
    "OUT",
)
_RIGHT = (1, 9, 10, 11, 12)


def _traffic(octets: int | None, packets: int | None) -> str:
    if octets is None and packets is None:
        return units.ABSENT
    return f"{units.size(octets)}, {units.count(packets)} pkts"


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
            "/".join(a for a in (sa["enc"], sa["auth"]) if a) or units.ABSENT,
            units.duration(child["age"]),
            units.duration(child["rekey_in"]),
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
    summary="list the SAs: peer, SPIs, algorithms, mode, age, rekey time, traffic",
    description=_DESCRIPTION,
    configure=add_common,
    run=_run,
)
