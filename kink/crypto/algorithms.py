"""From a negotiated ISAKMP transform to the kernel's algorithms and the SA's keys.

A KINK proposal names an IPsec protocol, a transform id and attributes (RFC 2407 §4.4-4.5).
`sa_algorithms` turns them into XFRM algorithm names, key lengths and ICV/truncation lengths;
`derive_sa_keys` takes KEYMAT of exactly that length (RFC 4430 §7) and splits it,
encryption key first, then the authentication key. RFC 2409 §5.5 leaves the split to the
service; this is the order of KAME/ipsec-tools racoon and racoon2's kinkd, and every ESP key
in the racoon2 captures was installed that way.

Supported: ESP AES-CBC 128/192/256 (RFC 3602) and ESP_NULL, each with HMAC-SHA1-96 (RFC 2404)
or HMAC-SHA2-256/384/512 (RFC 4868); ESP AES-GCM 128/192/256 with 8/12/16-octet ICVs
(RFC 4106); AH with HMAC-SHA1-96 or HMAC-SHA2 (RFC 2407 §4.4.3, RFC 4868).
"""

import functools
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

from kink.crypto.errors import UnsupportedTransform
from kink.crypto.keymat import SaKeymat, check_keymat_request
from kink.crypto.profiles import AesPrf
from kink.crypto.rfc3961 import Key
from kink.wire.ipsec_doi import AhTransform, AuthAlgorithm, EspTransform, ProtocolId


class TransformParams(NamedTuple):
    """The parts of one ISAKMP Transform (RFC 2407 §4.4, §4.5) that decide the keys.

    Plain ints as they appear on the wire; None when the attribute is absent. A NamedTuple
    rather than a frozen dataclass: it keys the lru caches of sa_algorithms and sa_transform,
    six lookups per CREATE exchange, and a tuple hashes and compares in C where a dataclass
    runs a Python __hash__ (issue 4).
    """

    transform_id: int
    auth_algorithm: int | None = None  # SA attribute class 5, Authentication Algorithm
    key_length: int | None = None  # SA attribute class 6, Key Length, in bits


@dataclass(frozen=True, slots=True)
class SaAlgorithms:
    """What the kernel needs to know about one SA's algorithms.

    `encryption` is the XFRM name for XFRMA_ALG_AEAD when `aead_icv_bits` is set, else for
    XFRMA_ALG_CRYPT (None for AH); `authentication` is the name for XFRMA_ALG_AUTH_TRUNC (None
    for an AEAD). Key lengths are in octets of KEYMAT; the AES-GCM key includes its 4-octet salt
    (RFC 4106 §8.1), as XFRM expects it.
    """

    protocol: int
    encryption: str | None
    enc_key_length: int
    aead_icv_bits: int | None
    authentication: str | None
    auth_key_length: int
    auth_trunc_bits: int | None

    @property
    def aead(self) -> bool:
        return self.aead_icv_bits is not None

    @property
    def keymat_length(self) -> int:
        return self.enc_key_length + self.auth_key_length


@dataclass(frozen=True, slots=True)
class _Cipher:
    xfrm_name: str
    key_bits: frozenset[int]  # allowed Key Length values; empty: fixed key, attribute forbidden
    salt: int = 0  # octets of KEYMAT after the key (RFC 4106 §8.1)
    icv_bits: int | None = None  # set for an AEAD


@dataclass(frozen=True, slots=True)
class _Auth:
    xfrm_name: str
    key_length: int  # octets
    trunc_bits: int


_AES_KEY_BITS = frozenset({128, 192, 256})  # RFC 3602 §5.3, RFC 4106 §8.4

_ESP_CIPHERS: dict[int, _Cipher] = {
    EspTransform.AES_CBC: _Cipher("cbc(aes)", _AES_KEY_BITS),
    EspTransform.AES_GCM_8: _Cipher("rfc4106(gcm(aes))", _AES_KEY_BITS, 4, 64),
    EspTransform.AES_GCM_12: _Cipher("rfc4106(gcm(aes))", _AES_KEY_BITS, 4, 96),
    EspTransform.AES_GCM_16: _Cipher("rfc4106(gcm(aes))", _AES_KEY_BITS, 4, 128),
    # ESP without confidentiality (RFC 2407 §4.4.4); XFRM wants the null cipher with no key.
    EspTransform.NULL: _Cipher("ecb(cipher_null)", frozenset()),
}

# HMAC keys are as long as the hash output; ICVs are truncated to 96 bits for SHA-1 (RFC 2404)
# and to half the output for SHA-2 (RFC 4868 §2.1.1, §2.3).
_AUTH: dict[int, _Auth] = {
    AuthAlgorithm.HMAC_SHA1: _Auth("hmac(sha1)", 20, 96),
    AuthAlgorithm.HMAC_SHA2_256: _Auth("hmac(sha256)", 32, 128),
    AuthAlgorithm.HMAC_SHA2_384: _Auth("hmac(sha384)", 48, 192),
    AuthAlgorithm.HMAC_SHA2_512: _Auth("hmac(sha512)", 64, 256),
}

