"""KINK messages: header, outer payloads, KINK_ENCRYPT and Cksum (RFC 4430 §4, §4.1, §4.2.7).

The crypto layer drives a received message through these steps:
    msg = decode(datagram)                     # structure only; DecodeError otherwise
    verify_mic(msg.signed, msg.cksum)          # §4 "To verify the checksum" (= cksum_input)
    plaintext = decrypt(msg.ciphertext)        # key usage 39, RFC 4430 §8
    msg = dataclasses.replace(msg, encrypted=decode_inner(plaintext))
    check_message(msg)                         # kink.wire.rules: the §6 payload rules
and a message to send goes through encode(msg, sealer), which encrypts msg.encrypted and appends
the Cksum through the Sealer.

decode() reports an unsupported major version (KINK_INVMAJ) or DOI (KINK_INVDOI), and decode()
or decode_inner() a KINK_ISAKMP payload of an unsupported Quick Mode version (KINK_BADQMVERS),
as a DecodeError whose kink_error names that code (decode() also attaches the received header,
for the XID of a reply): such content cannot be interpreted further, since the payload formats
belong to the version and the DOI (RFC 4430 §4, §4.2.6, §4.2.8). Any other structural fault
is kink_error=KINK_PROTOERR, with notify=PAYLOAD-MALFORMED when it lies inside KINK_ISAKMP.
"""

import struct
from dataclasses import dataclass, field
from typing import Protocol

from kink.wire.constants import (
    ACKREQ_FLAG,
    HEADER_LENGTH,
    KINK_MAJOR_VERSION,
    QM_MAJOR_VERSION,
    QM_MINOR_VERSION,
    KinkErrorCode,
    MessageType,
    PayloadType,
)
from kink.wire.errors import DecodeError, EncodeError
from kink.wire.header import HEADER, Header
from kink.wire.ipsec_doi import IPSEC_DOI
from kink.wire.payloads import GENERIC, PADDING, KinkPayload, decode_chain, encode_chain

_AP_REQ = int(PayloadType.AP_REQ)
_ISAKMP = int(PayloadType.ISAKMP)
_QM_VERSION = QM_MAJOR_VERSION << 4 | QM_MINOR_VERSION  # the octet of KINK_ISAKMP (§4.2.6)

_INNER_HEAD = struct.Struct(">B3x")  # InnerNextPload, RESERVED2 (§4.2.7, erratum 93)
_MESSAGE_TYPES = {int(t): t for t in MessageType}
_DONE = int(PayloadType.DONE)  # plain ints: an enum attribute lookup costs, every message
_ENCRYPT = int(PayloadType.ENCRYPT)


# Not frozen: every message sent or received builds one or two, and a frozen dataclass pays
# object.__setattr__ for every field (issue 4). Nothing caches or shares a Message, and no
# code changes one after building it (dataclasses.replace makes a new one).
@dataclass(slots=True)
class Message:
    """One KINK message.

    payloads: the cleartext outer payloads in order (never KINK_ENCRYPT itself).
    encrypted: the payloads inside KINK_ENCRYPT when known (after decryption, or to be
        encrypted by encode); None when there is no KINK_ENCRYPT or it is still ciphertext.
    ciphertext: the KINK_ENCRYPT content as received (encrypted=None until decrypted).
    cksum: the received Cksum (b"" = unauthenticated); encode() ignores it and asks the Sealer.
    signed (a property): with a received Cksum, the octets it covers (what cksum_input returns
        first); b"" otherwise. Not part of the message's value.
    type is a MessageType when known, else the received int.
    """

    type: int
    xid: int
    payloads: tuple[KinkPayload, ...]
    encrypted: tuple[KinkPayload, ...] | None = None
    ciphertext: bytes | None = None
    ackreq: bool = False
    doi: int = IPSEC_DOI
    mjver: int = KINK_MAJOR_VERSION
    cksum: bytes = b""
    # What `signed` returns, or None when decode() left it to be made, when first read, from
    # the datagram and the fields decode() unpacked from its header: a command refused before
    # its Cksum is checked (every forged AP-REQ, issue 9) never needs it. The crypto layer
    # passes it along as it is when it rebuilds a decoded message. (Made when read, it costs
    # an authenticated message ~1.9 k instructions more than made in decode(): the forged
    # CREATE saves ~3.1 k.)
    _signed: bytes | None = field(default=b"", repr=False, compare=False)
    _datagram: bytes = field(default=b"", repr=False, compare=False)
    _header: tuple[int, ...] = field(default=(), repr=False, compare=False)

    @property
    def signed(self) -> bytes:
        """The octets the received Cksum covers (RFC 4430 §4, as cksum_input builds them), b""
        without a Cksum."""
        signed = self._signed
        if signed is None:
            # decode() checked the header's lengths already: only the pack and the copy left.
            mtype, version, length, doi, xid, first, flags, cksum_len = self._header
            end = length - cksum_len
            signed = _signed(self._datagram, mtype, version, end, doi, xid, first, flags)
            # Not both held: a command stays in the reply cache for seconds (RFC 4430 §9).
            self._signed, self._datagram = signed, b""
        return signed


