"""`kinkctl status`: the daemon at a glance."""

import argparse
import time
from collections.abc import Iterator
from typing import Any

from kink.ctl import units
from kink.ctl.command import Command
from kink.ctl.connect import EXIT_CODES_HELP, add_common, answer
from kink.ctl.table import fields

_DESCRIPTION = f"""\
Show kinkd's state: version, process, epoch (RFC 4430 §3.7), uptime, addresses, log level,
principal and the expiry of its ticket-granting ticket, the privilege helper, peers up and
down, SAs, and the message and Kerberos counters.

With --json: the result of the control protocol's `status` command
(kink.daemon.control_protocol), times in seconds, tgt_expiry in Unix time.

{EXIT_CODES_HELP}"""


def _ticket(expiry: float | None, now: float) -> str:
    if expiry is None:
        return "no TGT"
    left = expiry - now
    when = units.local_time(expiry)
    if left < 0:
        return f"TGT expired {units.duration(-left)} ago ({when})"
    return f"TGT expires in {units.duration(left)} ({when})"


def _helper(helper: dict[str, Any]) -> str:
    state = "connected" if helper["connected"] else "DISCONNECTED"
    connects = helper["connects"]
    plural = "" if connects == 1 else "s"
    return f"{state} (backend {helper['backend'] or '-'}, {connects} connection{plural})"


def render(status: dict[str, Any]) -> Iterator[str]:
    peers, transport, kerberos = status["peers"], status["transport"], status["kerberos"]
    listening = ", ".join(units.endpoint(h, p) for h, p in status["listening"]) or "-"
    yield from fields(
        [
            ("kinkd", f"{status['version']}, pid {status['pid']}, uid {status['uid']}"),
            ("uptime", units.duration(status["uptime"])),
            ("epoch", units.epoch(status["epoch"])),
            ("principal", status["principal"]),
            ("ticket", _ticket(status["tgt_expiry"], time.time())),
            ("listening", listening),
            ("log level", status["log_level"]),
            ("helper", _helper(status["helper"])),
            ("peers", f"{peers['up']} up, {peers['down']} down ({peers['total']} in all)"),
            ("SAs", f"{status['sas']} ({status['transactions']} exchanges in progress)"),
            (
                "datagrams",
                f"{transport['received']} received, {transport['sent']} sent, "
                f"{transport['send_errors']} send errors, "
                f"{transport['receive_queue_drops']} dropped by the kernel (receive queue full)",
            ),
            ("kerberos", f"{kerberos['fetches']} ticket fetches, {kerberos['failures']} failed"),
            *((name, str(value)) for name, value in sorted(status["counters"].items())),
        ]
    )


def _run(args: argparse.Namespace) -> int:
    return answer(args, "status", {}, render)


COMMAND = Command(
    name="status",
    summary="show the daemon's state: epoch, uptime, peers, SAs, helper, ticket",
    description=_DESCRIPTION,
    configure=add_common,
    run=_run,
)
