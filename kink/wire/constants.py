"""Numbers of the KINK wire format (RFC 4430 §4, §4.2, §4.2.8) and the ISAKMP payload types it
carries (RFC 2408 §3.1).

Decoded messages keep unknown values as plain ints (they must round-trip); known values come
back as members of these IntEnums, which compare equal to the ints.
"""

from enum import IntEnum

KINK_PORT = 910  # RFC 4430 §9 (some tables wrongly say 892)
KINK_MAJOR_VERSION = 1  # RFC 4430 §4: MjVer MUST be 1
QM_MAJOR_VERSION = 1  # RFC 4430 §4.2.6: the Quick Mode version KINK defines is 1.0
QM_MINOR_VERSION = 0
HEADER_LENGTH = 16  # RFC 4430 §4, Figure 5
ACKREQ_FLAG = 0x80  # RFC 4430 §4: the A bit, top bit of the octet after NextPayload


class MessageType(IntEnum):
    """RFC 4430 §4, the header's Type field."""

    CREATE = 1
    DELETE = 2
    REPLY = 3
    GETTGT = 4
    ACK = 5
    STATUS = 6


class PayloadType(IntEnum):
    """RFC 4430 §4.2, the Next Payload values of KINK payloads."""

    DONE = 0
    AP_REQ = 1
    AP_REP = 2
    KRB_ERROR = 3
    TGT_REQ = 4
    TGT_REP = 5
    ISAKMP = 6
    ENCRYPT = 7
    ERROR = 8


class KinkErrorCode(IntEnum):
    """RFC 4430 §4.2.8, the ErrorCode of a KINK_ERROR payload (4 is RESERVED)."""

    OK = 0
    PROTOERR = 1
    INVDOI = 2
    INVMAJ = 3
    INTERR = 5
    BADQMVERS = 6
    U2UDENIED = 7


class IsakmpPayloadType(IntEnum):
    """RFC 2408 §3.1, Next Payload values of the ISAKMP payloads inside KINK_ISAKMP."""

    NONE = 0
    SA = 1
    P = 2
    T = 3
    KE = 4
    ID = 5
    CERT = 6
    CR = 7
    HASH = 8
    SIG = 9
    NONCE = 10
    N = 11
    D = 12
    VID = 13
