"""ChildRecord: what a restarted daemon needs to take over the SAs it left in the kernel
(RFC 4430 §3.7: a restart that keeps its SAs keeps its epoch; only losing them starts a new one).

A record is plain data and carries no key: the SAs and their keys stay in the kernel, the
engine only needs to know them again (to match kernel events, rekey the ones it initiated at
their soft lifetime and DELETE them on request). Times are relative, since engine time is the
daemon's clock and that clock starts again with the process: `age` is the child's age and
`rekey_in` the time left to its rekey when the record was made (Engine.child_records(now)).
to_json() gives its JSON text (to_dict() its values); from_dict() reads those back or raises
RecordError (a record without `awaiting_ack`, written before it existed, is of an established
child).
"""

import json
import math
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from json.encoder import encode_basestring_ascii
from typing import Any, TypeVar

from kink.engine.events import SaLifetimes, SaTransform, Selector

T = TypeVar("T")

# Networks parsed from records, by their text: a restart reads 10,000s of records whose
# selectors are mostly the same few networks (issue 9: parsing them was half of from_dict).
# Bounded: cleared when full.
_NETWORKS: dict[str, IPv4Network | IPv6Network] = {}
_NETWORKS_MAX = 4096


class RecordError(ValueError):
    """A record that cannot be read (a damaged or foreign state file)."""


