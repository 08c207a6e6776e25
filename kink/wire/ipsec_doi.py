"""Numbers of the IPsec DOI that KINK carries in its ISAKMP payloads.

One table for the wire layer (which parses them) and the crypto layer (which derives keys for
them). Sources: RFC 2407 §4.4-4.6, RFC 2409 App. A and §6, RFC 3526, RFC 3602 (ESP_AES),
RFC 4106 §8 (ESP AES-GCM), RFC 4868 §4 (HMAC-SHA2 authentication algorithms).
"""

from enum import IntEnum

IPSEC_DOI = 1  # RFC 2407 §4.2; the only DOI KINK defines (RFC 4430 §4)
SIT_IDENTITY_ONLY = 1  # RFC 2407 §4.2; KINK's SA payload situation (RFC 4430 §5.1)
SIT_SECRECY = 2  # RFC 2407 §4.2; adds labelled-domain fields to the SA payload (§4.6.1)
SIT_INTEGRITY = 4  # RFC 2407 §4.2; likewise


class ProtocolId(IntEnum):
    """RFC 2407 §4.4.1."""

    ISAKMP = 1
    AH = 2
    ESP = 3
    IPCOMP = 4


class AhTransform(IntEnum):
    """RFC 2407 §4.4.3; SHA2 values from RFC 4868 §4."""

    MD5 = 2
    SHA = 3
    DES = 4
    SHA2_256 = 5
    SHA2_384 = 6
    SHA2_512 = 7


class EspTransform(IntEnum):
    """RFC 2407 §4.4.4; AES from RFC 3602 §5, AES-GCM from RFC 4106 §8.3."""

    DES_IV64 = 1
    DES = 2
    TRIPLE_DES = 3
    NULL = 11
    AES_CBC = 12
    AES_GCM_8 = 18
    AES_GCM_12 = 19
    AES_GCM_16 = 20


class IpcompTransform(IntEnum):
    """RFC 2407 §4.4.5."""

    OUI = 1
    DEFLATE = 2
    LZS = 3


# SPI sizes of a Proposal or Delete payload per protocol: AH and ESP have 32-bit SPIs (RFC 4302
# §2.4, RFC 4303 §2.1); IPComp sends its 16-bit CPI (RFC 3173) in 2 octets, or in the low half
# of 4 octets.
SPI_SIZES: dict[int, frozenset[int]] = {
    ProtocolId.AH: frozenset({4}),
    ProtocolId.ESP: frozenset({4}),
    ProtocolId.IPCOMP: frozenset({2, 4}),
}


class AttributeType(IntEnum):
    """SA attribute classes, RFC 2407 §4.5. Basic (TV) unless noted."""

    SA_LIFE_TYPE = 1
    SA_LIFE_DURATION = 2  # variable (TLV); may be sent as TV when it fits two octets
    GROUP_DESCRIPTION = 3
    ENCAPSULATION_MODE = 4
    AUTHENTICATION_ALGORITHM = 5
    KEY_LENGTH = 6
    KEY_ROUNDS = 7
    COMPRESS_DICTIONARY_SIZE = 8
    COMPRESS_PRIVATE_ALGORITHM = 9  # variable


# RFC 2407 §4.5: these classes are Basic and "MUST NOT be encoded as variable".
BASIC_ATTRIBUTES = frozenset(
    {
        AttributeType.SA_LIFE_TYPE,
        AttributeType.GROUP_DESCRIPTION,
        AttributeType.ENCAPSULATION_MODE,
        AttributeType.AUTHENTICATION_ALGORITHM,
        AttributeType.KEY_LENGTH,
        AttributeType.KEY_ROUNDS,
        AttributeType.COMPRESS_DICTIONARY_SIZE,
    }
)


class LifeType(IntEnum):
    """RFC 2407 §4.5, SA Life Type. The default lifetime is 28800 seconds."""

    SECONDS = 1
    KILOBYTES = 2


DEFAULT_LIFETIME_SECONDS = 28800  # RFC 2407 §4.5


class EncapsulationMode(IntEnum):
    """RFC 2407 §4.5."""

    TUNNEL = 1
    TRANSPORT = 2


class AuthAlgorithm(IntEnum):
    """RFC 2407 §4.5; HMAC-SHA2 values from RFC 4868 §4 (truncated to half the hash)."""

    HMAC_MD5 = 1
    HMAC_SHA1 = 2
    DES_MAC = 3
    KPDK = 4
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7


class GroupDescription(IntEnum):
    """Oakley MODP groups: RFC 2409 §6 (1, 2) and RFC 3526 (5, 14-18)."""

    MODP_768 = 1
    MODP_1024 = 2
    MODP_1536 = 5
    MODP_2048 = 14
    MODP_3072 = 15
    MODP_4096 = 16
    MODP_6144 = 17
    MODP_8192 = 18


class IdType(IntEnum):
    """RFC 2407 §4.6.2.1; RFC 4430 §5.3 allows the address types only."""

    IPV4_ADDR = 1
    FQDN = 2
    USER_FQDN = 3
    IPV4_ADDR_SUBNET = 4
    IPV6_ADDR = 5
    IPV6_ADDR_SUBNET = 6
    IPV4_ADDR_RANGE = 7
    IPV6_ADDR_RANGE = 8
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11


# Identification Data length of each ID type KINK allows (RFC 4430 §5.3; RFC 2407 §4.6.2.2-9:
# one address, or two of them: address and mask, or first and last address).
ID_DATA_LENGTHS: dict[int, int] = {
    IdType.IPV4_ADDR: 4,
    IdType.IPV4_ADDR_SUBNET: 8,
    IdType.IPV6_ADDR: 16,
    IdType.IPV6_ADDR_SUBNET: 32,
    IdType.IPV4_ADDR_RANGE: 8,
    IdType.IPV6_ADDR_RANGE: 32,
}


class NotifyType(IntEnum):
    """Notify message types: errors from RFC 2408 §3.14.1, status from RFC 2407 §4.6.3."""

    INVALID_PAYLOAD_TYPE = 1
    DOI_NOT_SUPPORTED = 2
    SITUATION_NOT_SUPPORTED = 3
    INVALID_COOKIE = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_MINOR_VERSION = 6
    INVALID_EXCHANGE_TYPE = 7
    INVALID_FLAGS = 8
    INVALID_MESSAGE_ID = 9
    INVALID_PROTOCOL_ID = 10
    INVALID_SPI = 11
    INVALID_TRANSFORM_ID = 12
    ATTRIBUTES_NOT_SUPPORTED = 13
    NO_PROPOSAL_CHOSEN = 14
    BAD_PROPOSAL_SYNTAX = 15
    PAYLOAD_MALFORMED = 16
    INVALID_KEY_INFORMATION = 17
    INVALID_ID_INFORMATION = 18
    INVALID_CERT_ENCODING = 19
    INVALID_CERTIFICATE = 20
    CERT_TYPE_UNSUPPORTED = 21
    INVALID_CERT_AUTHORITY = 22
    INVALID_HASH_INFORMATION = 23
    AUTHENTICATION_FAILED = 24
    INVALID_SIGNATURE = 25
    ADDRESS_NOTIFICATION = 26
    NOTIFY_SA_LIFETIME = 27
    CERTIFICATE_UNAVAILABLE = 28
    UNSUPPORTED_EXCHANGE_TYPE = 29
    UNEQUAL_PAYLOAD_LENGTHS = 30
    RESPONDER_LIFETIME = 24576
    REPLAY_STATUS = 24577
    INITIAL_CONTACT = 24578
