"""kinkctl's side of the control socket (kink.daemon.control_protocol): connecting, asking,
and turning every way that can fail into a message and an exit code a script can test.

Exit codes of the commands that talk to kinkd (`kinkctl --help` lists them):
  0 done, 1 kinkd answered with an error (unknown peer, no such SA, invalid configuration...),
  2 bad usage, 3 kinkd is not running (no socket, or nothing listening on it),
  4 permission denied on the socket (the caller is not in its group).
With --json a failure is also printed on stdout as {"error": CODE, "message": TEXT}: CODE is
one of the protocol's ERR_* codes, or one of the ERR_* below for what happens before kinkd
can answer.
"""

import argparse
import contextlib
import grp
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from kink.ctl.command import EXIT_DENIED, EXIT_FAILURE, EXIT_NOT_RUNNING, EXIT_OK
from kink.daemon.control_protocol import ControlClient, ControlError

TIMEOUT = 30.0  # seconds a command waits for kinkd's answer


ERR_NOT_RUNNING = "not-running"
ERR_DENIED = "permission-denied"
ERR_CONNECTION = "connection"  # any other failure to connect, or the connection lost
ERR_TIMEOUT = "timeout"

EXIT_CODES_HELP = """\
exit status:
  0  done
  1  kinkd answered with an error (unknown peer, no such SA, invalid configuration, ...)
  2  bad usage
  3  kinkd is not running (no socket, or nothing listening on it)
  4  permission denied on the control socket"""


class Failure(Exception):
    """A command that could not be done: the exit code, an error code (ERR_* of the protocol
    or of this module) and the message for people."""

    def __init__(self, exit_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.code = code
        self.message = message


def add_common(parser: argparse.ArgumentParser) -> None:
    """The options every command that talks to kinkd takes."""
    parser.add_argument(
        "--json", action="store_true", help="machine-readable output (one JSON document)"
    )


def _group_of(path: str) -> str:
    try:
        gid = os.stat(path).st_gid
    except OSError:
        return ""  # the directory itself is closed to us: no group to name
    try:
        return f" ({grp.getgrgid(gid).gr_name})"
    except KeyError:
        return f" (gid {gid})"


def open_client(path: str, timeout: float | None = TIMEOUT) -> ControlClient:
    try:
        return ControlClient(path, timeout)
    except FileNotFoundError:
        message = f"kinkd is not running (no socket at {path})"
        raise Failure(EXIT_NOT_RUNNING, ERR_NOT_RUNNING, message) from None
    except ConnectionRefusedError:
        message = f"kinkd is not running (nothing listens on {path})"
        raise Failure(EXIT_NOT_RUNNING, ERR_NOT_RUNNING, message) from None
    except PermissionError:
        message = (
            f"cannot connect to kinkd at {path}: permission denied: ask for membership of "
            f"the group that owns it{_group_of(path)}"
        )
        raise Failure(EXIT_DENIED, ERR_DENIED, message) from None
    except OSError as exc:
        message = f"cannot connect to kinkd at {path}: {exc.strerror or exc}"
        raise Failure(EXIT_FAILURE, ERR_CONNECTION, message) from None


def ask(path: str, command: str, **args: Any) -> dict[str, Any]:
    """kinkd's result for one command; Failure for anything else."""
    with open_client(path) as client, _failures(command):
        return client.request(command, **args)


def ask_parts(path: str, command: str, **args: Any) -> Iterator[dict[str, Any]]:
    """kinkd's result for one command part by part (a paged answer,
    kink.daemon.control_protocol.PAGED), each as it is read; Failure for anything else,
    raised where it happens: before the first part or between two."""
    with open_client(path) as client, _failures(command):
        yield from client.parts(command, **args)


@contextlib.contextmanager
def _failures(command: str) -> Iterator[None]:
    """What can go wrong once connected, as a Failure."""
    try:
        yield
    except ControlError as exc:
        message = f"kinkd refused {command}: {exc.message}"
        raise Failure(EXIT_FAILURE, exc.code, message) from None
    except TimeoutError:
        message = f"kinkd did not answer within {TIMEOUT:g} s"
        raise Failure(EXIT_FAILURE, ERR_TIMEOUT, message) from None
    except OSError as exc:  # ConnectionError included: kinkd stopped while answering
        message = f"lost the connection to kinkd: {exc.strerror or exc}"
        raise Failure(EXIT_FAILURE, ERR_CONNECTION, message) from None


def fail(args: argparse.Namespace, failure: Failure) -> int:
    """Report a failure: the message on stderr, and with --json the error on stdout."""
    print(f"kinkctl: {failure.message}", file=sys.stderr)
    if getattr(args, "json", False):
        print_json({"error": failure.code, "message": failure.message})
    return failure.exit_code


def print_json(document: Mapping[str, Any]) -> None:
    print(json.dumps(document, indent=2, sort_keys=True))


def answer(
    args: argparse.Namespace,
    command: str,
    request: Mapping[str, Any],
    render: Callable[[dict[str, Any]], Iterable[str]],
) -> int:
    """The body of most commands: ask kinkd, print its result (as JSON with --json, else the
    lines of `render`) and return the exit code."""
    try:
        result = ask(args.socket, command, **request)
    except Failure as failure:
        return fail(args, failure)
    if args.json:
        print_json(result)
    else:
        for line in render(result):
            print(line)
    return EXIT_OK
