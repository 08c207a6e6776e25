"""The KINK payloads (RFC 4430 §4.2.1-§4.2.8) and their chains.

Every payload starts with the generic header Next Payload(1) RESERVED(1) Payload Length(2)
(§4.2, Figure 6); the length covers the header but not the padding that puts the next payload
on a 4-octet boundary (§4.1). KINK_ENCRYPT is not a class here: a Message holds its content
(kink.wire.message), because it is ciphertext until the crypto layer has decrypted it.
"""

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from kink.wire.constants import QM_MAJOR_VERSION, QM_MINOR_VERSION, KinkErrorCode, PayloadType
from kink.wire.errors import DecodeError, EncodeError
from kink.wire.isakmp import IsakmpPayload, decode_qm, encode_qm
from kink.wire.principal import parse_principal_name

GENERIC = struct.Struct(">BBH")  # Next Payload, RESERVED, Payload Length (RFC 4430 §4.2)
_EPOCH = struct.Struct(">I")
_ISAKMP_HEAD = struct.Struct(">BBH")  # InnerNextPload, QMMaj|QMMin, RESERVED (§4.2.6)
_ERROR_CODE = struct.Struct(">I")
PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")  # indexed by length % 4 (RFC 4430 §4.1)
_DONE = int(PayloadType.DONE)  # plain ints: enum attribute lookups cost in the decode loop
_ENCRYPT = int(PayloadType.ENCRYPT)
_ISAKMP = int(PayloadType.ISAKMP)
_AP_REQ = int(PayloadType.AP_REQ)


# ApReq and ApRep are not frozen (issue 4): every authenticated message builds one when it is
# sent and one when it is decoded, and a frozen dataclass pays object.__setattr__ for every
# field (about 2.5 k instructions more for two). No code assigns to one after building it, so
# they stay hashable by value as they were (unsafe_hash).
@dataclass(slots=True, unsafe_hash=True)
class ApReq:
    """KINK_AP_REQ (§4.2.1): the sender's EPOCH and a raw Kerberos KRB_AP_REQ."""

    payload_type: ClassVar[int] = PayloadType.AP_REQ
    epoch: int
    ap_req: bytes


@dataclass(slots=True, unsafe_hash=True)
class ApRep:
    """KINK_AP_REP (§4.2.2): the sender's EPOCH and a raw Kerberos KRB_AP_REP."""

    payload_type: ClassVar[int] = PayloadType.AP_REP
    epoch: int
    ap_rep: bytes


@dataclass(frozen=True, slots=True)
class KrbError:
    """KINK_KRB_ERROR (§4.2.3): a raw Kerberos KRB-ERROR."""

    payload_type: ClassVar[int] = PayloadType.KRB_ERROR
    krb_error: bytes


@dataclass(frozen=True, slots=True)
class TgtReq:
    """KINK_TGT_REQ (§4.2.4): the principal whose TGT is wanted, in the RFC 1964 §2.1.3 form
    (see kink.wire.principal); validated on decode and on encode."""

    payload_type: ClassVar[int] = PayloadType.TGT_REQ
    principal: str


@dataclass(frozen=True, slots=True)
class TgtRep:
    """KINK_TGT_REP (§4.2.5): the DER-encoded TGT of the responder."""

    payload_type: ClassVar[int] = PayloadType.TGT_REP
    tgt: bytes


# Not frozen (issue 4): one or two per message, and a frozen dataclass pays object.__setattr__
# for every field; nothing hashes, caches or shares one.
@dataclass(slots=True)
class Isakmp:
    """KINK_ISAKMP (§4.2.6): one Quick Mode exchange. InnerNextPload is the type of the first
    payload (0 when there is none)."""

    payload_type: ClassVar[int] = PayloadType.ISAKMP
    payloads: tuple[IsakmpPayload, ...]
    qm_major: int = QM_MAJOR_VERSION
    qm_minor: int = QM_MINOR_VERSION


@dataclass(frozen=True, slots=True)
class ErrorPayload:
    """KINK_ERROR (§4.2.8); code is a KinkErrorCode when known."""

    payload_type: ClassVar[int] = PayloadType.ERROR
    code: int


