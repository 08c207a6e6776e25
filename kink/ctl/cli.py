"""The kinkctl entry point: `kinkctl [--socket PATH] <command> [arguments]`.

Each subcommand is a module of kink.ctl.commands exposing COMMAND; adding one is adding it to
COMMANDS below.
"""

import argparse
import os
import sys
from collections.abc import Sequence

from kink.ctl.command import EXIT_OK, EXIT_USAGE, Command
from kink.ctl.commands import (
    decode,
    initiate,
    log_level,
    monitor,
    peers,
    rekey,
    reload,
    sas,
    status,
    terminate,
)
from kink.ctl.connect import EXIT_CODES_HELP
from kink.daemon.control_protocol import DEFAULT_CONTROL_SOCKET

COMMANDS: tuple[Command, ...] = (
    status.COMMAND,
    peers.COMMAND,
    sas.COMMAND,
    initiate.COMMAND,
    terminate.COMMAND,
    rekey.COMMAND,
    reload.COMMAND,
    log_level.COMMAND,
    monitor.COMMAND,
    decode.COMMAND,
)

_EPILOG = f"""\
{EXIT_CODES_HELP}
  (decode: 1 means unreadable input)

`kinkctl COMMAND --help` describes each command."""


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinkctl",
        description="Control and inspect kink, the KINK (RFC 4430) daemon.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--socket",
        metavar="PATH",
        default=DEFAULT_CONTROL_SOCKET,
        help="kinkd's control socket ([daemon] control_socket); default: %(default)s",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands:
        child = sub.add_parser(
            command.name,
            help=command.summary,
            description=command.description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.configure(child)
        child.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): a code, not an exit
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("kinkctl: error: a command is required", file=sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.run(args)
    except BrokenPipeError:
        # The reader went away (`kinkctl decode x | head`): not a failure. Point stdout at
        # /dev/null so that the interpreter's final flush does not report it again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return code
