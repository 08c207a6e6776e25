"""`kinkctl reload`: re-read kink.toml, as SIGHUP does."""

import argparse
from collections.abc import Iterator
from typing import Any

from kink.ctl.command import Command
from kink.ctl.connect import EXIT_CODES_HELP, add_common, answer
from kink.ctl.table import fields

_DESCRIPTION = f"""\
Make kinkd re-read its configuration file, as SIGHUP does: new peers are added, removed peers'
SAs are deleted with a KINK DELETE (RFC 4430 §3.3), changed peers are deleted and added again,
unchanged peers are left alone. Only [peers] may change on reload. An invalid file changes
nothing: kinkd's message names the file, the line and the key (exit 1).

With --json: {{"added", "removed", "changed", "unchanged"}}, lists of peer names (the control
protocol's `reload` result).

{EXIT_CODES_HELP}"""

_KEYS = ("added", "removed", "changed", "unchanged")


def render(result: dict[str, Any]) -> Iterator[str]:
    yield "configuration reloaded"
    yield from fields([(key, ", ".join(result[key]) or "none") for key in _KEYS])


def _run(args: argparse.Namespace) -> int:
    return answer(args, "reload", {}, render)


COMMAND = Command(
    name="reload",
    summary="re-read the configuration (as SIGHUP): peers added, removed, changed",
    description=_DESCRIPTION,
    configure=add_common,
    run=_run,
)
