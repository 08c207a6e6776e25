"""kink.crypto against MIT libk5crypto (krb5_c_*) on random keys and inputs, all 4 enctypes."""

import random
from collections.abc import Iterator

import pytest

from kink.crypto.rfc3961 import AesPrf, Key, checksum, decrypt, encrypt, prf
from tests.crypto.mit_k5crypto import MitError, MitK5Crypto

# enctype -> (key octets, its required checksum type: RFC 3962 §7, RFC 8009 §7)
ENCTYPES = {17: (16, 15), 18: (32, 16), 19: (16, 19), 20: (32, 20)}
# KINK's usages, plus others that exercise other derived keys
USAGES = [39, 40, 1, 2, 12, 1023]
# Around every block boundary, and KINK-sized messages
LENGTHS = [*range(0, 50), 200, 850, 1500]


def cases(enctype: int) -> Iterator[tuple[bytes, int, bytes]]:
    rng = random.Random(f"kink-mit-{enctype}")  # reproducible
    size = ENCTYPES[enctype][0]
    for i, length in enumerate(LENGTHS):
        yield rng.randbytes(size), USAGES[i % len(USAGES)], rng.randbytes(length)


@pytest.mark.parametrize("enctype", sorted(ENCTYPES))
def test_mit_decrypts_ours_and_we_decrypt_mits(mit: MitK5Crypto, enctype: int) -> None:
    for raw, usage, plaintext in cases(enctype):
        key = Key(enctype, raw)
        assert mit.decrypt(enctype, raw, usage, encrypt(key, usage, plaintext)) == plaintext
        theirs = mit.encrypt(enctype, raw, usage, plaintext)
        assert decrypt(key, usage, theirs) == plaintext
        tampered = bytearray(theirs)
        tampered[-1] ^= 0x80
        with pytest.raises(MitError):
            mit.decrypt(enctype, raw, usage, bytes(tampered))


@pytest.mark.parametrize("enctype", sorted(ENCTYPES))
def test_checksums_equal(mit: MitK5Crypto, enctype: int) -> None:
    cksumtype = ENCTYPES[enctype][1]
    for raw, usage, data in cases(enctype):
        assert checksum(Key(enctype, raw), usage, data) == mit.make_checksum(
            cksumtype, enctype, raw, usage, data
        )


@pytest.mark.parametrize("enctype", sorted(ENCTYPES))
def test_truncated_prf_is_krb5_c_prf(mit: MitK5Crypto, enctype: int) -> None:
    for raw, _usage, data in cases(enctype):
        key = Key(enctype, raw)
        assert prf(key, data, aes_prf=AesPrf.TRUNCATED) == mit.prf(enctype, raw, data)


@pytest.mark.parametrize("enctype", [17, 18])
def test_literal_prf_is_not_krb5_c_prf(mit: MitK5Crypto, enctype: int) -> None:
    # The two readings of RFC 3962 §6 (see AesPrf): 20 octets versus MIT's 16.
    for raw, _usage, data in cases(enctype):
        literal = prf(Key(enctype, raw), data)
        assert len(literal) == 20
        assert literal[:16] != mit.prf(enctype, raw, data)
