"""kink.crypto.rfc3961 as the other layers use it: keys, errors, lengths, wiping."""

from collections.abc import Callable

import pytest

from kink.crypto.errors import CryptoError, UnsupportedEnctype
from kink.crypto.rfc3961 import (
    KEY_USAGE_KINK_CKSUM,
    KEY_USAGE_KINK_ENCRYPT,
    AesPrf,
    Key,
    checksum,
    checksum_length,
    decrypt,
    encrypt,
    enctype_name,
    prf,
    string_to_key,
    verify_checksum,
)

KEY_SIZES = {17: 16, 18: 32, 19: 16, 20: 32}
ENCTYPES = sorted(KEY_SIZES)


def make_key(enctype: int, fill: int = 0x5A) -> Key:
    return Key(enctype, bytes([fill]) * KEY_SIZES[enctype])


def test_kink_key_usages() -> None:
    assert (KEY_USAGE_KINK_ENCRYPT, KEY_USAGE_KINK_CKSUM) == (39, 40)  # RFC 4430 §8


@pytest.mark.parametrize(
    ("enctype", "name"),
    [(1, "des-cbc-crc"), (3, "des-cbc-md5"), (16, "des3-cbc-sha1-kd"), (23, "rc4-hmac")],
)
def test_weak_enctypes_are_refused_with_the_reason(enctype: int, name: str) -> None:
    with pytest.raises(UnsupportedEnctype) as excinfo:
        Key(enctype, b"\x01" * 16)
    message = str(excinfo.value)
    assert message.startswith(f"enctype {enctype} ({name}) is not supported: ")
    assert "KINK needs aes*-cts-hmac-*" in message
    with pytest.raises(UnsupportedEnctype):
        checksum_length(enctype)
    with pytest.raises(UnsupportedEnctype):
        string_to_key(enctype, b"password", b"salt")


def test_unknown_enctype_is_refused() -> None:
    with pytest.raises(UnsupportedEnctype, match=r"enctype 99 \(unknown\) is not supported"):
        Key(99, b"\x01" * 16)


def test_enctype_names() -> None:
    assert [enctype_name(e) for e in ENCTYPES] == [
        "aes128-cts-hmac-sha1-96",
        "aes256-cts-hmac-sha1-96",
        "aes128-cts-hmac-sha256-128",
        "aes256-cts-hmac-sha384-192",
    ]
    assert enctype_name(24) == "rc4-hmac-exp"
    assert enctype_name(12345) == "unknown"


@pytest.mark.parametrize("enctype", ENCTYPES)
def test_key_length_is_checked(enctype: int) -> None:
    with pytest.raises(CryptoError, match="octets"):
        Key(enctype, b"\x00" * (KEY_SIZES[enctype] + 1))


def test_repr_shows_no_key_material() -> None:
    key = Key(18, bytes(range(0xA0, 0xC0)))
    text = repr(key)
    assert text == "Key(enctype=18 (aes256-cts-hmac-sha1-96))"
    assert "a0a1" not in text.lower()


@pytest.mark.parametrize(("enctype", "length"), [(17, 12), (18, 12), (19, 16), (20, 24)])
def test_checksum_length(enctype: int, length: int) -> None:
    assert checksum_length(enctype) == length
    assert len(checksum(make_key(enctype), 40, b"data")) == length


@pytest.mark.parametrize("enctype", ENCTYPES)
def test_verify_checksum(enctype: int) -> None:
    key = make_key(enctype)
    data = b"KINK header and payloads" * 30
    cksum = checksum(key, KEY_USAGE_KINK_CKSUM, data)
    verify_checksum(key, KEY_USAGE_KINK_CKSUM, data, cksum)
    with pytest.raises(CryptoError):
        verify_checksum(key, KEY_USAGE_KINK_CKSUM, data + b"!", cksum)
    with pytest.raises(CryptoError):
        verify_checksum(key, KEY_USAGE_KINK_CKSUM, data, cksum[:-1])
    with pytest.raises(CryptoError):
        verify_checksum(key, KEY_USAGE_KINK_ENCRYPT, data, cksum)  # other usage, other Kc
    with pytest.raises(CryptoError):
        verify_checksum(make_key(enctype, 0x33), KEY_USAGE_KINK_CKSUM, data, cksum)


@pytest.mark.parametrize("enctype", ENCTYPES)
def test_decrypt_detects_every_tampered_octet(enctype: int) -> None:
    key = make_key(enctype)
    ciphertext = encrypt(key, KEY_USAGE_KINK_ENCRYPT, b"inner payloads" * 3)
    for i in range(len(ciphertext)):
        tampered = bytearray(ciphertext)
        tampered[i] ^= 0x01
        with pytest.raises(CryptoError, match="integrity"):
            decrypt(key, KEY_USAGE_KINK_ENCRYPT, bytes(tampered))


