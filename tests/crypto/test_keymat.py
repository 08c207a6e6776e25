"""KEYMAT (RFC 4430 §7, RFC 2409 §5.5), with racoon2 kinkd's installed ESP keys as the oracle."""

import random
from collections.abc import Callable

import pytest

from kink.crypto.algorithms import TransformParams, derive_sa_keys
from kink.crypto.errors import CryptoError
from kink.crypto.keymat import keymat
from kink.crypto.rfc3961 import AesPrf, Key, prf
from kink.wire.ipsec_doi import AuthAlgorithm, EspTransform, ProtocolId
from tests.crypto.helpers import h
from tests.crypto.mit_k5crypto import MitK5Crypto

# /work/shared/interop/racoon2-captures/README.md, scenario basic/: aes256-cts-hmac-sha1-96
# ticket session key, CREATE/REPLY without Nr (optimistic), ESP AES-CBC-128 + HMAC-SHA1.
RACOON2_SESSION_KEY = h("6f6e273c227eaace58145a81907c0bf8e0dcc0623079893dc4ee0d916c81e346")
RACOON2_AES128_SHA1 = TransformParams(EspTransform.AES_CBC, AuthAlgorithm.HMAC_SHA1, key_length=128)
# (PRF input = protocol | SPI | Ni, ESP key the kernel got, auth key the kernel got,
#  KEYMAT the MIT/Heimdal PRF would have given, from decoded-a.txt)
RACOON2_SAS = [
    (
        "030223b6e645761b9b70239fe0df502a33138c5e10",
        "298728cc69b5ccc265dc1103de793c8e",
        "ee80527bb3ceed206203e98a5023b09cd853e1c0",
        "ee80527baeaadd4e0b8a646e010545c181f052c0f051e1baef87a566879268d9e2d1201c",
    ),
    (
        "030583315045761b9b70239fe0df502a33138c5e10",
        "29a9c4440929d64a1fdedc7654a64387",
        "fc00867b757cd1cb9e8a7a979e394c24f15bd213",
        "fc00867bd4539cbdc8fda0ee117667aeb8a5d636e342bb43ddac6dbc947168a08cd2856a",
    ),
    (
        "0309a1728eb0d5c92fd90e746fea02cc70b7428c66",
        "ab6872cd823e915dea9dfcaa769dafb6",
        "ffb01f63a7d466df62b007874b3133ee83c06a1a",
        "ffb01f63307838a3b0bdeabf1d7194affa273ae24c16eb098c642ef3484b6e85a266e670",
    ),
    (
        "030aef87f8b0d5c92fd90e746fea02cc70b7428c66",
        "730c136d307ef45c625fd5f1c5406891",
        "82a35ee70230b78f79cf585cf4da7f9e441b4e8e",
        "82a35ee7453b8c24b3b75602ccd5fbdfa3d2326d9b3bf2ea3d1cbd7df5919740341a452f",
    ),
]


def split_prf_input(text: str) -> tuple[int, bytes, bytes]:
    src = h(text)
    return src[0], src[1:5], src[5:]


@pytest.mark.parametrize(("prf_input", "enc_key", "auth_key", "mit_keymat"), RACOON2_SAS)
def test_racoon2_esp_keys(prf_input: str, enc_key: str, auth_key: str, mit_keymat: str) -> None:
    protocol, spi, ni = split_prf_input(prf_input)
    assert protocol == ProtocolId.ESP
    session = Key(18, RACOON2_SESSION_KEY)
    keys = derive_sa_keys(session, protocol, spi, ni, None, None, RACOON2_AES128_SHA1)
    assert keys.enc_key == h(enc_key)
    assert keys.auth_key == h(auth_key)
    assert keys.algorithms.encryption == "cbc(aes)"
    assert keys.algorithms.authentication == "hmac(sha1)"
    assert keys.algorithms.auth_trunc_bits == 96


@pytest.mark.parametrize(("prf_input", "enc_key", "auth_key", "mit_keymat"), RACOON2_SAS)
def test_racoon2_keys_differ_with_the_truncated_prf(
    prf_input: str, enc_key: str, auth_key: str, mit_keymat: str
) -> None:
    protocol, spi, ni = split_prf_input(prf_input)
    session = Key(18, RACOON2_SESSION_KEY)
    truncated = derive_sa_keys(
        session, protocol, spi, ni, None, None, RACOON2_AES128_SHA1, aes_prf=AesPrf.TRUNCATED
    )
    assert truncated.enc_key + truncated.auth_key == h(mit_keymat)
    assert truncated.enc_key != h(enc_key)
    assert truncated.auth_key != h(auth_key)


