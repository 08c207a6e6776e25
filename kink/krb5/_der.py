"""DER reading of the two Kerberos structures libkrb5 has no public decoder for (RFC 4120 §5.5.1).

- The AP-REQ envelope (ap-options, Ticket, encrypted authenticator): the responder needs the
  Ticket to decrypt it without time checks for an authenticated KRB_AP_ERR_SKEW (RFC 4430
  §3.5), and the use-session-key option to pick the user-to-user key (RFC 4120 §3.7).
- The decrypted Authenticator: libkrb5 cannot tell an initiator the ctime/cusec of its own
  authenticator (krb5_auth_con_getauthenticator crashes on an initiator's auth context in MIT
  1.20, the client field having been cleared), and captured AP-REQs are decoded offline.

Only the fields KINK reads are extracted; anything malformed raises Krb5Error with an ASN.1
code, never IndexError or ValueError.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from kink.krb5._krb5 import lib as _c
from kink.krb5.errors import ASN1_BAD_FORMAT, ASN1_BAD_ID, ASN1_OVERRUN, Krb5Error

_TAG_INTEGER = 0x02
_TAG_BIT_STRING = 0x03
_TAG_OCTET_STRING = 0x04
_TAG_SEQUENCE = 0x30
_TAG_GENERALIZED_TIME = 0x18
_TAG_TICKET = 0x61  # [APPLICATION 1]
_TAG_AUTHENTICATOR = 0x62  # [APPLICATION 2]
_TAG_AP_REQ = 0x6E  # [APPLICATION 14]
_CONTEXT_CONSTRUCTED = 0xA0
_PVNO = 5
_MSG_TYPE_AP_REQ = 14


@dataclass(frozen=True)
class ApReqParts:
    ap_options: int  # the 32 APOptions bits as an integer (AP_OPTS_* of krb5.h)
    ticket: bytes  # the DER Ticket, as krb5_decode_ticket takes it
    authenticator_enctype: int
    authenticator_kvno: int | None
    authenticator_cipher: bytes


@dataclass(frozen=True)
class AuthenticatorParts:
    ctime: int
    cusec: int
    subkey_enctype: int | None  # KINK ignores subkeys (RFC 4430 §7); reported for decoding
    seq_number: int | None


def _error(what: str, code: int = ASN1_BAD_FORMAT) -> Krb5Error:
    return Krb5Error(code, f"malformed {what}")


def _tlv(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int, int]:
    """The TLV at pos: (tag, start of contents, end of contents)."""
    if pos + 2 > end:
        raise _error(what, ASN1_OVERRUN)
    tag = buf[pos]
    if tag & 0x1F == 0x1F:  # high tag numbers never occur in these messages
        raise _error(what, ASN1_BAD_ID)
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > end:  # indefinite or absurd lengths are not DER
            raise _error(what)
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise _error(what, ASN1_OVERRUN)
    return tag, pos, pos + length


def _expect(buf: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    found, start, stop = _tlv(buf, pos, end, what)
    if found != tag:
        raise _error(what, ASN1_BAD_ID)
    return start, stop


def _fields(buf: bytes, start: int, end: int, what: str) -> dict[int, tuple[int, int]]:
    """A SEQUENCE body of [n] EXPLICIT fields: n -> (start, end) of the tagged value."""
    fields: dict[int, tuple[int, int]] = {}
    pos = start
    while pos < end:
        tag, s, e = _tlv(buf, pos, end, what)
        if tag & 0xE0 != _CONTEXT_CONSTRUCTED:
            raise _error(what, ASN1_BAD_ID)
        fields[tag & 0x1F] = (s, e)
        pos = e
    return fields


def _field(fields: dict[int, tuple[int, int]], n: int, what: str) -> tuple[int, int]:
    try:
        return fields[n]
    except KeyError:
        raise _error(what) from None


def _integer(buf: bytes, span: tuple[int, int], what: str) -> int:
    start, stop = _expect(buf, span[0], span[1], _TAG_INTEGER, what)
    if start == stop or stop - start > 8:
        raise _error(what)
    return int.from_bytes(buf[start:stop], "big", signed=True)


def _kerberos_time(buf: bytes, span: tuple[int, int], what: str) -> int:
    """KerberosTime: GeneralizedTime "YYYYMMDDHHMMSSZ" (RFC 4120 §5.2.3) as POSIX seconds."""
    start, stop = _expect(buf, span[0], span[1], _TAG_GENERALIZED_TIME, what)
    t = buf[start:stop]
    if len(t) != 15 or t[14:] != b"Z" or not t[:14].isdigit():
        raise _error(what)
    try:
        when = datetime(
            int(t[0:4]),
            int(t[4:6]),
            int(t[6:8]),
            int(t[8:10]),
            int(t[10:12]),
            int(t[12:14]),
            tzinfo=UTC,
        )
    except ValueError:  # month 13, second 61, ...
        raise _error(what) from None
    return int(when.timestamp())


def _sequence_fields(buf: bytes, span: tuple[int, int], what: str) -> dict[int, tuple[int, int]]:
    start, stop = _expect(buf, span[0], span[1], _TAG_SEQUENCE, what)
    return _fields(buf, start, stop, what)


def _ap_options(data: bytes, pos: int, stop: int, what: str) -> tuple[int, int]:
    """pvno [0], msg-type [1] and ap-options [2], the first fields of an AP-REQ's SEQUENCE body
    at data[pos:stop]: (the 32 APOptions bits, the position after ap-options)."""
    for n, expected in ((0, _PVNO), (1, _MSG_TYPE_AP_REQ)):
        tag, s, e = _tlv(data, pos, stop, what)
        if tag != _CONTEXT_CONSTRUCTED | n or _integer(data, (s, e), what) != expected:
            raise _error(what)
        pos = e
    tag, s, e = _tlv(data, pos, stop, what)
    if tag != _CONTEXT_CONSTRUCTED | 2:
        raise _error(what, ASN1_BAD_ID)
    bits_start, bits_stop = _expect(data, s, e, _TAG_BIT_STRING, what)
    # First octet: unused-bit count; the flags follow, bit 0 first (RFC 4120 §5.2.8).
    if bits_stop - bits_start < 1:
        raise _error(what)
    return int.from_bytes(data[bits_start + 1 : bits_stop][:4].ljust(4, b"\0"), "big"), e


def _ap_req_body(data: bytes, what: str) -> tuple[int, int]:
    start, stop = _expect(data, 0, len(data), _TAG_AP_REQ, what)
    return _expect(data, start, stop, _TAG_SEQUENCE, what)


# pvno [0] INTEGER 5, msg-type [1] INTEGER 14, ap-options [2] BIT STRING of 32 bits with no
# unused bits: the DER every AP-REQ starts its SEQUENCE with (RFC 4120 §5.5.1).
_AP_REQ_HEAD = bytes.fromhex("a003020105a10302010ea207030500")
_AP_REQ_HEAD_END = len(_AP_REQ_HEAD) + 4


def ap_options(data: bytes) -> int:
    """Only the ap-options of an AP-REQ: the responder reads use-session-key on every request
    (RFC 4120 §3.7), so this stops before the ticket instead of parsing all of it."""
    # The usual encoding at once: [APPLICATION 14] and its SEQUENCE with two-octet lengths
    # (an AP-REQ of 256 to 65535 octets, as a ticket with a PAC makes it), both lengths
    # checked as _expect checks them, then the usual head. Anything else: field by field.
    if (
        len(data) >= 8 + _AP_REQ_HEAD_END
        and data[0] == _TAG_AP_REQ
        and data[1] == 0x82
        and data[4] == _TAG_SEQUENCE
        and data[5] == 0x82
    ):
        outer_end = 4 + (data[2] << 8 | data[3])
        stop = 8 + (data[6] << 8 | data[7])
        if (
            outer_end <= len(data)
            and stop - 8 >= _AP_REQ_HEAD_END
            and stop <= outer_end
            and data.startswith(_AP_REQ_HEAD, 8)
        ):
            return int.from_bytes(data[8 + len(_AP_REQ_HEAD) : 8 + _AP_REQ_HEAD_END], "big")
    start, stop = _ap_req_body(data, "AP-REQ")
    if stop - start >= _AP_REQ_HEAD_END and data.startswith(_AP_REQ_HEAD, start):
        # The usual encoding, which _ap_options would read to the same value field by field.
        return int.from_bytes(data[start + len(_AP_REQ_HEAD) : start + _AP_REQ_HEAD_END], "big")
    return _ap_options(data, start, stop, "AP-REQ")[0]


def parse_ap_req(data: bytes) -> ApReqParts:
    """AP-REQ ::= [APPLICATION 14] SEQUENCE {pvno, msg-type, ap-options, ticket, authenticator}."""
    what = "AP-REQ"
    start, stop = _ap_req_body(data, what)
    options, pos = _ap_options(data, start, stop, what)
    req = _fields(data, pos, stop, what)
    s, e = _field(req, 3, what)
    _expect(data, s, e, _TAG_TICKET, what)
    ticket = data[s:e]
    enc = _sequence_fields(data, _field(req, 4, what), what)
    etype = _integer(data, _field(enc, 0, what), what)
    kvno = _integer(data, enc[1], what) if 1 in enc else None
    s, e = _field(enc, 2, what)
    cipher_start, cipher_stop = _expect(data, s, e, _TAG_OCTET_STRING, what)
    return ApReqParts(options, ticket, etype, kvno, data[cipher_start:cipher_stop])


def authenticator_cipher(data: bytes) -> bytes:
    """Only the cipher octets of an AP-REQ's authenticator (EncryptedData [4], cipher [2]): what
    the replay cache identifies an authenticator by (RFC 4120 §3.2.3). Fields must come in
    DER order, ticket [3] then authenticator [4], as libkrb5's decoder requires."""
    usual = usual_head(data)
    return _authenticator_cipher_by_fields(data) if usual is None else usual[1]


