"""A peer's `proposals`: an ordered array of tables, each a bundle of an `esp` and/or an `ah`
table (RFC 2408 §4.2: the protocols of one proposal are ANDed, the proposals ORed in order of
preference). Names map to the IPsec DOI numbers (RFC 2407 §4.4-4.5, RFC 4106, RFC 4868), and
every transform is checked with kink.crypto.algorithms.sa_algorithms, so what the kernel could
not be keyed with is refused here rather than at negotiation time."""

from collections.abc import Callable, Mapping
from typing import TypeVar

from kink.crypto.algorithms import TransformParams, sa_algorithms
from kink.crypto.errors import UnsupportedTransform
from kink.daemon.config_fields import Invalid, describe, integer, one_of, table, unknown_key
from kink.engine.config import ProposalSpec, TransformSpec
from kink.wire.ipsec_doi import AhTransform, AuthAlgorithm, EspTransform, ProtocolId

# ESP transform ids by name; "aes-gcm" is the 16-octet ICV RFC 4106 §8 recommends.
ENCRYPTIONS: dict[str, EspTransform] = {
    "aes-cbc": EspTransform.AES_CBC,
    "aes-gcm": EspTransform.AES_GCM_16,
    "aes-gcm-12": EspTransform.AES_GCM_12,
    "aes-gcm-8": EspTransform.AES_GCM_8,
    "null": EspTransform.NULL,
}
_AEAD = frozenset({EspTransform.AES_GCM_16, EspTransform.AES_GCM_12, EspTransform.AES_GCM_8})
_AES = _AEAD | {EspTransform.AES_CBC}
T = TypeVar("T")
AES_KEY_LENGTH = 128  # when key_length is not given (RFC 3602 §5.3: 128 is the MUST)

# HMAC integrity by name: the authentication algorithm attribute, and AH's transform id for it
# (RFC 2407 §4.4.3, §4.5; RFC 4868 §4).
INTEGRITIES: dict[str, tuple[AuthAlgorithm, AhTransform]] = {
    "sha1": (AuthAlgorithm.HMAC_SHA1, AhTransform.SHA),
    "sha256": (AuthAlgorithm.HMAC_SHA2_256, AhTransform.SHA2_256),
    "sha384": (AuthAlgorithm.HMAC_SHA2_384, AhTransform.SHA2_384),
    "sha512": (AuthAlgorithm.HMAC_SHA2_512, AhTransform.SHA2_512),
}

PROPOSAL_KEYS = ("esp", "ah")
ESP_KEYS = ("encryption", "key_length", "integrity")
AH_KEYS = ("integrity",)

# Without `proposals`: AES-GCM (RFC 8221 §5's MUST for ESP), then AES-CBC with HMAC-SHA-256.
DEFAULT_PROPOSALS = (
    ProposalSpec((TransformSpec(ProtocolId.ESP, EspTransform.AES_GCM_16, None, 256),)),
    ProposalSpec(
        (TransformSpec(ProtocolId.ESP, EspTransform.AES_CBC, AuthAlgorithm.HMAC_SHA2_256, 256),)
    ),
)

_encryption = one_of(ENCRYPTIONS)
_integrity = one_of(INTEGRITIES)
_key_bits = integer(0)


def proposals(value: object) -> tuple[ProposalSpec, ...]:
    if not isinstance(value, list):
        raise Invalid(f"must be an array of tables, not {describe(value)}")
    if not value:
        raise Invalid("must hold at least one proposal")
    return tuple(_below(index, _proposal, item) for index, item in enumerate(value))


def _below(at: int | str, check: Callable[[object], T], value: object) -> T:
    """check(value), with a problem placed under `at` (an index or key)."""
    try:
        return check(value)
    except Invalid as e:
        raise Invalid(e.reason, (at, *e.at)) from None


def _keys(data: Mapping[str, object], known: tuple[str, ...]) -> None:
    for key in data:
        if key not in known:
            raise Invalid(unknown_key(key, known), (key,))


def _proposal(value: object) -> ProposalSpec:
    data = table(value)
    _keys(data, PROPOSAL_KEYS)
    if not data:
        raise Invalid("needs an 'esp' table, an 'ah' table or both")
    # In the order written: it is the order on the wire, and a responder matches it in order.
    return ProposalSpec(
        tuple(_below(key, _esp if key == "esp" else _ah, sub) for key, sub in data.items())
    )


def _esp(value: object) -> TransformSpec:
    data = table(value)
    _keys(data, ESP_KEYS)
    if "encryption" not in data:
        raise Invalid("missing required key", ("encryption",))
    encryption = _below("encryption", _encryption, data["encryption"])
    key_length: int | None = None
    if encryption in _AES:
        key_length = _below("key_length", _key_bits, data.get("key_length", AES_KEY_LENGTH))
        if key_length not in (128, 192, 256):
            raise Invalid(f"must be 128, 192 or 256, not {key_length}", ("key_length",))
    elif "key_length" in data:
        raise Invalid(f"not allowed with encryption {data['encryption']!r}", ("key_length",))
    auth: int | None = None
    if encryption in _AEAD:
        # AES-GCM authenticates by itself (RFC 4106 §6); a separate MAC is not negotiable.
        if "integrity" in data:
            raise Invalid(f"not allowed with encryption {data['encryption']!r}", ("integrity",))
    elif "integrity" not in data:
        raise Invalid(f"required with encryption {data['encryption']!r}", ("integrity",))
    else:
        auth = _below("integrity", _integrity, data["integrity"])[0]
    return _supported(TransformSpec(ProtocolId.ESP, encryption, auth, key_length))


def _ah(value: object) -> TransformSpec:
    data = table(value)
    _keys(data, AH_KEYS)
    if "integrity" not in data:
        raise Invalid("missing required key", ("integrity",))
    auth, transform = _below("integrity", _integrity, data["integrity"])
    return _supported(TransformSpec(ProtocolId.AH, transform, auth))


def _supported(spec: TransformSpec) -> TransformSpec:
    """The spec if the kernel can be keyed for it (the same check negotiation makes)."""
    params = TransformParams(spec.transform_id, spec.auth_algorithm, spec.key_length)
    try:
        sa_algorithms(spec.protocol, params)
    except UnsupportedTransform as e:
        raise Invalid(f"unsupported: {e}") from None
    return spec