class Sealer(Protocol):
    """What encode() needs from the crypto layer (the ticket session key, RFC 4430 §8)."""

    def checksum_length(self) -> int:
        """The length of checksum()'s output (becomes CksumLen)."""
        ...

    def checksum(self, data: bytes) -> bytes:
        """Kerberos get_mic over data with key usage 40 (RFC 4430 §4, §8)."""
        ...

    def encrypt(self, plaintext: bytes) -> bytes:
        """Kerberos encrypt with key usage 39 (RFC 4430 §4.2.7, §8)."""
        ...


def decode(data: bytes) -> Message:
    """Parse a received datagram. Octets after Length are ignored (RFC 4430 §4 allows them).
    Raises DecodeError (see the module docstring for the kink_error it carries)."""
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) < HEADER_LENGTH:
        raise DecodeError(0, f"{len(data)} octets, less than the 16-octet KINK header")
    fields = HEADER.unpack_from(data)
    mtype, version, length, doi, xid, first, flags, cksum_len = fields
    fault = _length_fault(data, version, length, cksum_len)
    if fault is None and doi != IPSEC_DOI:
        fault = DecodeError(4, f"DOI {doi} is not supported", kink_error=KinkErrorCode.INVDOI)
    if fault is not None:
        # Raised once with its header, not raised in the try below to be caught and raised
        # again with it (issue 9: a flood of datagrams with a broken header).
        fault.header = tuple.__new__(Header, fields)
        raise fault
    end = length - cksum_len
    # One frame for the whole message (issue 4): a try block costs nothing until it raises.
    try:
        payloads, ciphertext, stop = decode_chain(data, first, HEADER_LENGTH, end, outer=True)
        # Only the padding to a 4-octet boundary may sit between the last payload and the
        # Cksum (§4.1); without a Cksum the sender may or may not count that padding in Length.
        if end != stop and end != (stop + 3) & ~3:
            raise DecodeError(stop, f"{end - stop} octets between the last payload and the Cksum")
    except DecodeError as exc:
        # The unpacked fields made a Header in C: Header(...) is a Python call (issue 9: every
        # datagram of a garbage flood).
        exc.header = tuple.__new__(Header, fields)
        raise
    return Message(
        _MESSAGE_TYPES.get(mtype, mtype),
        xid,
        payloads,
        None,
        ciphertext,
        bool(flags & ACKREQ_FLAG),
        doi,
        version >> 4,
        data[end:length],
        None if cksum_len else b"",  # the Cksum's coverage (§4): made when first read
        data if cksum_len else b"",  # kept only to make it
        fields,
    )


