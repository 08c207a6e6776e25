"""kinkd's command line: `kinkd [--config FILE] [--foreground] [--check-config]`.

Start-up order (issue 6: never root after start): read and check the configuration, open the
UDP sockets (port 910 needs root or CAP_NET_BIND_SERVICE; or take them from systemd), create
the state and runtime directories for the daemon's user, drop to that user, then run trio.
kinkd stays in the foreground (systemd Type=notify, or a supervisor); --foreground is accepted
for the habit of other daemons and changes nothing: kinkd never forks itself.
"""

import argparse
import logging
import sys

import trio

from kink.daemon import logs
from kink.daemon.config import ConfigError, KinkConfig, load
from kink.daemon.loop_clock import LoopClock
from kink.daemon.notify import Notifier
from kink.daemon.privileges import (
    PrivilegeError,
    drop_privileges,
    lookup,
    prepare_directory,
    systemd_sockets,
)
from kink.daemon.runner import Daemon, StartError
from kink.daemon.transport import open_sockets, prepare_sockets

DEFAULT_CONFIG = "/etc/kink/kink.toml"
EXIT_CONFIG = 2  # the configuration is invalid
EXIT_START = 1  # could not start (sockets, user, directories)

log = logging.getLogger("kinkd")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="kinkd", description="The KINK (RFC 4430) daemon.")
    ap.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE")
    ap.add_argument("--foreground", action="store_true", help="(kinkd never forks)")
    ap.add_argument("--check-config", action="store_true", help="check the configuration and exit")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"kinkd: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    if args.check_config:
        print(f"kinkd: {args.config}: OK ({len(config.engine.peers)} peers)")
        return
    logs.setup(config.daemon.log_level)
    try:
        daemon = prepare(config)
    except (OSError, PrivilegeError) as exc:
        log.error("cannot start: %s", exc)
        raise SystemExit(EXIT_START) from None
    try:
        # LoopClock: the tasks woken by I/O take the loop's reading of the clock (turn_time).
        trio.run(daemon.run, clock=LoopClock())
    except StartError as exc:
        log.error("cannot start: %s", exc)
        raise SystemExit(EXIT_START) from None


def prepare(config: KinkConfig) -> Daemon:
    """Everything that needs root, then the drop; the Daemon to run."""
    settings = config.daemon
    sockets = systemd_sockets()
    if sockets is None:
        sockets = open_sockets(settings.listen, settings.port)
    else:
        prepare_sockets(sockets)
    uid, gid = lookup(settings.user, settings.group)
    prepare_directory(settings.state_dir, uid, gid)
    prepare_directory(settings.runtime_dir, uid, gid)
    prepare_directory(settings.control_socket.parent, uid, gid)
    drop_privileges(uid, gid)
    return Daemon(config, sockets, notifier=Notifier.from_environ(), handle_signals=True)
