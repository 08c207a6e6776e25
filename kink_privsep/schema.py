"""A small declarative schema for decoded msgpack values.

protocol.py writes every request of the helper protocol with these types; `check` walks a value
against one and returns it with defaults filled in and addresses parsed, or raises SchemaError
naming the field. Rules are exact: integers are `int` (not bool), strings are `str`, binaries are
`bytes`, maps reject unknown and missing keys. Binary values are never quoted in a reason (they
may be keys).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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
    if isinstance(spec, Map):
        return _check_map(spec, value, path)
    if isinstance(spec, Int):
        if type(value) is not int:
            raise SchemaError(f"{path}: expected an integer")
        if not spec.lo <= value <= spec.hi:
            raise SchemaError(f"{path}: {value} is outside {spec.lo}..{spec.hi}")
        return value
    if isinstance(spec, Enum):
        if type(value) is not str or value not in spec.choices:
            raise SchemaError(f"{path}: expected one of {', '.join(spec.choices)}")
        return value
    if isinstance(spec, Bin):
        if type(value) is not bytes:
            raise SchemaError(f"{path}: expected binary")
        if len(value) > spec.max_len:
            raise SchemaError(f"{path}: longer than {spec.max_len} bytes")
        return value
    if isinstance(spec, Bool):
        if type(value) is not bool:
            raise SchemaError(f"{path}: expected a boolean")
        return value
    if isinstance(spec, Addr):
        return _address(value, path)
    if isinstance(spec, Prefix):
        return _prefix(value, path)
    if type(value) is not list:
        raise SchemaError(f"{path}: expected an array")
    if len(value) > spec.max_len:
        raise SchemaError(f"{path}: more than {spec.max_len} items")
    return [check(spec.item, item, f"{path}[{i}]") for i, item in enumerate(value)]


def _check_map(spec: Map, value: object, path: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise SchemaError(f"{path}: expected a map")
    unknown = [k for k in value if k not in spec.fields]
    if unknown:
        raise SchemaError(f"{path}: unknown field {str(unknown[0])[:40]!r}")
    out: dict[str, Any] = {}
    for name, field in spec.fields.items():
        if name in value:
            sub = field.spec if isinstance(field, Opt) else field
            out[name] = check(sub, value[name], f"{path}.{name}")
        elif not isinstance(field, Opt):
            raise SchemaError(f"{path}: missing field {name!r}")
        elif field.default is not None:
            out[name] = field.default
    return out


def _address(value: object, path: str) -> IPAddress:
    if type(value) is not str or "%" in value or "/" in value:
        raise SchemaError(f"{path}: expected an IPv4 or IPv6 address")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise SchemaError(f"{path}: expected an IPv4 or IPv6 address") from None


def _prefix(value: object, path: str) -> IPNetwork:
    if type(value) is not str or "%" in value:
        raise SchemaError(f"{path}: expected an address prefix")
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise SchemaError(f"{path}: expected an address prefix without host bits") from None