def peek_ap_req(data: bytes) -> bytes | None:
    """The KRB_AP_REQ of a datagram's first KINK_AP_REQ (RFC 4430 §4.2.1), found without
    decoding the message, so that a forged ticket can be refused before the message is decoded
    (issue 9: a flood of forged commands). None for a datagram decode() would fault in its
    header (§4, §4.1), in its outer payload chain as far as the payloads' generic headers and
    KINK_ENCRYPT's place (§4.2, §4.2.7) or in a KINK_ISAKMP's Quick Mode version (§4.2.6, whose
    fault is answered, §4.2.8), or without a KINK_AP_REQ: decode() reports those faults. What
    the payloads hold past that is not read."""
    if type(data) is not bytes or len(data) < HEADER_LENGTH:
        return None
    _, version, length, doi, _, kind, _, cksum_len = HEADER.unpack_from(data)
    if doi != IPSEC_DOI or _length_fault(data, version, length, cksum_len) is not None:
        return None
    end = length - cksum_len
    off = stop = HEADER_LENGTH
    found = None
    # decode_chain's walk, reading only the generic payload headers (§4.2, Figure 6).
    while kind != _DONE:
        if end - off < 4:
            return None
        nxt, _, payload_length = GENERIC.unpack_from(data, off)
        if payload_length < 4 or payload_length > end - off:
            return None
        stop = off + payload_length
        if kind == _ENCRYPT:
            if nxt != _DONE:
                return None
            break
        if kind == _AP_REQ:
            if payload_length < 8:  # no room for its EPOCH
                return None
            if found is None:
                found = data[off + 8 : stop]
        elif kind == _ISAKMP and (payload_length < 8 or data[off + 5] != _QM_VERSION):
            return None
        off = (stop + 3) & ~3
        kind = nxt
    if end != stop and end != (stop + 3) & ~3:
        return None
    return found


def _length_fault(data: bytes, version: int, length: int, cksum_len: int) -> DecodeError | None:
    """What is wrong with the header's version and lengths (§4, §4.1), None if nothing."""
    if version >> 4 != KINK_MAJOR_VERSION:
        return DecodeError(
            1, f"major version {version >> 4} is not 1", kink_error=KinkErrorCode.INVMAJ
        )
    if length > len(data):
        return DecodeError(2, f"Length {length} exceeds the {len(data)} octets received")
    if length < HEADER_LENGTH:
        return DecodeError(2, f"Length {length} is less than the header")
    if cksum_len > length - HEADER_LENGTH:
        return DecodeError(
            14, f"CksumLen {cksum_len} exceeds the {length - 16} octets after the header"
        )
    if cksum_len and (length - cksum_len) & 3:
        return DecodeError(14, "the Cksum does not start on a 4-octet boundary (RFC 4430 §4.1)")
    return None


def cksum_input(data: bytes) -> tuple[bytes, bytes]:
    """(octets to pass to verify_mic, the Cksum) of a received message, per RFC 4430 §4 "To
    verify the checksum": message[0:Length-CksumLen] with Length set to Length-CksumLen and
    CksumLen zeroed. An empty Cksum means the message is unauthenticated."""
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) < HEADER_LENGTH:
        raise DecodeError(0, f"{len(data)} octets, less than the 16-octet KINK header")
    mtype, version, length, doi, xid, first, flags, cksum_len = HEADER.unpack_from(data)
    fault = _length_fault(data, version, length, cksum_len)
    if fault is not None:
        raise fault
    end = length - cksum_len
    return _signed(data, mtype, version, end, doi, xid, first, flags), data[end:length]


def _signed(
    data: bytes, mtype: int, version: int, end: int, doi: int, xid: int, first: int, flags: int
) -> bytes:
    # RFC 4430 §4: message[0:end] with Length = end and CksumLen = 0. The header packed again
    # with those two fields changed: one pack and one join, where slicing it around them took
    # five pieces (every authenticated message, issue 4).
    return HEADER.pack(mtype, version, end, doi, xid, first, flags, 0) + data[HEADER_LENGTH:end]


