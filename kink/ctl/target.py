"""What `kinkctl terminate` and `kinkctl rekey` act on: a peer's SAs, or the SA bundle one SPI
(inbound or outbound) belongs to."""

import argparse
import re
from collections.abc import Iterator
from typing import Any

from kink.ctl.command import Command
from kink.ctl.connect import add_common, answer

_HEX = re.compile(r"0[xX][0-9a-fA-F]+")
_DECIMAL = re.compile(r"[0-9]+")
SPI_MAX = 0xFFFFFFFF

HELP = """\
TARGET is a peer name, or an SPI in hex (0x1a2b3c4d, as `kinkctl sas` shows them) or decimal;
a peer whose name is all digits is named with --peer NAME."""


def parse(text: str) -> tuple[str, str | int]:
    """("spi", int) for a number, else ("peer", name)."""
    if _HEX.fullmatch(text) or _DECIMAL.fullmatch(text):
        value = int(text, 0) if _HEX.fullmatch(text) else int(text, 10)
        if not 0 < value <= SPI_MAX:
            raise argparse.ArgumentTypeError(f"{text} is not an SPI (1 to {SPI_MAX:#x})")
        return ("spi", value)
    return ("peer", text)


def configure(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("target", nargs="?", type=parse, metavar="TARGET", help="PEER or SPI")
    group.add_argument("--peer", metavar="NAME", help="a peer, whatever its name looks like")


def request(args: argparse.Namespace) -> dict[str, str | int]:
    """The control protocol's arguments: {"peer": name} or {"spi": int}."""
    if args.peer is not None:
        return {"peer": args.peer}
    kind, value = args.target
    return {kind: value}


def describe(request: dict[str, str | int]) -> str:
    """ "peer b" or "SPI 0x1a2b3c4d", for messages."""
    if "peer" in request:
        return f"peer {request['peer']}"
    return f"SPI {int(request['spi']):#010x}"


def bundle_command(name: str, doing: str, summary: str, description: str) -> Command:
    """A command that acts on SA bundles chosen by TARGET and answers {"children": N}
    (terminate, rekey); `doing` names the action in its one-line answer ("deleting")."""

    def configure_command(parser: argparse.ArgumentParser) -> None:
        add_common(parser)
        configure(parser)

    def run(args: argparse.Namespace) -> int:
        chosen = request(args)

        def render(result: dict[str, Any]) -> Iterator[str]:
            n = result["children"]
            yield f"{doing} {n} SA bundle{'' if n == 1 else 's'} of {describe(chosen)}"

        return answer(args, name, chosen, render)

    return Command(name, summary, description, configure_command, run)
