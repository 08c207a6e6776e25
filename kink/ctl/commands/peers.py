"""`kinkctl peers`: the configured peers and what kinkd knows of them."""

import argparse
from collections.abc import Iterator
from typing import Any

from kink.ctl import units
from kink.ctl.command import Command
from kink.ctl.connect import EXIT_CODES_HELP, add_common, answer
from kink.ctl.table import table

_DESCRIPTION = f"""\
One line per peer: name, address and port, Kerberos principal, start action
(trap|start|none), mode, the peer's epoch (RFC 4430 §3.7; "-" until it has answered), its SAs,
exchanges in progress, requests queued behind them, and the measured round-trip time.

With --json: the result of the control protocol's `peers` command
(kink.daemon.control_protocol), rtt in seconds.

{EXIT_CODES_HELP}"""

_HEADERS = (
    "PEER",
    "ADDRESS",
    "PRINCIPAL",
    "START",
    "MODE",
    "EPOCH",
    "SAS",
    "XCHG",
    "QUEUED",
    "RTT",
)
_RIGHT = (6, 7, 8, 9)


def _rtt(seconds: float | None) -> str:
    return units.ABSENT if seconds is None else f"{seconds * 1000:.1f} ms"


def render(result: dict[str, Any]) -> Iterator[str]:
    peers = result["peers"]
    if not peers:
        yield "no peers configured"
        return
    rows = [
        (
            p["name"],
            units.endpoint(p["address"], p["port"]),
            p["principal"],
            p["start_action"],
            p["mode"],
            units.epoch(p["epoch"]),
            str(p["sas"]),
            str(p["transactions"]),
            str(p["queued"]),
            _rtt(p["rtt"]),
        )
        for p in peers
    ]
    yield from table(_HEADERS, rows, _RIGHT)


def _run(args: argparse.Namespace) -> int:
    return answer(args, "peers", {}, render)


COMMAND = Command(
    name="peers",
    summary="list the peers: address, principal, start action, epoch, SAs",
    description=_DESCRIPTION,
    configure=add_common,
    run=_run,
)