def decode_inner(plaintext: bytes) -> tuple[KinkPayload, ...]:
    """The payloads of a decrypted KINK_ENCRYPT: InnerNextPload(1) RESERVED2(3) payloads
    (RFC 4430 §4.2.7, erratum 93). What follows the last payload is the encryption's padding
    and is ignored. DecodeError offsets are positions in plaintext."""
    if type(plaintext) is not bytes:
        plaintext = bytes(plaintext)
    if len(plaintext) < 4:
        raise DecodeError(0, "KINK_ENCRYPT plaintext shorter than InnerNextPload and RESERVED2")
    payloads, _, _ = decode_chain(plaintext, plaintext[0], 4, len(plaintext), outer=False)
    return payloads


def encode_inner(payloads: tuple[KinkPayload, ...]) -> bytes:
    """The plaintext of a KINK_ENCRYPT holding payloads (the inverse of decode_inner)."""
    parts = [b""]
    try:
        encode_chain(payloads, _DONE, parts)
    except struct.error as exc:
        raise EncodeError(f"KINK payload field out of range: {exc}") from exc
    parts[0] = _INNER_HEAD.pack(payloads[0].payload_type if payloads else _DONE)
    return b"".join(parts)


def encode(msg: Message, sealer: Sealer | None = None) -> bytes:
    """The datagram of msg.

    KINK_ENCRYPT is written last (§4.2.7) when msg.encrypted is set (its plaintext goes through
    sealer.encrypt) or else when msg.ciphertext is set (sent as it is). With a sealer the Cksum
    is appended as §4 says: padding to 4 octets, get_mic over the message whose Length excludes
    the Cksum and whose CksumLen is 0, then Length and CksumLen set to their final values.
    Without a sealer the message has no Cksum (CksumLen 0): only for unauthenticated messages.
    """
    # One frame for the whole message (issue 4); struct.error from any field out of range
    # becomes EncodeError.
    try:
        if msg.encrypted is not None:
            if sealer is None:
                raise EncodeError("KINK_ENCRYPT content needs a sealer to be encrypted")
            ciphertext: bytes | None = sealer.encrypt(encode_inner(msg.encrypted))
        else:
            ciphertext = msg.ciphertext
        parts = [b""]
        tail = _DONE if ciphertext is None else _ENCRYPT
        total = encode_chain(msg.payloads, tail, parts)
        if ciphertext is not None:
            if total & 3:
                parts.append(PADDING[total & 3])
                total = (total + 3) & ~3
            parts.append(GENERIC.pack(_DONE, 0, 4 + len(ciphertext)))
            parts.append(ciphertext)
            total += 4 + len(ciphertext)
        first = msg.payloads[0].payload_type if msg.payloads else tail
        flags = ACKREQ_FLAG if msg.ackreq else 0
        version = msg.mjver << 4
        if sealer is None:
            parts[0] = HEADER.pack(msg.type, version, 16 + total, msg.doi, msg.xid, first, flags, 0)
            return b"".join(parts)
        if total & 3:
            parts.append(PADDING[total & 3])
            total = (total + 3) & ~3
        length = HEADER_LENGTH + total
        parts[0] = HEADER.pack(msg.type, version, length, msg.doi, msg.xid, first, flags, 0)
        unsigned = b"".join(parts)
        cksum = sealer.checksum(unsigned)
        if len(cksum) != sealer.checksum_length():
            raise EncodeError(
                f"checksum of {len(cksum)} octets, expected {sealer.checksum_length()}"
            )
        cksum_len = len(cksum)
        header = HEADER.pack(
            msg.type, version, length + cksum_len, msg.doi, msg.xid, first, flags, cksum_len
        )
        return b"".join((header, unsigned[HEADER_LENGTH:], cksum))
    except struct.error as exc:
        raise EncodeError(f"KINK message field out of range: {exc}") from exc
