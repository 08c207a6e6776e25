"""The IKE Quick Mode payloads that a KINK_ISAKMP payload carries (RFC 4430 §4.2.6 and §5).

Layouts: RFC 2408 §3.2 (generic header), §3.3 (data attributes), §3.4 (SA), §3.5 (Proposal),
§3.6 (Transform), §3.7 (KE), §3.8 (ID), §3.13 (Nonce), §3.14 (Notification), §3.15 (Delete);
their IPsec DOI content: RFC 2407 §4.5 and §4.6. ISAKMP payloads are not padded (RFC 2408
§3.5/§3.6 leave alignment to the end of the message), so a chain is a plain concatenation.

Decoding is structural: every length is checked against the octets present and every octet of
the chain must belong to a payload, but values (DOI, protocol, ID type, ...) are kept as found;
which of them are acceptable is checked by kink.wire.rules. Payload types other than the ones
modelled here decode to RawIsakmpPayload. A DecodeError raised here carries notify =
PAYLOAD-MALFORMED, the answer RFC 4430 §5.5 gives for a bad KINK_ISAKMP payload.
"""

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from kink.wire.constants import IsakmpPayloadType
from kink.wire.errors import DecodeError, EncodeError, ProtocolError
from kink.wire.ipsec_doi import (
    IPSEC_DOI,
    SIT_IDENTITY_ONLY,
    SIT_INTEGRITY,
    SIT_SECRECY,
    AttributeType,
    NotifyType,
)

_GENERIC = struct.Struct(">BBH")  # Next Payload, RESERVED, Payload Length (RFC 2408 §3.2)
_SA_HEAD = struct.Struct(">II")  # DOI, Situation (RFC 2407 §4.6.1)
# A Proposal payload: generic header, then Proposal #, Protocol-Id, SPI Size, # of Transforms
_PROPOSAL = struct.Struct(">BBHBBBB")
_TRANSFORM_HEAD = struct.Struct(">BBH")  # Transform #, Transform-Id, RESERVED2
_ATTRIBUTE_HEAD = struct.Struct(">HH")  # AF|Attribute Type, Attribute Length or Value
_ID_HEAD = struct.Struct(">BBH")  # ID Type, Protocol ID, Port (RFC 2407 §4.6.2)
_DOI_PROTO_SPI = struct.Struct(">IBBH")  # Notify / Delete: DOI, Protocol-Id, SPI Size, 2 octets

_AF_TV = 0x8000  # RFC 2408 §3.3: Attribute Format bit set = Type/Value (basic) form
_NO_MORE = 0
# Plain ints: read off its class, an enum member goes through EnumType's __getattr__ hook on
# Python 3.11 (~0.9 k instructions, a global ~0.1 k), once per Proposal and Transform.
_P = int(IsakmpPayloadType.P)
_T = int(IsakmpPayloadType.T)
_KE = int(IsakmpPayloadType.KE)
_NONCE = int(IsakmpPayloadType.NONCE)
_PAYLOAD_TYPES = {int(t): t for t in IsakmpPayloadType}
# The same few transforms come and go message after message (the offer, the pick): decoded
# ones are kept by their octets and handed out again (they are immutable), and each one keeps
# its own encoding (Transform._payloads) and rules verdict (Transform._accepted). Sharing the
# objects also lets caches keyed by Transform (kink.engine.proposals) hit on identity. Bounded,
# as the octets come from the wire.
TRANSFORM_CACHE_SIZE = 1024
_decoded_transforms: dict[bytes, "Transform"] = {}
_decoded_runs: dict[tuple[bytes, int], tuple["Transform", ...]] = {}
# One object per Transform value (see `shared`): what the engine builds (its offer, its pick)
# and what it decodes meet as the same object, so that a cache keyed by Transform does not
# compare them attribute by attribute (a Python __eq__ per attribute) on every exchange.
_shared_transforms: dict["Transform", "Transform"] = {}