@dataclass(frozen=True, slots=True)
class RawPayload:
    """A payload of a type RFC 4430 does not define (9-255), kept so the message round-trips;
    kink.wire.rules rejects it."""

    payload_type: int
    data: bytes


KinkPayload = ApReq | ApRep | KrbError | TgtReq | TgtRep | Isakmp | ErrorPayload | RawPayload

_ERROR_CODES = {int(code): code for code in KinkErrorCode}


# ---------------------------------------------------------------------------------- decoding


def _decode_ap_rep(data: bytes, off: int, end: int) -> ApRep:
    if end - off < 4:
        raise DecodeError(off, "KINK_AP_REP shorter than its EPOCH")
    return ApRep(_EPOCH.unpack_from(data, off)[0], data[off + 4 : end])


def _decode_krb_error(data: bytes, off: int, end: int) -> KrbError:
    return KrbError(data[off:end])


def _decode_tgt_req(data: bytes, off: int, end: int) -> TgtReq:
    try:
        principal = data[off:end].decode("utf-8")
        parse_principal_name(principal)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise DecodeError(off, f"KINK_TGT_REQ PrincName: {exc}") from None
    return TgtReq(principal)


def _decode_tgt_rep(data: bytes, off: int, end: int) -> TgtRep:
    return TgtRep(data[off:end])


def _decode_error(data: bytes, off: int, end: int) -> ErrorPayload:
    if end - off != 4:
        raise DecodeError(off, f"KINK_ERROR value is {end - off} octets, not 4")
    code = _ERROR_CODE.unpack_from(data, off)[0]
    return ErrorPayload(_ERROR_CODES.get(code, code))


_Decoder = Callable[[bytes, int, int], KinkPayload]
_DECODERS: dict[int, _Decoder] = {
    PayloadType.AP_REP: _decode_ap_rep,
    PayloadType.KRB_ERROR: _decode_krb_error,
    PayloadType.TGT_REQ: _decode_tgt_req,
    PayloadType.TGT_REP: _decode_tgt_rep,
    PayloadType.ERROR: _decode_error,
}


def decode_chain(
    data: bytes, first: int, off: int, end: int, *, outer: bool
) -> tuple[tuple[KinkPayload, ...], bytes | None, int]:
    """Decode the payload chain starting at `off` with type `first`, within data[:end].

    Returns (payloads, ciphertext, stop): ciphertext is the content of a KINK_ENCRYPT payload
    (outer chain only, where it must be last: §4.2.7), stop the offset just past the last
    payload before its padding. In the inner chain (`outer` false) KINK_ENCRYPT is an error.
    """
    payloads: list[KinkPayload] = []
    kind = first
    stop = off
    while kind != _DONE:
        if end - off < 4:
            raise DecodeError(off, f"no room for the header of payload type {kind}")
        nxt, _, length = GENERIC.unpack_from(data, off)
        if length < 4:
            raise DecodeError(off + 2, f"Payload Length {length} is less than 4")
        if length > end - off:
            raise DecodeError(off + 2, f"Payload Length {length} exceeds the {end - off} left")
        stop = off + length
        if kind == _ENCRYPT:
            if not outer:
                raise DecodeError(off, "KINK_ENCRYPT inside KINK_ENCRYPT")
            if nxt != _DONE:
                raise DecodeError(off, "KINK_ENCRYPT is not the last payload (RFC 4430 §4.2.7)")
            return tuple(payloads), data[off + 4 : stop], stop
        if kind == _ISAKMP:
            # KINK_ISAKMP (§4.2.6) read here rather than through _DECODERS: one call less in
            # every CREATE and REPLY (issue 4).
            start = off + 4
            if stop - start < 4:
                raise DecodeError(start, "KINK_ISAKMP shorter than its 4-octet header")
            qm_first, version, _ = _ISAKMP_HEAD.unpack_from(data, start)
            major, minor = version >> 4, version & 0x0F
            if major != QM_MAJOR_VERSION or minor != QM_MINOR_VERSION:
                # §4.2.6: only 1.0 is defined; the payloads of another version cannot be read.
                raise DecodeError(
                    start + 1,
                    f"Quick Mode version {major}.{minor} is not supported",
                    kink_error=KinkErrorCode.BADQMVERS,
                )
            payloads.append(Isakmp(decode_qm(data, qm_first, start + 4, stop), major, minor))
        elif kind == _AP_REQ:
            # KINK_AP_REQ (§4.2.1) read here too: every command has one, and a flood of forged
            # ones is decoded up to the ticket check (issue 9).
            start = off + 4
            if stop - start < 4:
                raise DecodeError(start, "KINK_AP_REQ shorter than its EPOCH")
            payloads.append(ApReq(_EPOCH.unpack_from(data, start)[0], data[start + 4 : stop]))
        else:
            decoder = _DECODERS.get(kind)
            if decoder is None:
                payloads.append(RawPayload(kind, data[off + 4 : stop]))
            else:
                payloads.append(decoder(data, off + 4, stop))
        off = (stop + 3) & ~3
        kind = nxt
    return tuple(payloads), None, stop