def _authenticator_cipher_by_fields(data: bytes) -> bytes:
    what = "AP-REQ"
    start, stop = _ap_req_body(data, what)
    if stop - start >= _AP_REQ_HEAD_END and data.startswith(_AP_REQ_HEAD, start):
        pos = start + _AP_REQ_HEAD_END
    else:
        pos = _ap_options(data, start, stop, what)[1]
    tag, _, pos = _tlv(data, pos, stop, what)
    if tag != _CONTEXT_CONSTRUCTED | 3:
        raise _error(what, ASN1_BAD_ID)
    tag, s, e = _tlv(data, pos, stop, what)
    if tag != _CONTEXT_CONSTRUCTED | 4 or e != stop:
        raise _error(what, ASN1_BAD_ID)
    enc = _sequence_fields(data, (s, e), what)
    s, e = _field(enc, 2, what)
    cipher_start, cipher_stop = _expect(data, s, e, _TAG_OCTET_STRING, what)
    return data[cipher_start:cipher_stop]


_usual_head = _c.kink_usual_head  # bound once: each `_c.name` is a lookup in the cffi library
_AP_OPTIONS_AT = 8 + len(_AP_REQ_HEAD)  # the 32 flag bits in the usual encoding
_END_BITS = 17  # kink_usual_head's result: start << 17 | end
_END_MASK = (1 << _END_BITS) - 1


