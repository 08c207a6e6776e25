"""`kinkctl log-level [LEVEL]`: show or change kinkd's log level."""

import argparse
from collections.abc import Iterator
from typing import Any

from kink.ctl.command import Command
from kink.ctl.connect import EXIT_CODES_HELP, add_common, answer
from kink.daemon.logs import LEVELS

_DESCRIPTION = f"""\
Without LEVEL, show kinkd's log level; with LEVEL, set it until the next restart (the
configuration's [daemon] log_level is the one kinkd starts with). Levels from the most to the
least verbose: {", ".join(LEVELS)}.

With --json: {{"level": LEVEL}}, the level now in force (the control protocol's `log-level`
result).

{EXIT_CODES_HELP}"""


def _configure(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("level", nargs="?", choices=tuple(LEVELS), metavar="LEVEL")


def _run(args: argparse.Namespace) -> int:
    request = {} if args.level is None else {"level": args.level}

    def render(result: dict[str, Any]) -> Iterator[str]:
        yield f"log level {'now ' if args.level else ''}{result['level']}"

    return answer(args, "log-level", request, render)


COMMAND = Command(
    name="log-level",
    summary="show or set kinkd's log level",
    description=_DESCRIPTION,
    configure=_configure,
    run=_run,
)
