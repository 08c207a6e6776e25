"""What a kinkctl subcommand is, and the exit codes all of them share."""

import argparse
from collections.abc import Callable
from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILURE = 1  # the command could not do its work: unreadable input, ...
EXIT_USAGE = 2  # bad command line (argparse exits with 2 as well)
EXIT_NOT_RUNNING = 3  # no kinkd behind the control socket
EXIT_DENIED = 4  # the control socket exists but this user may not use it


@dataclass(frozen=True)
class Command:
    """One subcommand: `configure` adds its arguments to its own parser, `run` does the work
    with the parsed arguments and returns the exit code."""

    name: str
    summary: str  # one line in `kinkctl --help`
    description: str  # the text of `kinkctl <name> --help`
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