def usual_head(data: bytes) -> tuple[int, bytes] | None:
    """(ap_options, authenticator_cipher) of an AP-REQ in the usual encoding, read at once, or
    None to read each field by field: the responder needs both of every request (the replay
    tag, then use-session-key, RFC 4120 §3.7), a forged one included (issue 9).

    Usual: the outer and SEQUENCE lengths in two octets and the usual head (as ap_options
    reads them), the ticket [3] with a two-octet length, then authenticator [4] ending the
    SEQUENCE, holding EncryptedData {etype [0] of one octet, no kvno [1], cipher [2]} whose
    every element ends exactly where its container does, each of those lengths in at most two
    octets: the field by field readings (ap_options, _authenticator_cipher_by_fields) find the
    same options and cipher octets, and accept everything this accepts. (This needs data[28]
    and a SEQUENCE reaching past the ticket, so ap_options' own usual-form test holds too and it
    reads the same four octets.) The test runs in C (kink_usual_head, kink/krb5/_build.py):
    ~20 k instructions in Python, for every AP-REQ.
    """
    found = _usual_head(data, len(data))
    if found < 0:
        return None
    options = int.from_bytes(data[_AP_OPTIONS_AT : _AP_OPTIONS_AT + 4], "big")
    return options, data[found >> _END_BITS : found & _END_MASK]


def parse_authenticator(data: bytes) -> AuthenticatorParts:
    """Authenticator ::= [APPLICATION 2] SEQUENCE {..., cusec [4], ctime [5], subkey [6] ...}.

    Bytes after the outer element are ignored: RFC 3961 decryption may leave padding.
    """
    what = "Authenticator"
    start, stop = _expect(data, 0, len(data), _TAG_AUTHENTICATOR, what)
    auth = _sequence_fields(data, (start, stop), what)
    if _integer(data, _field(auth, 0, what), what) != _PVNO:
        raise _error(what)
    cusec = _integer(data, _field(auth, 4, what), what)
    ctime = _kerberos_time(data, _field(auth, 5, what), what)
    subkey_enctype = None
    if 6 in auth:
        subkey_enctype = _integer(
            data, _field(_sequence_fields(data, auth[6], what), 0, what), what
        )
    seq_number = _integer(data, auth[7], what) if 7 in auth else None
    return AuthenticatorParts(ctime, cusec, subkey_enctype, seq_number)
