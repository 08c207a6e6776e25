"""Transform -> XFRM algorithms and the KEYMAT split (RFC 2407, 3602, 4106, 4868)."""

import pytest

from kink.crypto.algorithms import (
    SaAlgorithms,
    TransformParams,
    derive_sa_keys,
    sa_algorithms,
)
from kink.crypto.errors import CryptoError, UnsupportedTransform
from kink.crypto.keymat import keymat
from kink.crypto.rfc3961 import AesPrf, Key
from kink.wire.ipsec_doi import AhTransform, AuthAlgorithm, EspTransform, ProtocolId

ESP, AH = ProtocolId.ESP, ProtocolId.AH
A = AuthAlgorithm

SUPPORTED = [
    # (protocol, params, expected algorithms)
    (
        ESP,
        TransformParams(EspTransform.AES_CBC, A.HMAC_SHA1, 128),
        SaAlgorithms(ESP, "cbc(aes)", 16, None, "hmac(sha1)", 20, 96),
    ),
    (
        ESP,
        TransformParams(EspTransform.AES_CBC, A.HMAC_SHA2_256, 192),
        SaAlgorithms(ESP, "cbc(aes)", 24, None, "hmac(sha256)", 32, 128),
    ),
    (
        ESP,
        TransformParams(EspTransform.AES_CBC, A.HMAC_SHA2_384, 256),
        SaAlgorithms(ESP, "cbc(aes)", 32, None, "hmac(sha384)", 48, 192),
    ),
    (
        ESP,
        TransformParams(EspTransform.AES_CBC, A.HMAC_SHA2_512, 256),
        SaAlgorithms(ESP, "cbc(aes)", 32, None, "hmac(sha512)", 64, 256),
    ),
    (
        ESP,
        TransformParams(EspTransform.AES_GCM_8, None, 128),
        SaAlgorithms(ESP, "rfc4106(gcm(aes))", 20, 64, None, 0, None),
    ),
    (
        ESP,
        TransformParams(EspTransform.AES_GCM_12, None, 192),
        SaAlgorithms(ESP, "rfc4106(gcm(aes))", 28, 96, None, 0, None),
    ),
    (
        ESP,
        TransformParams(EspTransform.AES_GCM_16, None, 256),
        SaAlgorithms(ESP, "rfc4106(gcm(aes))", 36, 128, None, 0, None),
    ),
    (
        ESP,
        TransformParams(EspTransform.NULL, A.HMAC_SHA2_256),
        SaAlgorithms(ESP, "ecb(cipher_null)", 0, None, "hmac(sha256)", 32, 128),
    ),
    (
        AH,
        TransformParams(AhTransform.SHA, A.HMAC_SHA1),
        SaAlgorithms(AH, None, 0, None, "hmac(sha1)", 20, 96),
    ),
    (
        AH,
        TransformParams(AhTransform.SHA2_256, A.HMAC_SHA2_256),
        SaAlgorithms(AH, None, 0, None, "hmac(sha256)", 32, 128),
    ),
    (
        AH,
        TransformParams(AhTransform.SHA2_384, A.HMAC_SHA2_384),
        SaAlgorithms(AH, None, 0, None, "hmac(sha384)", 48, 192),
    ),
    (
        AH,
        TransformParams(AhTransform.SHA2_512, A.HMAC_SHA2_512),
        SaAlgorithms(AH, None, 0, None, "hmac(sha512)", 64, 256),
    ),
]


@pytest.mark.parametrize(("protocol", "params", "expected"), SUPPORTED)
def test_supported_transforms(
    protocol: int, params: TransformParams, expected: SaAlgorithms
) -> None:
    assert sa_algorithms(protocol, params) == expected


@pytest.mark.parametrize(("protocol", "params", "expected"), SUPPORTED)
def test_keymat_is_split_encryption_key_first(
    protocol: int, params: TransformParams, expected: SaAlgorithms
) -> None:
    key = Key(20, bytes(range(32)))
    spi, ni, nr = b"\xc0\x00\x00\x01", b"i" * 16, b"r" * 16
    keys = derive_sa_keys(key, protocol, spi, ni, nr, None, params)
    assert keys.algorithms == expected
    whole = keymat(key, protocol, spi, ni, nr, length=expected.keymat_length)
    assert keys.enc_key == whole[: expected.enc_key_length]
    assert keys.auth_key == whole[expected.enc_key_length :]
    assert len(keys.enc_key) == expected.enc_key_length
    assert len(keys.auth_key) == expected.auth_key_length
    assert keys.algorithms.aead == (expected.aead_icv_bits is not None)


