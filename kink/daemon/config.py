"""kink.toml: the daemon's configuration, checked in full before anything starts.

    from kink.daemon.config import load, KinkConfig, DaemonSettings, ConfigError

Three kinds of table (kink.toml.example documents every key with its default):
- [daemon]: the process (DaemonSettings) and the engine's host-wide settings (EngineConfig:
  timers, nonces, ...), with `address`, the one local address the engine negotiates from.
- [defaults]: any peer key; every peer inherits what it does not set itself.
- [peers.NAME]: one peer each (PeerConfig): address, principal, selectors, proposals, ...

Every problem found is reported (ConfigError), each as FILE:LINE: KEY: REASON.
"""

import gc
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from kink.crypto.profiles import AesPrf
from kink.daemon.config_errors import ConfigError, Problem
from kink.daemon.config_fields import (
    Collector,
    Field,
    Invalid,
    IpAddress,
    Values,
    absolute_path,
    address,
    array,
    boolean,
    by_name,
    integer,
    one_of,
    seconds,
    table,
    text,
    unknown_key,
)
from kink.daemon.config_peers import (
    DEFAULT_REQIDS,
    IMPLICIT_START,
    MIN_REQIDS,
    principal,
    read_peers,
)
from kink.daemon.control_protocol import DEFAULT_CONTROL_SOCKET
from kink.engine.config import EngineConfig

# pyproject.toml still names tomli for older Pythons; the guard keeps mypy on one branch.
if sys.version_info >= (3, 11):  # noqa: UP036
    import tomllib
else:
    import tomli as tomllib

__all__ = ["ConfigError", "DaemonSettings", "KinkConfig", "Problem", "load", "loads"]

DEFAULT_PATH = Path("/etc/kink/kink.toml")
LOG_LEVELS = ("debug", "info", "notice", "warning", "error")
DEFAULT_REQID_BASE = 0x4B49_0000  # kink_privsep's default reqid range starts here ("KI")


@dataclass(frozen=True)
class DaemonSettings:
    """The daemon process's own settings ([daemon] keys of the same names)."""

    user: str = "kink"
    group: str = "kink"
    state_dir: Path = Path("/var/lib/kink")  # epoch + SA state persisted here
    runtime_dir: Path = Path("/run/kink")
    control_socket: Path = Path(DEFAULT_CONTROL_SOCKET)
    control_group: str | None = None  # group allowed to use kinkctl (socket mode 0660)
    helper_socket: Path = Path("/run/kink-privsep/privsep.sock")
    keytab: Path = Path("/etc/krb5.keytab")
    principal: str | None = None  # None: kink/<lowercase fqdn>@<default realm>
    ccache_dir: Path | None = None  # None: private in-memory ccache
    krb5_config: Path | None = None  # KRB5_CONFIG for the daemon's libkrb5
    listen: tuple[str, ...] = ()  # local addresses; () = all IPv4 and IPv6
    port: int = 910  # RFC 4430 §9
    log_level: str = "info"  # debug|info|notice|warning|error
    delete_on_stop: bool = False  # SIGTERM: DELETE every SA first
    helper_reqid_base: int = DEFAULT_REQID_BASE  # the helper's reqid range starts here
    helper_reqids: int = DEFAULT_REQIDS  # and holds this many (config_peers numbers them)


@dataclass(frozen=True)
class KinkConfig:
    """A checked configuration. `engine.principal` is daemon.principal, or "" when that is
    unset: the daemon then puts in kink/<fqdn>@<default realm> (dataclasses.replace)."""

    daemon: DaemonSettings
    engine: EngineConfig
    source: Path


def _listen(value: object) -> tuple[str, ...]:
    return tuple(str(a) for a in array(address)(value))


ADDRESS = Field("address", address)
LISTEN = Field("listen", _listen)
# [daemon] keys that are DaemonSettings fields of the same name.
_SETTINGS: tuple[Field[Any], ...] = (
    Field("user", text),
    Field("group", text),
    Field("state_dir", absolute_path),
    Field("runtime_dir", absolute_path),
    Field("control_socket", absolute_path),
    Field("control_group", text),
    Field("helper_socket", absolute_path),
    Field("keytab", absolute_path),
    Field("principal", principal),
    Field("ccache_dir", absolute_path),
    Field("krb5_config", absolute_path),
    LISTEN,
    Field("port", integer(1, 65535)),
    Field("log_level", one_of({level: level for level in LOG_LEVELS})),
    Field("delete_on_stop", boolean),
    Field("helper_reqid_base", integer(1, 0xFFFF_FFFF - (MIN_REQIDS - 1))),
    Field("helper_reqids", integer(MIN_REQIDS, 0xFFFF_FFFF)),
)
# [daemon] keys that are EngineConfig fields of the same name (timers in seconds).
_ENGINE: tuple[Field[Any], ...] = (
    Field("retransmit_initial", seconds(0, inclusive=False)),
    Field("retransmit_factor", seconds(1, inclusive=True)),
    Field("retransmit_cap", seconds(0, inclusive=False)),
    Field("max_attempts", integer(1)),
    Field("max_outstanding", integer(1)),
    Field("reply_cache_lifetime", seconds(0, inclusive=False)),
    Field("delete_grace", seconds(0, inclusive=False)),
    Field("delete_grace_default", seconds(0, inclusive=False)),
    Field("rekey_margin", seconds(0, inclusive=True)),
    Field("dpd_delay", seconds(0, inclusive=False)),
    Field("replay_window", integer(0, 32)),  # XFRM's legacy replay bitmap holds 32 packets
    Field("nonce_length", integer(8, 256)),  # RFC 2409 §5: 8 to 256 octets
    Field("responder_nonce", boolean),
    Field("aes_prf", one_of({prf.value: prf for prf in AesPrf})),
)
DAEMON_FIELDS = by_name(ADDRESS, *_SETTINGS, *_ENGINE)
DAEMON_KEYS = tuple(DAEMON_FIELDS)
SECTIONS = ("daemon", "defaults", "peers")

