"""The KINK wire format (RFC 4430 §4-§6): bytes <-> messages, sans-IO and without crypto.

decode / decode_inner / check_message take received octets apart (DecodeError is the only
exception they raise); encode / encode_inner build them, with the crypto layer plugged in
through a Sealer. See kink.wire.message for the order in which a receiver uses them.
"""

from kink.wire.constants import (
    KINK_PORT,
    IsakmpPayloadType,
    KinkErrorCode,
    MessageType,
    PayloadType,
)
from kink.wire.errors import DecodeError, EncodeError, ProtocolError
from kink.wire.header import Header
from kink.wire.isakmp import (
    Attribute,
    DeletePayload,
    IdPayload,
    IsakmpPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    RawIsakmpPayload,
    SaPayload,
    Transform,
    decode_qm,
    encode_qm,
    lifetimes,
)
from kink.wire.message import (
    Message,
    Sealer,
    cksum_input,
    decode,
    decode_inner,
    encode,
    encode_inner,
    peek_ap_req,
)
from kink.wire.payloads import (
    ApRep,
    ApReq,
    ErrorPayload,
    Isakmp,
    KinkPayload,
    KrbError,
    RawPayload,
    TgtRep,
    TgtReq,
)
from kink.wire.principal import format_principal_name, parse_principal_name
from kink.wire.rules import check_message

__all__ = [
    "KINK_PORT",
    "ApRep",
    "ApReq",
    "Attribute",
    "DecodeError",
    "DeletePayload",
    "EncodeError",
    "ErrorPayload",
    "Header",
    "IdPayload",
    "Isakmp",
    "IsakmpPayload",
    "IsakmpPayloadType",
    "KePayload",
    "KinkErrorCode",
    "KinkPayload",
    "KrbError",
    "Message",
    "MessageType",
    "NoncePayload",
    "NotifyPayload",
    "PayloadType",
    "Proposal",
    "ProtocolError",
    "RawIsakmpPayload",
    "RawPayload",
    "SaPayload",
    "Sealer",
    "TgtRep",
    "TgtReq",
    "Transform",
    "check_message",
    "cksum_input",
    "decode",
    "decode_inner",
    "decode_qm",
    "encode",
    "encode_inner",
    "encode_qm",
    "format_principal_name",
    "lifetimes",
    "parse_principal_name",
    "peek_ap_req",
]