def test_gcm_key_carries_the_salt() -> None:
    # RFC 4106 §8.1: 36 octets for AES-256-GCM, the last 4 being the nonce salt.
    keys = derive_sa_keys(
        Key(18, bytes(32)),
        ESP,
        b"\0\0\0\x09",
        b"n" * 16,
        None,
        None,
        TransformParams(EspTransform.AES_GCM_16, None, 256),
    )
    assert len(keys.enc_key) == 36
    assert keys.auth_key == bytearray()


def test_aes_256_sha2_512_needs_several_prf_blocks() -> None:
    key = Key(18, bytes(range(32)))
    params = TransformParams(EspTransform.AES_CBC, A.HMAC_SHA2_512, 256)
    literal = derive_sa_keys(key, ESP, b"\0\0\0\1", b"n" * 16, b"r" * 16, b"g" * 256, params)
    truncated = derive_sa_keys(
        key,
        ESP,
        b"\0\0\0\1",
        b"n" * 16,
        b"r" * 16,
        b"g" * 256,
        params,
        aes_prf=AesPrf.TRUNCATED,
    )
    assert len(literal.enc_key) + len(literal.auth_key) == 96  # K1..K5 of 20 octets
    assert literal.enc_key != truncated.enc_key


def test_sa_keys_repr_and_zero() -> None:
    keys = derive_sa_keys(
        Key(17, bytes(16)),
        ESP,
        b"\0\0\0\1",
        b"n" * 16,
        None,
        None,
        TransformParams(EspTransform.AES_CBC, A.HMAC_SHA1, 128),
    )
    assert keys.enc_key.hex() not in repr(keys)
    assert keys.auth_key.hex() not in repr(keys)
    keys.zero()
    assert keys.enc_key == bytes(16)
    assert keys.auth_key == bytes(20)


UNSUPPORTED = [
    (ESP, TransformParams(EspTransform.TRIPLE_DES, A.HMAC_SHA1), "3 \\(TRIPLE_DES\\)"),
    (ESP, TransformParams(EspTransform.DES, A.HMAC_SHA1), "not supported"),
    (ESP, TransformParams(99, A.HMAC_SHA1, 128), "ESP transform 99 is not supported"),
    (ESP, TransformParams(EspTransform.AES_CBC, A.HMAC_SHA1), "Key Length"),
    (ESP, TransformParams(EspTransform.AES_CBC, A.HMAC_SHA1, 512), "512-bit"),
    (ESP, TransformParams(EspTransform.AES_CBC, None, 128), "Authentication Algorithm"),
    (ESP, TransformParams(EspTransform.AES_CBC, A.HMAC_MD5, 128), "HMAC_MD5"),
    (ESP, TransformParams(EspTransform.AES_CBC, 999, 128), "999"),
    (ESP, TransformParams(EspTransform.AES_GCM_16, A.HMAC_SHA1, 128), "must not carry"),
    (ESP, TransformParams(EspTransform.AES_GCM_8), "Key Length"),
    (ESP, TransformParams(EspTransform.NULL), "Authentication Algorithm"),
    (ESP, TransformParams(EspTransform.NULL, A.HMAC_SHA1, 128), "fixed key"),
    (AH, TransformParams(AhTransform.MD5, A.HMAC_MD5), "AH transform 2 \\(MD5\\)"),
    (AH, TransformParams(AhTransform.SHA), "Authentication Algorithm"),
    (AH, TransformParams(AhTransform.SHA, A.HMAC_SHA2_256), "does not match"),
    (AH, TransformParams(AhTransform.SHA2_256, A.HMAC_SHA1), "does not match"),
    (AH, TransformParams(AhTransform.SHA, A.HMAC_SHA1, 128), "Key Length"),
    (ProtocolId.IPCOMP, TransformParams(2), "IPCOMP"),
    (ProtocolId.ISAKMP, TransformParams(1), "ISAKMP"),
]


@pytest.mark.parametrize(("protocol", "params", "match"), UNSUPPORTED)
def test_unsupported_transforms(protocol: int, params: TransformParams, match: str) -> None:
    with pytest.raises(UnsupportedTransform, match=match):
        sa_algorithms(protocol, params)
    with pytest.raises(CryptoError):
        derive_sa_keys(Key(17, bytes(16)), protocol, b"\0\0\0\1", b"n", None, None, params)
