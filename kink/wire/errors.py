"""The errors of the wire layer.

Decoding raises exactly one kind of exception, DecodeError (ProtocolError is a subclass). It
carries what a responder needs to answer (RFC 4430 §3.5): the KINK_ERROR code (§4.2.8), and for
faults inside a KINK_ISAKMP payload the ISAKMP Notify type to report instead (§5.5). Encoding a
message that cannot be represented raises EncodeError, a programming error of the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kink.wire.constants import KinkErrorCode

if TYPE_CHECKING:
    from kink.wire.header import Header


class DecodeError(Exception):
    """Bytes that are not a valid KINK message (or part of one).

    offset: position of the fault in the decoded buffer (the datagram for decode(), the
        plaintext for decode_inner()); -1 when the fault is not at one place (ProtocolError).
    kink_error: the KINK_ERROR code that answers it: PROTOERR unless the message is well formed
        but uses a major version (INVMAJ), DOI (INVDOI) or Quick Mode version (BADQMVERS) that
        this implementation does not support.
    notify: when not None, the fault is inside a KINK_ISAKMP payload and RFC 4430 §5.5 says to
        answer with this ISAKMP Notify type (PAYLOAD-MALFORMED or INVALID-PAYLOAD-TYPE) in an
        authenticated REPLY; notify_data is the Notification Data to send with it.
    header: the message header, set by decode() whenever the 16 header octets could be read,
        so that a reply can echo the XID.
    """

    # Slots: every datagram of a garbage flood builds one (issue 9), and setting six attributes
    # in a per-instance dict was a good part of its cost. BaseException still gives each
    # instance a dict for anything else set on it. No super().__init__: BaseException.__new__
    # has already set args to the positional arguments, all it would do (a third of the
    # cost of building one, issue 9).
    __slots__ = ("header", "kink_error", "notify", "notify_data", "offset", "reason")

    def __init__(
        self,
        offset: int,
        reason: str,
        *,
        kink_error: int = KinkErrorCode.PROTOERR,
        notify: int | None = None,
        notify_data: bytes = b"",
    ) -> None:
        self.offset = offset
        self.reason = reason
        self.kink_error = kink_error
        self.notify = notify
        self.notify_data = notify_data
        self.header: Header | None = None

    def __str__(self) -> str:
        return f"offset {self.offset}: {self.reason}"


class ProtocolError(DecodeError):
    """A well-formed message that breaks a rule about which payloads it may carry (RFC 4430
    §4, §4.2.7, §5, §6); raised by check_message(). Not tied to one offset (offset is -1)."""

    __slots__ = ()

    def __init__(
        self,
        reason: str,
        *,
        kink_error: int = KinkErrorCode.PROTOERR,
        notify: int | None = None,
        notify_data: bytes = b"",
    ) -> None:
        super().__init__(-1, reason, kink_error=kink_error, notify=notify, notify_data=notify_data)

    def __str__(self) -> str:
        return self.reason


class EncodeError(ValueError):
    """A message or payload that cannot be put on the wire (a field out of range, a payload
    longer than 65535 octets, KINK_ENCRYPT content without a sealer, ...)."""
