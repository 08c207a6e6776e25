"""A small declarative schema for decoded msgpack values.

protocol.py writes every request of the helper protocol with these types; `check` walks a value
against one and returns it with defaults filled in and addresses parsed, or raises SchemaError
naming the field. Rules are exact: integers are `int` (not bool), strings are `str`, binaries are
`bytes`, maps reject unknown and missing keys. Binary values are never quoted in a reason (they
may be keys).

Each spec is compiled when it is made: its `checker` is a closure over what it needs (bounds,
choices, the map's fields with their own checkers), so checking a value is one call per value,
with no per-value dispatch on the spec's type (the helper checks every field of every request:
at start-up, 10,000s of policies).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PARSED = 4096  # addresses and prefixes kept parsed (each cache), a few hundred KiB at most

Checker = Callable[[object], Any]


class SchemaError(Exception):
    """A value does not match its schema; the message names the field path and the rule."""


class _Mismatch(Exception):
    """The rule a value breaks; `where` is its path below the value checked, built on the way
    out (a path is spelled only for a value that does not match: valid requests are the many)."""

    def __init__(self, rule: str) -> None:
        self.rule = rule
        self.where = ""


def _compiled(spec: object, checker: Checker) -> None:
    object.__setattr__(spec, "checker", checker)  # frozen: set once, as it is made


@dataclass(frozen=True)
class Int:
    lo: int
    hi: int
    checker: Checker = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lo, hi = self.lo, self.hi

        def check(value: object) -> int:
            if type(value) is not int:
                raise _Mismatch("expected an integer")
            if not lo <= value <= hi:
                raise _Mismatch(f"{value} is outside {lo}..{hi}")
            return value

        _compiled(self, check)


@dataclass(frozen=True)
class Bool:
    checker: Checker = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _compiled(self, _bool)


@dataclass(frozen=True)
class Enum:
    choices: tuple[str, ...]
    checker: Checker = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        choices = frozenset(self.choices)
        rule = f"expected one of {', '.join(self.choices)}"

        def check(value: object) -> str:
            if type(value) is not str or value not in choices:
                raise _Mismatch(rule)
            return value

        _compiled(self, check)


@dataclass(frozen=True)
class Bin:
    max_len: int
    checker: Checker = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        max_len = self.max_len

        def check(value: object) -> bytes:
            if type(value) is not bytes:
                raise _Mismatch("expected binary")
            if len(value) > max_len:
                raise _Mismatch(f"longer than {max_len} bytes")
            return value

        _compiled(self, check)


@dataclass(frozen=True)
class Addr:
    """An IPv4 or IPv6 address as text ("192.0.2.1", "2001:db8::1"); no zone index."""

    checker: Checker = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _compiled(self, _address)


@dataclass(frozen=True)
class Prefix:
    """An address prefix as text ("192.0.2.0/24"); host bits must be zero."""

    checker: Checker = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _compiled(self, _prefix)


@dataclass(frozen=True)
class List:
    item: Spec
    max_len: int
    checker: Checker = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        item, max_len = self.item.checker, self.max_len

        def check(value: object) -> list[Any]:
            if type(value) is not list:
                raise _Mismatch("expected an array")
            if len(value) > max_len:
                raise _Mismatch(f"more than {max_len} items")
            out = []
            for i, element in enumerate(value):
                try:
                    out.append(item(element))
                except _Mismatch as e:
                    e.where = f"[{i}]{e.where}"
                    raise
            return out

        _compiled(self, check)


@dataclass(frozen=True)
class Opt:
    """An optional map field; `default` (when not None) is filled in when the field is absent."""

    spec: Spec
    default: object = None


@dataclass(frozen=True)
class Map:
    fields: Mapping[str, Spec | Opt]
    checker: Checker = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checkers = {
            name: f.spec.checker if isinstance(f, Opt) else f.checker
            for name, f in self.fields.items()
        }
        required = [name for name, f in self.fields.items() if not isinstance(f, Opt)]
        defaults = {
            name: f.default
            for name, f in self.fields.items()
            if isinstance(f, Opt) and f.default is not None
        }

        # One step per field present, not per field of the schema: most optional fields of a
        # request are absent (a lifetime names 2 of its 8 limits).
        def check(value: object) -> dict[str, Any]:
            if type(value) is not dict:
                raise _Mismatch("expected a map")
            if not value.keys() <= checkers.keys():
                unknown = next(k for k in value if k not in checkers)
                raise _Mismatch(f"unknown field {str(unknown)[:40]!r}")
            for name in required:
                if name not in value:
                    raise _Mismatch(f"missing field {name!r}")
            out = defaults.copy()
            for name, item in value.items():
                try:
                    out[name] = checkers[name](item)
                except _Mismatch as e:
                    e.where = f".{name}{e.where}"
                    raise
            return out

        _compiled(self, check)


Spec = Int | Bool | Enum | Bin | Addr | Prefix | List | Map


def check(spec: Spec, value: object, path: str) -> Any:
    """`value` checked against `spec`; SchemaError("<path>: <rule>") when it does not match."""
    try:
        return spec.checker(value)
    except _Mismatch as e:
        raise SchemaError(f"{path}{e.where}: {e.rule}") from None


def _bool(value: object) -> bool:
    if type(value) is not bool:
        raise _Mismatch("expected a boolean")
    return value


def _address(value: object) -> IPAddress:
    address = None
    if type(value) is str and "%" not in value and "/" not in value:
        address = _parse_address(value)
    if address is None:
        raise _Mismatch("expected an IPv4 or IPv6 address")
    return address


def _prefix(value: object) -> IPNetwork:
    if type(value) is not str or "%" in value:
        raise _Mismatch("expected an address prefix")
    prefix = _parse_prefix(value)
    if prefix is None:
        raise _Mismatch("expected an address prefix without host bits")
    return prefix


# Cached: the daemon names the same few addresses and selectors in request after request, and
# parsing them was most of the cost of checking one (the objects are immutable, so shared).
@functools.lru_cache(maxsize=PARSED)
def _parse_address(text: str) -> IPAddress | None:
    number = _dotted_quad(text)
    if number is not None:
        return ipaddress.IPv4Address(number)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@functools.lru_cache(maxsize=PARSED)
def _parse_prefix(text: str) -> IPNetwork | None:
    address, _, length = text.partition("/")
    number = _dotted_quad(address)
    try:
        if number is not None and length.isascii() and length.isdigit() and int(length) <= 32:
            return ipaddress.IPv4Network((number, int(length)))  # strict: no host bits
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        return None


def _dotted_quad(text: str) -> int | None:
    """The number of an IPv4 address in dotted-quad form, read by inet_pton(3): it takes exactly
    what ipaddress takes (four decimal parts of 0-255 without leading zeros), in C, where
    ipaddress parses in Python (each policy of a start-up has a prefix of its own); else None."""
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError):  # not one (ValueError: a NUL in it)
        return None