@dataclass(frozen=True, slots=True)
class Attribute:
    """A data attribute (RFC 2408 §3.3). tv=True is the Type/Value (basic) form and value is
    the 16-bit int; tv=False is the Type/Length/Value form and value is the raw octets."""

    type: int
    value: int | bytes
    tv: bool

    @classmethod
    def of_int(cls, type: int, value: int) -> "Attribute":
        """A variable-length attribute holding an unsigned int: the basic form when it fits
        two octets (RFC 2407 §4.5 allows that), else four or eight octets."""
        if value < 0x10000:
            return cls(type, value, True)
        return cls(type, value.to_bytes(4 if value < 1 << 32 else 8, "big"), False)

    def as_int(self) -> int:
        """The value as an unsigned int, whatever form it was sent in (e.g. SA Life Duration,
        which RFC 2407 §4.5 makes variable-length)."""
        if isinstance(self.value, int):
            return self.value
        return int.from_bytes(self.value, "big")


@dataclass(frozen=True, slots=True)
class Transform:
    """Transform payload (RFC 2408 §3.6); transform_id is per protocol (RFC 2407 §4.4)."""

    number: int
    transform_id: int
    attributes: tuple[Attribute, ...] = ()
    # Transforms key the caches of kink.wire and kink.engine.proposals, and hashing one means
    # hashing each of its attributes: the hash is computed once per object.
    _hash: int | None = field(default=None, init=False, repr=False, compare=False)
    # Its two Transform payloads (Next Payload 3, then 0), encoded once per object: every SA
    # payload sent carries its transforms, and finding them in a cache keyed by Transform
    # would run the Python __hash__ above (issue 4). Built from the fields alone.
    _payloads: tuple[bytes, bytes] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # Set by kink.wire.rules once the transform passed its checks (they depend on the fields
    # alone); built anew, a transform is checked anew.
    _accepted: bool = field(default=False, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash((self.number, self.transform_id, self.attributes))
            object.__setattr__(self, "_hash", h)
        return h

    def __reduce__(self) -> tuple[type["Transform"], tuple[int, int, tuple[Attribute, ...]]]:
        # Copies and pickles are built anew: a bytes attribute hashes differently in another
        # process (PYTHONHASHSEED), so the cached hash must not travel.
        return Transform, (self.number, self.transform_id, self.attributes)


def shared(transform: Transform) -> Transform:
    """The one object of this process equal to `transform` (`transform` itself when it is the
    first of its value). Bounded: past TRANSFORM_CACHE_SIZE values the table starts again,
    which only costs later comparisons their identity shortcut."""
    found = _shared_transforms.get(transform)
    if found is not None:
        return found
    if len(_shared_transforms) >= TRANSFORM_CACHE_SIZE:
        _shared_transforms.clear()
    _shared_transforms[transform] = transform
    return transform


# Proposal, SaPayload and NoncePayload are not frozen (issue 4): every CREATE builds and decodes
# them by the handful and a frozen dataclass pays object.__setattr__ for every field. Nothing
# hashes, caches or shares them; what is shared between messages, the decoded Transforms and
# their Attributes, stays frozen (and hashable: caches are keyed by them).
@dataclass(slots=True)
class Proposal:
    """Proposal payload (RFC 2408 §3.5). Proposals sharing a number form a bundle (AND)."""

    number: int
    protocol: int
    spi: bytes
    transforms: tuple[Transform, ...]


@dataclass(slots=True)
class SaPayload:
    """Security Association payload with IPsec DOI content (RFC 2407 §4.6.1): only the
    SIT_IDENTITY_ONLY situation layout, the one KINK allows (RFC 4430 §5)."""

    payload_type: ClassVar[int] = IsakmpPayloadType.SA
    proposals: tuple[Proposal, ...]
    doi: int = IPSEC_DOI
    situation: int = SIT_IDENTITY_ONLY


@dataclass(frozen=True, slots=True)
class KePayload:
    """Key Exchange payload (RFC 2408 §3.7): the DH public value g^x (RFC 4430 §5.7)."""

    payload_type: ClassVar[int] = IsakmpPayloadType.KE
    data: bytes


@dataclass(frozen=True, slots=True)
class IdPayload:
    """Identification payload, IPsec DOI form (RFC 2407 §4.6.2): a traffic selector."""

    payload_type: ClassVar[int] = IsakmpPayloadType.ID
    id_type: int
    protocol: int
    port: int
    data: bytes


@dataclass(slots=True)
class NoncePayload:
    """Nonce payload (RFC 2408 §3.13): Ni or Nr (RFC 4430 §5.4)."""

    payload_type: ClassVar[int] = IsakmpPayloadType.NONCE
    data: bytes


@dataclass(frozen=True, slots=True)
class NotifyPayload:
    """Notification payload (RFC 2408 §3.14, RFC 4430 §5.5)."""

    payload_type: ClassVar[int] = IsakmpPayloadType.N
    notify_type: int
    protocol: int
    spi: bytes
    data: bytes
    doi: int = IPSEC_DOI


@dataclass(frozen=True, slots=True)
class DeletePayload:
    """Delete payload (RFC 2408 §3.15): SPIs of one protocol, all of the same size."""

    payload_type: ClassVar[int] = IsakmpPayloadType.D
    protocol: int
    spis: tuple[bytes, ...]
    doi: int = IPSEC_DOI


@dataclass(frozen=True, slots=True)
class RawIsakmpPayload:
    """Any other ISAKMP payload type (HASH, CERT, VID, unassigned, ...), kept as octets so the
    message still round-trips; kink.wire.rules rejects it where KINK does not allow it."""

    payload_type: int
    data: bytes


IsakmpPayload = (
    SaPayload
    | KePayload
    | IdPayload
    | NoncePayload
    | NotifyPayload
    | DeletePayload
    | RawIsakmpPayload
)


def lifetimes(attributes: Sequence[Attribute]) -> tuple[tuple[int, int], ...]:
    """The (SA Life Type, SA Life Duration) pairs of a transform's attributes, in order.

    RFC 2407 §4.5: a Life Duration MUST follow the Life Type giving its unit; §4.5.2: there may
    be several pairs (e.g. seconds and kilobytes) but they must not conflict, and conflicting
    ones are answered with ATTRIBUTES-NOT-SUPPORTED. Raises ProtocolError with that notify.
    """
    pairs: list[tuple[int, int]] = []
    pending: int | None = None
    for attr in attributes:
        if attr.type == AttributeType.SA_LIFE_TYPE:
            if pending is not None:
                raise _malformed_rule("SA Life Type without a Life Duration (RFC 2407 §4.5)")
            pending = attr.as_int()
        elif attr.type == AttributeType.SA_LIFE_DURATION:
            if pending is None:
                raise _malformed_rule("SA Life Duration without a Life Type (RFC 2407 §4.5)")
            if isinstance(attr.value, bytes) and not 0 < len(attr.value) <= 8:
                raise _malformed_rule("SA Life Duration of more than 8 octets or none")
            if any(kind == pending for kind, _ in pairs):
                raise ProtocolError(
                    f"SA Life Type {pending} given twice (RFC 2407 §4.5.2)",
                    notify=NotifyType.ATTRIBUTES_NOT_SUPPORTED,
                )
            pairs.append((pending, attr.as_int()))
            pending = None
    if pending is not None:
        raise _malformed_rule("SA Life Type without a Life Duration (RFC 2407 §4.5)")
    return tuple(pairs)


def _malformed_rule(reason: str) -> ProtocolError:
    return ProtocolError(reason, notify=NotifyType.PAYLOAD_MALFORMED)


# ---------------------------------------------------------------------------------- decoding


def _malformed(offset: int, reason: str) -> DecodeError:
    return DecodeError(offset, reason, notify=NotifyType.PAYLOAD_MALFORMED)


def _decode_attributes(data: bytes, off: int, end: int) -> tuple[Attribute, ...]:
    attrs: list[Attribute] = []
    unpack = _ATTRIBUTE_HEAD.unpack_from  # local names: this loop runs for every attribute
    while off < end:
        if end - off < 4:
            raise _malformed(off, "truncated data attribute")
        kind, word = unpack(data, off)
        if kind & _AF_TV:
            attrs.append(Attribute(kind & 0x7FFF, word, True))
            off += 4
        else:
            if word > end - off - 4:
                raise _malformed(off, f"attribute length {word} beyond its transform")
            attrs.append(Attribute(kind, data[off + 4 : off + 4 + word], False))
            off += 4 + word
    return tuple(attrs)


def _decode_transforms(data: bytes, off: int, end: int, count: int) -> tuple[Transform, ...]:
    # A proposal's whole run of Transform payloads recurs as well (the same offer, the same
    # pick): its decoded tuple (immutable, of immutable Transforms) is kept by its octets and
    # count, which spares the walk below on every CREATE and REPLY (issue 4).
    key = (bytes(data[off:end]), count)
    found = _decoded_runs.get(key)
    if found is not None:
        return found
    found = _walk_transforms(data, off, end, count)
    if len(_decoded_runs) >= TRANSFORM_CACHE_SIZE:
        _decoded_runs.clear()
    _decoded_runs[key] = found
    return found


def _walk_transforms(data: bytes, off: int, end: int, count: int) -> tuple[Transform, ...]:
    transforms: list[Transform] = []
    more = True
    while off < end:
        if not more:
            raise _malformed(off, "data after the last Transform payload")
        if end - off < 8:
            raise _malformed(off, "truncated Transform payload")
        nxt, _, length = _GENERIC.unpack_from(data, off)
        if length < 8 or length > end - off:
            raise _malformed(off, f"Transform payload length {length}")
        if nxt not in (_T, _NO_MORE):
            raise _malformed(off, f"Transform Next Payload {nxt} is neither 3 nor 0")
        raw = bytes(data[off + 4 : off + length])
        transform = _decoded_transforms.get(raw)
        if transform is None:
            number, transform_id, _ = _TRANSFORM_HEAD.unpack_from(data, off + 4)
            attrs = _decode_attributes(data, off + 8, off + length)
            transform = shared(Transform(number, transform_id, attrs))
            if len(_decoded_transforms) >= TRANSFORM_CACHE_SIZE:
                _decoded_transforms.clear()
            _decoded_transforms[raw] = transform
        transforms.append(transform)
        more = nxt != _NO_MORE
        off += length
    if more and transforms:
        raise _malformed(off, "last Transform payload announces another")
    if len(transforms) != count:
        raise _malformed(off, f"# of Transforms is {count} but {len(transforms)} follow")
    return tuple(transforms)


def _decode_sa(data: bytes, off: int, end: int) -> SaPayload:
    if end - off < 8:
        raise _malformed(off, "SA payload shorter than DOI and Situation")
    doi, situation = _SA_HEAD.unpack_from(data, off)
    if doi != IPSEC_DOI:
        # The Situation's length and layout belong to the DOI (RFC 2408 §3.4).
        raise _malformed(off, f"SA payload in DOI {doi}, not the IPsec DOI")
    if situation & (SIT_SECRECY | SIT_INTEGRITY):
        raise _malformed(off + 4, "labelled situations are not used by KINK (RFC 4430 §5)")
    proposals: list[Proposal] = []
    off += 8
    more = True
    while off < end:
        if not more:
            raise _malformed(off, "data after the last Proposal payload")
        if end - off < 8:
            raise _malformed(off, "truncated Proposal payload")
        nxt, _, length, number, protocol, spi_size, count = _PROPOSAL.unpack_from(data, off)
        if length < 8 or length > end - off:
            raise _malformed(off, f"Proposal payload length {length}")
        if nxt not in (_P, _NO_MORE):
            raise _malformed(off, f"Proposal Next Payload {nxt} is neither 2 nor 0")
        if spi_size > length - 8:
            raise _malformed(off + 6, f"SPI size {spi_size} beyond its proposal")
        spi = data[off + 8 : off + 8 + spi_size]
        transforms = _decode_transforms(data, off + 8 + spi_size, off + length, count)
        proposals.append(Proposal(number, protocol, spi, transforms))
        more = nxt != _NO_MORE
        off += length
    if more and proposals:
        raise _malformed(off, "last Proposal payload announces another")
    return SaPayload(tuple(proposals), doi, situation)


def _decode_id(data: bytes, off: int, end: int) -> IdPayload:
    if end - off < 4:
        raise _malformed(off, "ID payload shorter than its 4-octet header")
    id_type, protocol, port = _ID_HEAD.unpack_from(data, off)
    return IdPayload(id_type, protocol, port, data[off + 4 : end])


def _decode_notify(data: bytes, off: int, end: int) -> NotifyPayload:
    if end - off < 8:
        raise _malformed(off, "Notification payload shorter than its 8-octet header")
    doi, protocol, spi_size, notify_type = _DOI_PROTO_SPI.unpack_from(data, off)
    if spi_size > end - off - 8:
        raise _malformed(off + 5, f"SPI size {spi_size} beyond the Notification payload")
    spi_end = off + 8 + spi_size
    return NotifyPayload(notify_type, protocol, data[off + 8 : spi_end], data[spi_end:end], doi)


def _decode_delete(data: bytes, off: int, end: int) -> DeletePayload:
    if end - off < 8:
        raise _malformed(off, "Delete payload shorter than its 8-octet header")
    doi, protocol, spi_size, count = _DOI_PROTO_SPI.unpack_from(data, off)
    if spi_size * count != end - off - 8:
        raise _malformed(off + 6, f"{count} SPIs of {spi_size} octets do not fill the payload")
    if spi_size == 0 and count:
        raise _malformed(off + 5, "SPIs of size 0")
    start = off + 8
    spis = tuple(data[start + i * spi_size : start + (i + 1) * spi_size] for i in range(count))
    return DeletePayload(protocol, spis, doi)


_Decoder = Callable[[bytes, int, int], IsakmpPayload]
_DECODERS: dict[int, _Decoder] = {
    IsakmpPayloadType.SA: _decode_sa,
    IsakmpPayloadType.ID: _decode_id,
    IsakmpPayloadType.N: _decode_notify,
    IsakmpPayloadType.D: _decode_delete,
}


def decode_qm(
    data: bytes, first: int, start: int = 0, end: int | None = None
) -> tuple[IsakmpPayload, ...]:
    """The chain of ISAKMP payloads in data[start:end] whose first type is `first` (the
    InnerNextPload of KINK_ISAKMP). The chain must fill the range exactly. DecodeError offsets
    are positions in `data`."""
    if end is None:
        end = len(data)
    payloads: list[IsakmpPayload] = []
    kind = first
    off = start
    while kind != _NO_MORE:
        if end - off < 4:
            raise _malformed(off, "truncated ISAKMP payload header")
        nxt, _, length = _GENERIC.unpack_from(data, off)
        if length < 4 or length > end - off:
            raise _malformed(off, f"ISAKMP payload length {length} (room for {end - off})")
        # Nonce and KE are their octets: made here, one call less for the Nonce of every
        # CREATE (issue 4).
        if kind == _NONCE:
            payloads.append(NoncePayload(data[off + 4 : off + length]))
        elif kind == _KE:
            payloads.append(KePayload(data[off + 4 : off + length]))
        else:
            decoder = _DECODERS.get(kind)
            if decoder is None:
                kind = _PAYLOAD_TYPES.get(kind, kind)
                payloads.append(RawIsakmpPayload(kind, data[off + 4 : off + length]))
            else:
                payloads.append(decoder(data, off + 4, off + length))
        off += length
        kind = nxt
    if off != end:
        raise _malformed(off, f"{end - off} octets after the last ISAKMP payload")
    return tuple(payloads)


# ---------------------------------------------------------------------------------- encoding


def _encode_attributes(attributes: tuple[Attribute, ...]) -> bytes:
    parts: list[bytes] = []
    for attr in attributes:
        if not 0 <= attr.type <= 0x7FFF:
            raise EncodeError(f"attribute type {attr.type} does not fit 15 bits")
        if attr.tv:
            if not isinstance(attr.value, int):
                raise EncodeError(f"basic attribute {attr.type} needs an int value")
            parts.append(_ATTRIBUTE_HEAD.pack(attr.type | _AF_TV, attr.value))
        else:
            if not isinstance(attr.value, bytes):
                raise EncodeError(f"variable attribute {attr.type} needs a bytes value")
            parts.append(_ATTRIBUTE_HEAD.pack(attr.type, len(attr.value)))
            parts.append(attr.value)
    return b"".join(parts)


def _transform_payload(transform: Transform, last: bool) -> bytes:
    """A whole Transform payload: generic header (Next Payload 0 for the last transform of its
    proposal, else 3) and body."""
    both = transform._payloads
    if both is None:
        body = _TRANSFORM_HEAD.pack(transform.number, transform.transform_id, 0)
        body += _encode_attributes(transform.attributes)
        length = 4 + len(body)
        both = (_GENERIC.pack(_T, 0, length) + body, _GENERIC.pack(_NO_MORE, 0, length) + body)
        object.__setattr__(transform, "_payloads", both)
    return both[last]


def _encode_sa(payload: SaPayload) -> bytes:
    # One function for the SA payload with its Proposal and Transform payloads (two per CREATE
    # exchange, issue 4); each proposal's generic and proposal headers are one pack.
    parts = [_SA_HEAD.pack(payload.doi, payload.situation)]
    proposals = payload.proposals
    last = len(proposals) - 1
    for i, proposal in enumerate(proposals):
        transforms = proposal.transforms
        count = len(transforms)
        if count == 1:
            both = transforms[0]._payloads
            body = both[1] if both is not None else _transform_payload(transforms[0], True)
        else:
            body = b"".join(_transform_payload(t, j == count - 1) for j, t in enumerate(transforms))
        spi = proposal.spi
        parts.append(
            _PROPOSAL.pack(
                _NO_MORE if i == last else _P,
                0,
                8 + len(spi) + len(body),
                proposal.number,
                proposal.protocol,
                len(spi),
                count,
            )
        )
        parts.append(spi)
        parts.append(body)
    return b"".join(parts)


def _encode_id(payload: IdPayload) -> bytes:
    return _ID_HEAD.pack(payload.id_type, payload.protocol, payload.port) + payload.data


def _encode_notify(payload: NotifyPayload) -> bytes:
    head = _DOI_PROTO_SPI.pack(payload.doi, payload.protocol, len(payload.spi), payload.notify_type)
    return head + payload.spi + payload.data


def _encode_delete(payload: DeletePayload) -> bytes:
    spi_size = len(payload.spis[0]) if payload.spis else 0
    if any(len(spi) != spi_size for spi in payload.spis):
        raise EncodeError("the SPIs of one Delete payload must have the same size")
    head = _DOI_PROTO_SPI.pack(payload.doi, payload.protocol, spi_size, len(payload.spis))
    return head + b"".join(payload.spis)


def _encode_raw(payload: RawIsakmpPayload) -> bytes:
    if payload.payload_type in _DECODERS or payload.payload_type in (_NO_MORE, _KE, _NONCE):
        raise EncodeError(f"RawIsakmpPayload cannot stand for type {payload.payload_type}")
    return payload.data


_DATA_ONLY = (NoncePayload, KePayload)  # a tuple: a `|` union would be built at every test
_ENCODERS: dict[type, Callable[..., bytes]] = {
    SaPayload: _encode_sa,
    IdPayload: _encode_id,
    NotifyPayload: _encode_notify,
    DeletePayload: _encode_delete,
    RawIsakmpPayload: _encode_raw,
}


def encode_qm(payloads: Sequence[IsakmpPayload]) -> bytes:
    """The octets of an ISAKMP payload chain; its first type is payloads[0].payload_type.
    Raises EncodeError for a value that does not fit its field."""
    parts: list[bytes] = []
    last = len(payloads) - 1
    try:
        for i, payload in enumerate(payloads):
            # Nonce and KE are their octets: read here, one call less for the Nonce of every
            # CREATE (issue 4).
            if isinstance(payload, _DATA_ONLY):
                body = payload.data
            else:
                body = _ENCODERS[type(payload)](payload)
            nxt = _NO_MORE if i == last else payloads[i + 1].payload_type
            parts.append(_GENERIC.pack(nxt, 0, 4 + len(body)))
            parts.append(body)
    except struct.error as exc:
        raise EncodeError(f"ISAKMP payload field out of range: {exc}") from exc
    return b"".join(parts)