def reference_keymat(prf_fn: Callable[[bytes], bytes], src: bytes, length: int) -> bytes:
    """RFC 2409 §5.5 written out: K1 = prf(src), Kn = prf(K(n-1) | src)."""
    blocks = [prf_fn(src)]
    while sum(map(len, blocks)) < length:
        blocks.append(prf_fn(blocks[-1] + src))
    return b"".join(blocks)[:length]


KEY_SIZES = {17: 16, 18: 32, 19: 16, 20: 32}


@pytest.mark.parametrize("enctype", sorted(KEY_SIZES))
@pytest.mark.parametrize("with_dh", [False, True])
@pytest.mark.parametrize("with_nr", [False, True])
def test_expansion_against_mit_prf(
    mit: MitK5Crypto, enctype: int, with_dh: bool, with_nr: bool
) -> None:
    # MIT's krb5_c_prf is the TRUNCATED reading for 17/18 and the RFC 8009 PRF for 19/20:
    # 96 octets (AES-256 + HMAC-SHA2-512) need K1..K6, K1..K3 or K1..K2.
    rng = random.Random(f"keymat-{enctype}-{with_dh}-{with_nr}")
    raw = rng.randbytes(KEY_SIZES[enctype])
    spi, ni = rng.randbytes(4), rng.randbytes(16)
    nr = rng.randbytes(24) if with_nr else None
    gxy = rng.randbytes(256) if with_dh else None
    src = (gxy or b"") + bytes([ProtocolId.ESP]) + spi + ni + (nr or b"")
    expected = reference_keymat(lambda data: mit.prf(enctype, raw, data), src, 96)
    key = Key(enctype, raw)
    got = keymat(key, ProtocolId.ESP, spi, ni, nr, gxy, length=96, aes_prf=AesPrf.TRUNCATED)
    assert got == expected
    assert isinstance(got, bytearray)


@pytest.mark.parametrize("enctype", [17, 18])
def test_literal_expansion_chains_20_octet_blocks(enctype: int) -> None:
    key = Key(enctype, bytes(range(KEY_SIZES[enctype])))
    spi, ni, nr, gxy = b"\x01\x02\x03\x04", b"N" * 16, b"R" * 16, b"G" * 128
    src = gxy + bytes([ProtocolId.AH]) + spi + ni + nr
    k1 = prf(key, src)
    k2 = prf(key, k1 + src)
    k3 = prf(key, k2 + src)
    assert len(k1) == 20
    got = keymat(key, ProtocolId.AH, spi, ni, nr, gxy, length=56)
    assert got == (k1 + k2 + k3)[:56]
    # Shorter KEYMAT is a prefix of longer KEYMAT.
    assert keymat(key, ProtocolId.AH, spi, ni, nr, gxy, length=20) == k1


def test_every_input_changes_keymat() -> None:
    key = Key(19, bytes(16))
    base = keymat(key, 3, b"\0\0\0\1", b"n" * 16, length=36)
    assert keymat(key, 2, b"\0\0\0\1", b"n" * 16, length=36) != base
    assert keymat(key, 3, b"\0\0\0\2", b"n" * 16, length=36) != base
    assert keymat(key, 3, b"\0\0\0\1", b"m" * 16, length=36) != base
    assert keymat(key, 3, b"\0\0\0\1", b"n" * 16, b"r", length=36) != base
    assert keymat(key, 3, b"\0\0\0\1", b"n" * 16, None, b"g", length=36) != base
    # An absent Nr is a zero-length Nr_b (RFC 4430 §7).
    assert keymat(key, 3, b"\0\0\0\1", b"n" * 16, b"", length=36) == base


@pytest.mark.parametrize(
    ("protocol", "spi", "length", "match"),
    [
        (256, b"\0\0\0\1", 16, "protocol"),
        (-1, b"\0\0\0\1", 16, "protocol"),
        (3, b"\0\0\1", 16, "SPI"),
        (3, b"\0\0\0\0\1", 16, "SPI"),
        (3, b"\0\0\0\1", 0, "length"),
        (3, b"\0\0\0\1", 4096, "length"),
    ],
)
def test_bad_inputs(protocol: int, spi: bytes, length: int, match: str) -> None:
    with pytest.raises(CryptoError, match=match):
        keymat(Key(17, bytes(16)), protocol, spi, b"nonce", length=length)