@pytest.mark.parametrize("enctype", ENCTYPES)
def test_decrypt_refuses_wrong_usage_key_and_length(enctype: int) -> None:
    key = make_key(enctype)
    ciphertext = encrypt(key, KEY_USAGE_KINK_ENCRYPT, b"payload")
    with pytest.raises(CryptoError):
        decrypt(key, KEY_USAGE_KINK_CKSUM, ciphertext)
    with pytest.raises(CryptoError):
        decrypt(make_key(enctype, 0x33), KEY_USAGE_KINK_ENCRYPT, ciphertext)
    shortest = 16 + checksum_length(enctype)
    for length in (0, 1, shortest - 1):
        with pytest.raises(CryptoError, match="shorter"):
            decrypt(key, KEY_USAGE_KINK_ENCRYPT, ciphertext[:length])
    with pytest.raises(CryptoError, match="integrity"):
        decrypt(key, KEY_USAGE_KINK_ENCRYPT, ciphertext[:shortest])


@pytest.mark.parametrize("enctype", ENCTYPES)
def test_confounder_makes_each_encryption_different(enctype: int) -> None:
    key = make_key(enctype)
    first = encrypt(key, 39, b"same plaintext")
    assert first != encrypt(key, 39, b"same plaintext")
    fixed = encrypt(key, 39, b"same plaintext", confounder=b"\x07" * 16)
    assert fixed == encrypt(key, 39, b"same plaintext", confounder=b"\x07" * 16)
    with pytest.raises(CryptoError, match="confounder"):
        encrypt(key, 39, b"x", confounder=b"\x07" * 8)


@pytest.mark.parametrize("usage", [-1, 2**32])
def test_usage_out_of_range(usage: int) -> None:
    with pytest.raises(CryptoError, match="usage"):
        checksum(make_key(19), usage, b"data")


@pytest.mark.parametrize(
    ("enctype", "aes_prf", "length"),
    [
        (17, AesPrf.LITERAL, 20),
        (17, AesPrf.TRUNCATED, 16),
        (18, AesPrf.LITERAL, 20),
        (18, AesPrf.TRUNCATED, 16),
        (19, AesPrf.LITERAL, 32),
        (19, AesPrf.TRUNCATED, 32),
        (20, AesPrf.LITERAL, 48),
        (20, AesPrf.TRUNCATED, 48),
    ],
)
def test_prf_lengths(enctype: int, aes_prf: AesPrf, length: int) -> None:
    assert len(prf(make_key(enctype), b"input", aes_prf=aes_prf)) == length


@pytest.mark.parametrize("enctype", [17, 18])
def test_the_two_aes_prf_readings_share_one_block(enctype: int) -> None:
    # CTS of 20 octets ends with the first 4 octets of the encrypted first block, which is
    # the truncated reading's whole output (RFC 3962 §5: the last two blocks are swapped).
    key = make_key(enctype)
    literal = prf(key, b"input")
    truncated = prf(key, b"input", aes_prf=AesPrf.TRUNCATED)
    assert literal[16:] == truncated[:4]
    assert literal[:16] != truncated


@pytest.mark.parametrize("enctype", [19, 20])
def test_aes_prf_does_not_matter_for_rfc8009(enctype: int) -> None:
    key = make_key(enctype)
    assert prf(key, b"input") == prf(key, b"input", aes_prf=AesPrf.TRUNCATED)


@pytest.mark.parametrize("enctype", ENCTYPES)
def test_zero_wipes_key_and_derived_keys(enctype: int) -> None:
    key = make_key(enctype)
    ciphertext = encrypt(key, 39, b"payload")
    checksum(key, 40, b"data")
    prf(key, b"data")
    derived = [
        key._enc_keys[39].cipher._key,
        key._enc_keys[39].integrity._key,
        key._checksum_keys[40]._key,
    ]
    material = key._material
    assert material is not None
    key.zero()
    for octets in [material, *derived]:
        assert octets == bytes(len(octets))
    assert repr(key).endswith(", zeroed)")
    operations: list[Callable[[], bytes]] = [
        lambda: encrypt(key, 39, b"payload"),
        lambda: decrypt(key, 39, ciphertext),
        lambda: checksum(key, 40, b"data"),
        lambda: prf(key, b"data"),
    ]
    for operation in operations:
        with pytest.raises(CryptoError, match="zeroed"):
            operation()
    key.zero()  # idempotent


@pytest.mark.parametrize("enctype", ENCTYPES)
def test_string_to_key_parameters(enctype: int) -> None:
    with pytest.raises(CryptoError, match="4 octets"):
        string_to_key(enctype, b"password", b"salt", b"\x00\x10")
    with pytest.raises(CryptoError, match="must not be 0"):
        string_to_key(enctype, b"password", b"salt", b"\x00\x00\x00\x00")
    one = string_to_key(enctype, b"password", b"salt", b"\x00\x00\x00\x01")
    assert one.enctype == enctype
