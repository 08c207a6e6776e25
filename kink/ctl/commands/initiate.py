"""`kinkctl initiate PEER`: negotiate a peer's SAs now."""

import argparse
from collections.abc import Iterator
from typing import Any

from kink.ctl.command import Command
from kink.ctl.connect import EXIT_CODES_HELP, add_common, answer

_DESCRIPTION = f"""\
Ask kinkd to negotiate SAs for the peer's policies now (a KINK CREATE, RFC 4430 §3.2), as the
kernel's ACQUIRE would for a peer with start_action = "trap". The command returns once kinkd
has taken the request; the outcome shows in `kinkctl monitor` (sa-up, or negotiation-failed
and why) and `kinkctl sas`.

With --json: {{}} (the control protocol's `initiate` result).

{EXIT_CODES_HELP}"""


def _configure(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("peer", metavar="PEER", help="a peer name from the configuration")


def _run(args: argparse.Namespace) -> int:
    def render(result: dict[str, Any]) -> Iterator[str]:
        yield f"initiating {args.peer}: see `kinkctl monitor` or `kinkctl sas` for the outcome"

    return answer(args, "initiate", {"peer": args.peer}, render)


COMMAND = Command(
    name="initiate",
    summary="negotiate a peer's SAs now",
    description=_DESCRIPTION,
    configure=_configure,
    run=_run,
)