# Not frozen (issue 9): one is made per child changed on each save (Engine.record_changes, two
# per rekey on each side) and per child read back at a restart (100,000s); a frozen dataclass
# pays object.__setattr__ for each of its fifteen fields (~2 us a record). Treat as read-only.
@dataclass(slots=True)
class ChildRecord:
    """One established child: peer name, role (only the initiator rekeys, §3.6), per protocol
    (protocol, inbound SPI, outbound SPI), mode, reqid and selectors of its policy (send_ids:
    whether IDci/IDcr were exchanged, §5.3), algorithm names, installed lifetimes, the KE group
    if PFS was used, the peer's epoch when it was made (§3.7), its age and the time to its
    rekey (None: not rekeyed by us). awaiting_ack: a responder's child of a 3-way CREATE whose
    ACK had not come: only its inbound SAs are installed (§3.2), and the initiator may hold
    the pair, so a restored one is DELETEd (§3.3)."""

    peer: str
    initiator: bool
    spis: tuple[tuple[int, int, int], ...]
    mode: str
    reqid: int
    local: Selector
    remote: Selector
    send_ids: bool
    transforms: tuple[SaTransform, ...]
    life: SaLifetimes
    pfs_group: int | None
    peer_epoch: int | None
    age: float
    rekey_in: float | None
    awaiting_ack: bool = False

    def to_json(self) -> str:
        """The record as JSON text without blanks, exactly as json.JSONEncoder(separators=(",",
        ":")) writes to_dict() (test_record_parsing checks it), written directly: the state
        file saves the record of every child installed, each rekey's on each side (kink.daemon
        .state, Engine.record_changes), and the dict and its generic encoding cost 12 of a
        state entry's 13 us; now 3 (issue 9). The parts a policy's children share (selectors,
        transforms) are encoded once (_shared_json)."""
        life = self.life
        return (
            f'{{"peer":{_json_str(self.peer)},"initiator":{_JSON_BOOL[self.initiator]},'
            f'"spis":[{",".join([f"[{p:d},{i:d},{o:d}]" for p, i, o in self.spis])}],'
            f'"mode":{_json_str(self.mode)},"reqid":{self.reqid:d},'
            f'"local":{_shared_json(self.local)},"remote":{_shared_json(self.remote)},'
            f'"send_ids":{_JSON_BOOL[self.send_ids]},'
            f'"transforms":{_shared_json(self.transforms)},'
            f'"life":{{"soft_seconds":{life.soft_seconds:d},"hard_seconds":{life.hard_seconds:d},'
            f'"soft_bytes":{life.soft_bytes:d},"hard_bytes":{life.hard_bytes:d}}},'
            f'"pfs_group":{_json_int(self.pfs_group)},"peer_epoch":{_json_int(self.peer_epoch)},'
            f'"age":{json_number(self.age)},"rekey_in":{json_number(self.rekey_in)},'
            f'"awaiting_ack":{_JSON_BOOL[self.awaiting_ack]}}}'
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe values of to_json(), as from_dict() reads them."""
        doc: dict[str, Any] = json.loads(self.to_json())
        return doc

    @classmethod
    def from_dict(cls, data: object, *, aged: float = 0.0) -> "ChildRecord":
        """The record to_dict() made, `aged` seconds older (added to its age, taken from the
        time to its rekey: a record read back as of a later time); RecordError for anything
        else. Checks inline: a restart reads 10,000s of records (issue 9)."""
        d = _mapping(data, "record")
        try:
            spis = tuple(_spi_triple(s) for s in _list(d["spis"], "spis"))
            life = _mapping(d["life"], "life")
            rekey_in = _optional(d["rekey_in"], _number, "rekey_in")
            record = cls(
                peer=_typed(d["peer"], str, "peer"),
                initiator=_typed(d["initiator"], bool, "initiator"),
                spis=spis,
                mode=_typed(d["mode"], str, "mode"),
                reqid=_int(d["reqid"], "reqid"),
                local=_selector(d["local"], "local"),
                remote=_selector(d["remote"], "remote"),
                send_ids=_typed(d["send_ids"], bool, "send_ids"),
                transforms=tuple(_transform(t) for t in _list(d["transforms"], "transforms")),
                life=SaLifetimes(
                    _int(life["soft_seconds"], "soft_seconds"),
                    _int(life["hard_seconds"], "hard_seconds"),
                    _int(life["soft_bytes"], "soft_bytes"),
                    _int(life["hard_bytes"], "hard_bytes"),
                ),
                pfs_group=_optional(d["pfs_group"], _int, "pfs_group"),
                peer_epoch=_optional(d["peer_epoch"], _int, "peer_epoch"),
                age=_number(d["age"], "age") + aged,
                rekey_in=None if rekey_in is None else rekey_in - aged,
                awaiting_ack=_typed(d.get("awaiting_ack", False), bool, "awaiting_ack"),
            )
        except KeyError as exc:
            raise RecordError(f"record without {exc.args[0]!r}") from None
        if not record.spis or record.mode not in ("transport", "tunnel"):
            raise RecordError("record without SPIs or with an unknown mode")
        return record


# JSON as the C encoder writes it (to_json): strings ASCII-escaped, quoted; numbers by repr.
_json_str: Callable[[str], str] = encode_basestring_ascii
_json_generic = json.JSONEncoder(separators=(",", ":")).encode
_JSON_BOOL = ("false", "true")  # indexed by a bool
# Encoded selectors and transform tuples, by value: few distinct ones, each a policy's, shared by
# all its children (both hash once, kink.engine.events). Bounded: cleared when full.
_SHARED_JSON: dict[Selector | tuple[SaTransform, ...], str] = {}
_SHARED_JSON_MAX = 4096


def _json_int(value: int | None) -> str:
    return "null" if value is None else f"{value:d}"


def json_number(value: float | None) -> str:
    """A number (or None) as the JSON encoder writes it: a finite float by its repr."""
    if type(value) is float and -math.inf < value < math.inf:
        return float.__repr__(value)
    if value is None:
        return "null"
    return _json_generic(value)  # an int, a non-finite float: the encoder's own text


def _shared_json(value: Selector | tuple[SaTransform, ...]) -> str:
    text = _SHARED_JSON.get(value)
    if text is None:
        if isinstance(value, Selector):
            doc: Any = {
                "network": str(value.network),
                "protocol": value.protocol,
                "port": value.port,
            }
        else:
            doc = [
                {
                    "protocol": t.protocol,
                    "encryption": t.encryption,
                    "enc_key_bits": t.enc_key_bits,
                    "aead_icv_bits": t.aead_icv_bits,
                    "authentication": t.authentication,
                    "auth_trunc_bits": t.auth_trunc_bits,
                }
                for t in value
            ]
        text = _json_generic(doc)
        if len(_SHARED_JSON) >= _SHARED_JSON_MAX:
            _SHARED_JSON.clear()
        _SHARED_JSON[value] = text
    return text


# The checks below take the exact JSON types first (type() is): isinstance against an ABC or
# a union costs more, and a restart makes some 20 checks per record.


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if type(value) is dict:
        return value
    if not isinstance(value, Mapping):
        raise RecordError(f"{what}: not a mapping")
    return value


def _list(value: object, what: str) -> list[Any]:
    if type(value) is list:
        return value
    if not isinstance(value, list | tuple):
        raise RecordError(f"{what}: not a list")
    return list(value)


def _typed(value: object, kind: type[T], what: str) -> T:
    if type(value) is kind:
        return value
    if not isinstance(value, kind):
        raise RecordError(f"{what}: not a {kind.__name__}")
    return value


def _int(value: object, what: str) -> int:
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecordError(f"{what}: not a non-negative integer")
    return value


def _number(value: object, what: str) -> float:
    if type(value) is float:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{what}: not a number")
    return float(value)


def _optional(value: object, read: Callable[[object, str], T], what: str) -> T | None:
    return None if value is None else read(value, what)


def _optional_str(value: object, what: str) -> str | None:
    return None if value is None else _typed(value, str, what)


def _spi_triple(value: object) -> tuple[int, int, int]:
    items = _list(value, "spis")
    if len(items) != 3:
        raise RecordError("spis: not (protocol, inbound SPI, outbound SPI)")
    protocol, spi_in, spi_out = (_int(v, "spis") for v in items)
    return protocol, spi_in, spi_out


def _selector(value: object, what: str) -> Selector:
    d = _mapping(value, what)
    try:
        network = _network(_typed(d["network"], str, what))
    except (KeyError, ValueError):
        raise RecordError(f"{what}: no valid network") from None
    return Selector(network, _int(d.get("protocol", 0), what), _int(d.get("port", 0), what))


def _network(text: str) -> IPv4Network | IPv6Network:
    network = _NETWORKS.get(text)
    if network is None:
        network = _ipv4_network(text)
        if network is None:
            network = ip_network(text)
        if len(_NETWORKS) >= _NETWORKS_MAX:
            _NETWORKS.clear()
        _NETWORKS[text] = network
    return network


def _ipv4_network(text: str) -> IPv4Network | None:
    """An IPv4 network in the canonical text str() gives, parsed by inet_pton (a third of
    ip_network's time); None for anything else (ip_network decides)."""
    address, _, length = text.partition("/")
    if not (length.isascii() and length.isdigit()):
        return None
    try:
        packed = socket.inet_pton(socket.AF_INET, address)
    except OSError:
        return None
    return IPv4Network((int.from_bytes(packed, "big"), int(length)))


def _transform(value: object) -> SaTransform:
    d = _mapping(value, "transforms")
    try:
        return SaTransform(
            _int(d["protocol"], "protocol"),
            _optional_str(d["encryption"], "encryption"),
            _optional(d["enc_key_bits"], _int, "enc_key_bits"),
            _optional(d["aead_icv_bits"], _int, "aead_icv_bits"),
            _optional_str(d["authentication"], "authentication"),
            _optional(d["auth_trunc_bits"], _int, "auth_trunc_bits"),
        )
    except KeyError as exc:
        raise RecordError(f"transform without {exc.args[0]!r}") from None