_TOML_POSITION = re.compile(r"^(?P<reason>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def load(path: str | os.PathLike[str]) -> KinkConfig:
    """Read and check the configuration file; ConfigError naming every problem."""
    source = Path(path)
    try:
        data = source.read_bytes()
    except OSError as e:
        raise ConfigError([Problem(source, None, "", f"cannot read: {e.strerror}")]) from None
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError([Problem(source, None, "", f"not UTF-8: {e.reason}")]) from None
    return loads(content, source)


def loads(content: str, source: Path) -> KinkConfig:
    """Check the configuration text `content`, naming `source` in problems.

    Without the cycle collector: loading only makes objects that stay (or all go with a
    ConfigError), and with 10,000 peers its passes over them were half of the load's time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _checked(content, source)
    finally:
        if enabled:
            gc.enable()


def _checked(content: str, source: Path) -> KinkConfig:
    try:
        document = tomllib.loads(content)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([_syntax_problem(source, str(e))]) from None
    ctx = Collector(source, content)
    for key in document:
        if key not in SECTIONS:
            ctx.problem((key,), unknown_key(key, SECTIONS))
    daemon = _daemon_values(ctx, document)
    settings = DaemonSettings(**daemon.kwargs(_SETTINGS)) if daemon else DaemonSettings()
    engine = _engine(ctx, daemon, settings) if daemon else None
    reqids = (settings.helper_reqid_base, settings.helper_reqids)
    peers = read_peers(ctx, document, engine, reqids)
    ctx.check()
    assert engine is not None  # no problems: [daemon] was read
    return KinkConfig(settings, replace(engine, peers=peers), source)


def _syntax_problem(source: Path, message: str) -> Problem:
    """tomllib's message with its position as FILE:LINE:COLUMN."""
    found = _TOML_POSITION.match(message)
    if found is None:
        return Problem(source, None, "", message)
    line, column = int(found["line"]), int(found["column"])
    return Problem(source, line, "", found["reason"], column)


def _daemon_values(ctx: Collector, document: Mapping[str, object]) -> Values | None:
    try:
        data = table(document.get("daemon", {}))
    except Invalid as e:
        ctx.problem(("daemon",), e.reason)
        return None
    return ctx.read(("daemon",), data, DAEMON_FIELDS)


def _engine(ctx: Collector, daemon: Values, settings: DaemonSettings) -> EngineConfig | None:
    """The engine's host-wide settings (no peers yet); None if [daemon] has a problem."""
    before = ctx.count
    if not ctx.require(daemon, (ADDRESS.name,)) or daemon.invalid:
        return None
    local: IpAddress = daemon.get(ADDRESS, ip_address(0))
    engine = EngineConfig(
        address=str(local),
        principal=settings.principal or "",
        port=settings.port,
        reqid_base=settings.helper_reqid_base + IMPLICIT_START,
        **daemon.kwargs(_ENGINE),
    )
    if settings.listen and str(local) not in settings.listen:
        ctx.problem(daemon.where(ADDRESS.name), f"{local} is not one of daemon.listen")
    for index, item in enumerate(settings.listen):
        if settings.listen.index(item) != index:
            ctx.problem((*daemon.where(LISTEN.name), index), f"{item} is listed twice")
    last = settings.helper_reqid_base + settings.helper_reqids - 1
    if last > 0xFFFF_FFFF:
        key = "helper_reqids" if daemon.has("helper_reqids") else "helper_reqid_base"
        ctx.problem(
            daemon.where(key),
            f"helper_reqid_base {settings.helper_reqid_base:#x} + {settings.helper_reqids:#x} "
            "reqids go past 0xffffffff",
        )
    if engine.retransmit_cap < engine.retransmit_initial:
        ctx.problem(
            daemon.where("retransmit_cap"),
            f"{engine.retransmit_cap:g} s is less than retransmit_initial "
            f"({engine.retransmit_initial:g} s)",
        )
    return None if ctx.count > before else engine
