"""The pieces the configuration loader is built from: value checks, keyed fields, and the
collector that turns a bad value into a Problem at the line that set it."""

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import cached_property
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path
from socket import AF_INET, inet_pton
from typing import Any, Generic, TypeVar, cast

from kink.daemon.config_errors import ConfigError, Problem
from kink.daemon.toml_lines import KeyPath, format_path, key_lines, line_of
from kink.engine.events import Network

T = TypeVar("T")
IpAddress = IPv4Address | IPv6Address


class Invalid(Exception):
    """A value is wrong; `at` is where below the checked key (an index, a nested key)."""

    def __init__(self, reason: str, at: KeyPath = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.at = at


Check = Callable[[object], T]


@dataclass(frozen=True, slots=True)
class Field(Generic[T]):
    """A key of a table and the check that turns its TOML value into what the loader uses."""

    name: str
    check: Check[T]


Fields = Mapping[str, Field[Any]]  # the keys a table may have, by name (Collector.read)


def by_name(*fields: Field[Any]) -> Fields:
    """Made once per kind of table: not for each of 10,000 peers (issue 9)."""
    return {f.name: f for f in fields}


# --------------------------------------------------------------------------------- checks


def describe(value: object) -> str:
    """The TOML type of a value tomllib returned, with its article."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime):
        return "a date-time"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, time):
        return "a time"
    return type(value).__name__


def _must_be(kind: str, value: object) -> Invalid:
    return Invalid(f"must be {kind}, not {describe(value)}")


def text(value: object) -> str:
    """A non-empty string."""
    if not isinstance(value, str):
        raise _must_be("a string", value)
    if not value:
        raise Invalid("must not be empty")
    return value


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _must_be("a boolean (true or false)", value)
    return value


def integer(low: int, high: int | None = None) -> Check[int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _must_be("an integer", value)
        if high is None and value < low:
            raise Invalid(f"must be at least {low}, not {value}")
        if high is not None and not low <= value <= high:
            raise Invalid(f"must be between {low} and {high}, not {value}")
        return value

    return check


def seconds(low: float, *, inclusive: bool) -> Check[float]:
    """A duration in seconds (integer or float) above `low`, or at least `low` if inclusive."""

    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _must_be("a number of seconds", value)
        if inclusive and value < low:
            raise Invalid(f"must be at least {low:g}, not {value:g}")
        if not inclusive and value <= low:
            raise Invalid(f"must be greater than {low:g}, not {value:g}")
        return float(value)

    return check


def one_of(choices: Mapping[str, T]) -> Check[T]:
    def check(value: object) -> T:
        if not isinstance(value, str):
            raise _must_be("a string", value)
        if value not in choices:
            names = ", ".join(repr(name) for name in choices)
            raise Invalid(f"must be one of {names}, not {value!r}")
        return choices[value]

    return check


def absolute_path(value: object) -> Path:
    path = Path(text(value))
    if not path.is_absolute():
        raise Invalid(f"must be an absolute path, not {value!r}")
    return path


def address(value: object) -> IpAddress:
    """An IPv4 or IPv6 address (no prefix length, no zone)."""
    name = text(value)
    try:
        # A dotted quad is read by inet_pton(3) first, which takes exactly what ipaddress takes
        # (four decimal parts of 0-255 without leading zeros), in C: there is one per peer, and
        # 10,000s of peers at start-up (issue 9).
        return IPv4Address(int.from_bytes(inet_pton(AF_INET, name), "big"))
    except (OSError, ValueError):  # not one (ValueError: a NUL in it)
        pass
    try:
        return ip_address(name)
    except ValueError:
        raise Invalid(f"{value!r} is not an IPv4 or IPv6 address") from None


def network(value: object) -> Network:
    """A subnet in CIDR notation with no host bits set; a plain address is a /32 or /128."""
    subnet = text(value)
    try:
        return ip_network(subnet)
    except ValueError:
        pass
    try:
        loose = ip_network(subnet, strict=False)
    except ValueError:
        raise Invalid(f"{subnet!r} is not a subnet (CIDR: address/prefix length)") from None
    raise Invalid(f"{subnet!r} has host bits set (did you mean '{loose}'?)")


def array(item: Check[T]) -> Check[tuple[T, ...]]:
    def check(value: object) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise _must_be("an array", value)
        out: list[T] = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except Invalid as e:
                raise Invalid(e.reason, (index, *e.at)) from None
        return tuple(out)

    return check


def table(value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _must_be("a table", value)
    return cast(dict[str, object], value)


def unknown_key(key: str, known: Iterable[str]) -> str:
    """The reason for an unknown key, with the closest known one as a suggestion."""
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


# ------------------------------------------------------------------------------- collecting


class Values:
    """The checked values of one table (or of a peer over [defaults]): key -> (where it was
    set, value)."""

    def __init__(self, home: KeyPath) -> None:
        self.home = home  # the table the values are for; a missing key belongs there
        self.data: dict[str, tuple[KeyPath, Any]] = {}
        self.invalid: set[str] = set()  # keys set to a bad value (a problem already says so)

    def over(self, base: "Values") -> "Values":
        """These values, falling back to `base` for keys not set here."""
        merged = Values(self.home)
        merged.data = {**base.data, **self.data}
        merged.invalid = base.invalid | self.invalid
        return merged

    def get(self, field: Field[T], default: T) -> T:
        found = self.data.get(field.name)
        if found is None:
            return default
        value: T = found[1]  # what field.check returned (no cast: a call per key of a peer)
        return value

    def has(self, name: str) -> bool:
        return name in self.data

    def where(self, name: str) -> KeyPath:
        """Where key `name` was set; if it was not, where it would go."""
        found = self.data.get(name)
        return (*self.home, name) if found is None else found[0]

    def kwargs(self, fields: Iterable[Field[Any]]) -> dict[str, Any]:
        """The values set for `fields`, as keyword arguments for a dataclass whose fields have
        the keys' names (the dataclass supplies the defaults)."""
        return {f.name: self.data[f.name][1] for f in fields if f.name in self.data}


class Collector:
    """The problems found in one file (`text`), each placed at the line defining its key."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.problems: dict[tuple[KeyPath, str], Problem] = {}
        self.count = 0  # problems reported, repeats included: "did this step find any?"

    def problem(self, at: KeyPath, reason: str) -> None:
        """Record a problem (once: [defaults] values are checked for every peer)."""
        self.count += 1
        self.problems.setdefault(
            (at, reason), Problem(self.path, line_of(self.lines, at), format_path(at), reason)
        )

    @cached_property
    def lines(self) -> dict[KeyPath, int]:
        """Each key's line: worked out at the first problem only (a scan of the whole text,
        as long as the rest of loading a file of 10,000 peers)."""
        return key_lines(self.text)

    def key_problem(self, values: Values, name: str, reason: str, below: KeyPath = ()) -> None:
        """A problem with key `name` of `values` (at `below` in it), where that key was set; a
        value inherited from [defaults] is wrong for this peer only, so the reason names it."""
        at = values.where(name)
        if at[: len(values.home)] != values.home:
            reason += f" (for {format_path(values.home)})"
        self.problem((*at, *below), reason)

    def read(self, at: KeyPath, data: Mapping[str, object], known: Fields) -> Values:
        """Check every key of the table `data` at `at` against the fields `known`; unknown
        keys and bad values become problems and are left out of the result."""
        values = Values(at)
        for key, raw in data.items():
            field = known.get(key)
            if field is None:
                self.problem((*at, key), unknown_key(key, known))
                continue
            try:
                values.data[key] = ((*at, key), field.check(raw))
            except Invalid as e:
                values.invalid.add(key)
                self.problem((*at, key, *e.at), e.reason)
        return values

    def require(self, values: Values, names: Iterable[str]) -> bool:
        """Each of `names` is set; a problem for each that is not."""
        ok = True
        for name in names:
            if not values.has(name) and name not in values.invalid:
                self.problem(values.where(name), "missing required key")
                ok = False
        return ok

    def check(self) -> None:
        """Raise ConfigError with every problem, in file order, if there is any."""
        if self.problems:
            ordered = sorted(
                self.problems.values(),
                key=lambda p: (p.line is None, p.line or 0),
            )
            raise ConfigError(ordered)
