"""HmacKey is RFC 2104 HMAC written out over hashlib: it must agree with the standard library's
hmac for every hash the enctypes use and every key length, including keys longer than the
hash's block (hashed first), and refuse to work once wiped."""

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kink.crypto.errors import CryptoError
from kink.crypto.profiles import HmacKey


@pytest.mark.parametrize("hash_name", ["sha1", "sha256", "sha384"])
@given(
    key=st.binary(min_size=1, max_size=300),
    parts=st.lists(st.binary(max_size=200), max_size=4),
)
def test_mac_is_rfc2104_hmac(hash_name: str, key: bytes, parts: list[bytes]) -> None:
    size = hashlib.new(hash_name).digest_size
    expected = hmac.new(key, b"".join(parts), hash_name).digest()
    assert HmacKey(bytearray(key), hash_name, size).mac(*parts) == expected
    assert HmacKey(bytearray(key), hash_name, 12).mac(*parts) == expected[:12]


def test_key_state_is_reused_not_consumed() -> None:
    key = HmacKey(bytearray(b"k" * 16), "sha1", 12)
    first = key.mac(b"one")
    key.mac(b"two", b"three")
    assert key.mac(b"one") == first


def test_wiped_key_refuses() -> None:
    material = bytearray(b"k" * 16)
    key = HmacKey(material, "sha1", 12)
    key.wipe()
    assert material == bytearray(16)
    with pytest.raises(CryptoError):
        key.mac(b"data")
