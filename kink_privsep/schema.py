"""A small declarative schema for decoded msgpack values.

protocol.py writes every request of the helper protocol with these types; `check` walks a value
against one and returns it with defaults filled in and addresses parsed, or raises SchemaError
naming the field. Rules are exact: integers are `int` (not bool), strings are `str`, binaries are
`bytes`, maps reject unknown and missing keys. Binary values are never quoted in a reason (they
may be keys).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PARSED = 4096  # addresses and prefixes kept parsed (each cache), a few hundred KiB at most


class SchemaError(Exception):
    """A value does not match its schema; the message names the field path and the rule."""


@dataclass(frozen=True)
class Int:
    lo: int
    hi: int


@dataclass(frozen=True)
class Bool:
    pass


@dataclass(frozen=True)
class Enum:
    choices: tuple[str, ...]


@dataclass(frozen=True)
class Bin:
    max_len: int


@dataclass(frozen=True)
class Addr:
    """An IPv4 or IPv6 address as text ("192.0.2.1", "2001:db8::1"); no zone index."""


@dataclass(frozen=True)
class Prefix:
    """An address prefix as text ("192.0.2.0/24"); host bits must be zero."""


@dataclass(frozen=True)
class List:
    item: Spec
    max_len: int


@dataclass(frozen=True)
class Opt:
    """An optional map field; `default` (when not None) is filled in when the field is absent."""

    spec: Spec
    default: object = None


@dataclass(frozen=True)
class Map:
    fields: Mapping[str, Spec | Opt]


Spec = Int | Bool | Enum | Bin | Addr | Prefix | List | Map


def check(spec: Spec, value: object, path: str) -> Any:
    """`value` checked against `spec`; SchemaError("<path>: <rule>") when it does not match."""
    try:
        return _CHECKS[type(spec)](spec, value)
    except _Mismatch as e:
        raise SchemaError(f"{path}{e.where}: {e.rule}") from None


class _Mismatch(Exception):
    """The rule a value breaks; `where` is its path below the value checked, built on the way
    out (a path is spelled only for a value that does not match: valid requests are the many)."""

    def __init__(self, rule: str) -> None:
        self.rule = rule
        self.where = ""


def _int(spec: Int, value: object) -> int:
    if type(value) is not int:
        raise _Mismatch("expected an integer")
    if not spec.lo <= value <= spec.hi:
        raise _Mismatch(f"{value} is outside {spec.lo}..{spec.hi}")
    return value


def _enum(spec: Enum, value: object) -> str:
    if type(value) is not str or value not in spec.choices:
        raise _Mismatch(f"expected one of {', '.join(spec.choices)}")
    return value


def _bin(spec: Bin, value: object) -> bytes:
    if type(value) is not bytes:
        raise _Mismatch("expected binary")
    if len(value) > spec.max_len:
        raise _Mismatch(f"longer than {spec.max_len} bytes")
    return value


def _bool(spec: Bool, value: object) -> bool:
    if type(value) is not bool:
        raise _Mismatch("expected a boolean")
    return value


def _list(spec: List, value: object) -> list[Any]:
    if type(value) is not list:
        raise _Mismatch("expected an array")
    if len(value) > spec.max_len:
        raise _Mismatch(f"more than {spec.max_len} items")
    item, checker = spec.item, _CHECKS[type(spec.item)]
    out = []
    for i, element in enumerate(value):
        try:
            out.append(checker(item, element))
        except _Mismatch as e:
            e.where = f"[{i}]{e.where}"
            raise
    return out


def _map(spec: Map, value: object) -> dict[str, Any]:
    if type(value) is not dict:
        raise _Mismatch("expected a map")
    if not value.keys() <= spec.fields.keys():
        unknown = next(k for k in value if k not in spec.fields)
        raise _Mismatch(f"unknown field {str(unknown)[:40]!r}")
    out: dict[str, Any] = {}
    for name, field in spec.fields.items():
        if name in value:
            sub = field.spec if type(field) is Opt else field
            try:
                out[name] = _CHECKS[type(sub)](sub, value[name])
            except _Mismatch as e:
                e.where = f".{name}{e.where}"
                raise
        elif type(field) is not Opt:
            raise _Mismatch(f"missing field {name!r}")
        elif field.default is not None:
            out[name] = field.default
    return out


def _address(spec: Addr, value: object) -> IPAddress:
    address = None
    if type(value) is str and "%" not in value and "/" not in value:
        address = _parse_address(value)
    if address is None:
        raise _Mismatch("expected an IPv4 or IPv6 address")
    return address


def _prefix(spec: Prefix, value: object) -> IPNetwork:
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
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@functools.lru_cache(maxsize=PARSED)
def _parse_prefix(text: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        return None


# One checker per kind of spec, found by the spec's type (one dict lookup per value checked).
_CHECKS: dict[type, Callable[[Any, object], Any]] = {
    Map: _map,
    Int: _int,
    Enum: _enum,
    Bin: _bin,
    Bool: _bool,
    Addr: _address,
    Prefix: _prefix,
    List: _list,
}