# ---------------------------------------------------------------------------------- encoding


def _encode_ap_req(payload: ApReq) -> bytes:
    return _EPOCH.pack(payload.epoch) + payload.ap_req


def _encode_ap_rep(payload: ApRep) -> bytes:
    return _EPOCH.pack(payload.epoch) + payload.ap_rep


def _encode_krb_error(payload: KrbError) -> bytes:
    return payload.krb_error


def _encode_tgt_req(payload: TgtReq) -> bytes:
    try:
        parse_principal_name(payload.principal)
    except ValueError as exc:
        raise EncodeError(f"KINK_TGT_REQ PrincName: {exc}") from None
    return payload.principal.encode("utf-8")


def _encode_tgt_rep(payload: TgtRep) -> bytes:
    return payload.tgt


def _encode_error(payload: ErrorPayload) -> bytes:
    return _ERROR_CODE.pack(payload.code)


def _encode_raw(payload: RawPayload) -> bytes:
    kind = payload.payload_type
    if kind in _DECODERS or kind in (_DONE, _ENCRYPT, _ISAKMP, _AP_REQ):
        raise EncodeError(f"RawPayload cannot stand for payload type {kind}")
    return payload.data


_ENCODERS: dict[type, Callable[..., bytes]] = {
    ApReq: _encode_ap_req,
    ApRep: _encode_ap_rep,
    KrbError: _encode_krb_error,
    TgtReq: _encode_tgt_req,
    TgtRep: _encode_tgt_rep,
    ErrorPayload: _encode_error,
    RawPayload: _encode_raw,
}


def encode_chain(payloads: Sequence[KinkPayload], last_next: int, parts: list[bytes]) -> int:
    """Append the octets of a payload chain to `parts`, each payload padded to 4 octets except
    the last (§4.1: what follows decides whether it needs padding); the last payload's Next
    Payload is `last_next`. Returns the number of octets appended. Raises struct.error for a
    field out of range (the caller turns it into EncodeError)."""
    total = 0
    last = len(payloads) - 1
    for i, payload in enumerate(payloads):
        if total & 3:
            parts.append(PADDING[total & 3])
            total = (total + 3) & ~3
        if type(payload) is Isakmp:
            # KINK_ISAKMP (§4.2.6) written here rather than through _ENCODERS: one call less
            # in every CREATE and REPLY (issue 4).
            major, minor = payload.qm_major, payload.qm_minor
            if not (0 <= major <= 15 and 0 <= minor <= 15):
                raise EncodeError("Quick Mode version numbers are 4 bits each")
            qm = payload.payloads
            head = _ISAKMP_HEAD.pack(qm[0].payload_type if qm else 0, major << 4 | minor, 0)
            value = head + encode_qm(qm)
        else:
            value = _ENCODERS[type(payload)](payload)
        nxt = last_next if i == last else payloads[i + 1].payload_type
        parts.append(GENERIC.pack(nxt, 0, 4 + len(value)))
        parts.append(value)
        total += 4 + len(value)
    return total