# An AH transform id names the MAC; its Authentication Algorithm attribute must name the same
# (RFC 2407 §4.4.3, §4.5; RFC 4868 §4).
_AH_AUTH: dict[int, int] = {
    AhTransform.SHA: AuthAlgorithm.HMAC_SHA1,
    AhTransform.SHA2_256: AuthAlgorithm.HMAC_SHA2_256,
    AhTransform.SHA2_384: AuthAlgorithm.HMAC_SHA2_384,
    AhTransform.SHA2_512: AuthAlgorithm.HMAC_SHA2_512,
}


def _label(kind: type[IntEnum], value: int) -> str:
    try:
        return f"{value} ({kind(value).name})"
    except ValueError:
        return str(value)


def _auth(value: int | None, what: str) -> _Auth:
    if value is None:
        raise UnsupportedTransform(
            f"{what} needs the Authentication Algorithm attribute (RFC 2407 §4.5)"
        )
    auth = _AUTH.get(value)
    if auth is None:
        raise UnsupportedTransform(
            f"authentication algorithm {_label(AuthAlgorithm, value)} is not supported"
        )
    return auth


def _esp(params: TransformParams) -> SaAlgorithms:
    what = f"ESP transform {_label(EspTransform, params.transform_id)}"
    cipher = _ESP_CIPHERS.get(params.transform_id)
    if cipher is None:
        raise UnsupportedTransform(f"{what} is not supported")
    if cipher.key_bits:
        if params.key_length is None:
            raise UnsupportedTransform(f"{what} needs the Key Length attribute")
        if params.key_length not in cipher.key_bits:
            raise UnsupportedTransform(f"{what} with a {params.key_length}-bit key")
        enc_key_length = params.key_length // 8 + cipher.salt
    elif params.key_length is not None:
        raise UnsupportedTransform(f"{what} has a fixed key: Key Length must not be sent")
    else:
        enc_key_length = 0
    if cipher.icv_bits is not None:
        # AES-GCM integrity-protects by itself (RFC 4106 §6); XFRM rejects an AEAD combined
        # with a separate authentication algorithm.
        if params.auth_algorithm is not None:
            raise UnsupportedTransform(f"{what} must not carry an Authentication Algorithm")
        return SaAlgorithms(
            ProtocolId.ESP, cipher.xfrm_name, enc_key_length, cipher.icv_bits, None, 0, None
        )
    # ESP_NULL must have authentication (RFC 2407 §4.5); confidentiality without integrity is
    # not offered.
    auth = _auth(params.auth_algorithm, what)
    return SaAlgorithms(
        ProtocolId.ESP,
        cipher.xfrm_name,
        enc_key_length,
        None,
        auth.xfrm_name,
        auth.key_length,
        auth.trunc_bits,
    )


def _ah(params: TransformParams) -> SaAlgorithms:
    what = f"AH transform {_label(AhTransform, params.transform_id)}"
    expected = _AH_AUTH.get(params.transform_id)
    if expected is None:
        raise UnsupportedTransform(f"{what} is not supported")
    if params.key_length is not None:
        raise UnsupportedTransform(f"{what} must not carry a Key Length")
    auth = _auth(params.auth_algorithm, what)
    if params.auth_algorithm != expected:
        raise UnsupportedTransform(f"{what} does not match {auth.xfrm_name}")
    return SaAlgorithms(
        ProtocolId.AH, None, 0, None, auth.xfrm_name, auth.key_length, auth.trunc_bits
    )


# Every SA of every exchange asks again for the few transforms configured; the answer is
# immutable, and failures (UnsupportedTransform) are not cached.
@functools.lru_cache(maxsize=256)
def sa_algorithms(protocol: int, params: TransformParams) -> SaAlgorithms:
    """The kernel algorithms for a transform of `protocol`; UnsupportedTransform if unusable."""
    if protocol == ProtocolId.ESP:
        return _esp(params)
    if protocol == ProtocolId.AH:
        return _ah(params)
    raise UnsupportedTransform(f"IPsec protocol {_label(ProtocolId, protocol)} is not supported")


# Not frozen: one per SA, built here and only read (or zeroed) by its caller, and a frozen
# dataclass pays object.__setattr__ for every field (issue 4).
@dataclass(slots=True)
class SaKeys:
    """The keys of one SA; `enc_key` is empty for AH and ESP_NULL, `auth_key` for AES-GCM."""

    enc_key: bytearray = field(repr=False)
    auth_key: bytearray = field(repr=False)
    algorithms: SaAlgorithms

    def zero(self) -> None:
        self.enc_key[:] = bytes(len(self.enc_key))
        self.auth_key[:] = bytes(len(self.auth_key))


def derive_sa_keys(
    key: Key,
    protocol: int,
    spi: bytes,
    ni: bytes,
    nr: bytes | None,
    gxy: bytes | None,
    transform_params: TransformParams,
    *,
    aes_prf: AesPrf = AesPrf.LITERAL,
) -> SaKeys:
    """The keys of the SA with inbound `spi` (RFC 4430 §7); see `keymat` for the inputs."""
    algorithms = sa_algorithms(protocol, transform_params)
    enc_length, auth_length = algorithms.enc_key_length, algorithms.auth_key_length
    check_keymat_request(protocol, spi, enc_length + auth_length)
    keymat = SaKeymat(key, ni, nr, gxy, aes_prf)
    enc_key, auth_key = keymat.keys(protocol, spi, enc_length, auth_length)
    return SaKeys(enc_key, auth_key, algorithms)
