"""aes*-cts-hmac-sha1-96: every vector of RFC 3962 App. B, and the encryption round trip."""

import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from kink.crypto.aes_cts import AesCts
from kink.crypto.errors import CryptoError
from kink.crypto.rfc3961 import Key, decrypt, encrypt, string_to_key
from tests.crypto.helpers import h, material

# (iterations, pass phrase, salt, PBKDF2 output (32 octets), 128-bit key, 256-bit key)
STRING_TO_KEY = [
    (
        1,
        b"password",
        b"ATHENA.MIT.EDUraeburn",
        "cd ed b5 28 1b b2 f8 01 56 5a 11 22 b2 56 35 15"
        "0a d1 f7 a0 4b b9 f3 a3 33 ec c0 e2 e1 f7 08 37",
        "42 26 3c 6e 89 f4 fc 28 b8 df 68 ee 09 79 9f 15",
        "fe 69 7b 52 bc 0d 3c e1 44 32 ba 03 6a 92 e6 5b"
        "bb 52 28 09 90 a2 fa 27 88 39 98 d7 2a f3 01 61",
    ),
    (
        2,
        b"password",
        b"ATHENA.MIT.EDUraeburn",
        "01 db ee 7f 4a 9e 24 3e 98 8b 62 c7 3c da 93 5d"
        "a0 53 78 b9 32 44 ec 8f 48 a9 9e 61 ad 79 9d 86",
        "c6 51 bf 29 e2 30 0a c2 7f a4 69 d6 93 bd da 13",
        "a2 e1 6d 16 b3 60 69 c1 35 d5 e9 d2 e2 5f 89 61"
        "02 68 56 18 b9 59 14 b4 67 c6 76 22 22 58 24 ff",
    ),
    (
        1200,
        b"password",
        b"ATHENA.MIT.EDUraeburn",
        "5c 08 eb 61 fd f7 1e 4e 4e c3 cf 6b a1 f5 51 2b"
        "a7 e5 2d db c5 e5 14 2f 70 8a 31 e2 e6 2b 1e 13",
        "4c 01 cd 46 d6 32 d0 1e 6d be 23 0a 01 ed 64 2a",
        "55 a6 ac 74 0a d1 7b 48 46 94 10 51 e1 e8 b0 a7"
        "54 8d 93 b0 ab 30 a8 bc 3f f1 62 80 38 2b 8c 2a",
    ),
    (
        5,
        b"password",
        h("1234567878563412"),
        "d1 da a7 86 15 f2 87 e6 a1 c8 b1 20 d7 06 2a 49"
        "3f 98 d2 03 e6 be 49 a6 ad f4 fa 57 4b 6e 64 ee",
        "e9 b2 3d 52 27 37 47 dd 5c 35 cb 55 be 61 9d 8e",
        "97 a4 e7 86 be 20 d8 1a 38 2d 5e bc 96 d5 90 9c"
        "ab cd ad c8 7c a4 8f 57 45 04 15 9f 16 c3 6e 31",
    ),
    (
        1200,
        b"X" * 64,
        b"pass phrase equals block size",
        "13 9c 30 c0 96 6b c3 2b a5 5f db f2 12 53 0a c9"
        "c5 ec 59 f1 a4 52 f5 cc 9a d9 40 fe a0 59 8e d1",
        "59 d1 bb 78 9a 82 8b 1a a5 4e f9 c2 88 3f 69 ed",
        "89 ad ee 36 08 db 8b c7 1f 1b fb fe 45 94 86 b0"
        "56 18 b7 0c ba e2 20 92 53 4e 56 c5 53 ba 4b 34",
    ),
    (
        1200,
        b"X" * 65,
        b"pass phrase exceeds block size",
        "9c ca d6 d4 68 77 0c d5 1b 10 e6 a6 87 21 be 61"
        "1a 8b 4d 28 26 01 db 3b 36 be 92 46 91 5e c8 2a",
        "cb 80 05 dc 5f 90 17 9a 7f 02 10 4c 00 18 75 1d",
        "d7 8c 5c 9c b8 72 a8 c9 da d4 69 7f 0b b5 b2 d2"
        "14 96 c8 2b eb 2c ae da 21 12 fc ee a0 57 40 1b",
    ),
    (
        50,
        h("f09d849e"),  # g-clef, U+1D11E
        b"EXAMPLE.COMpianist",
        "6b 9c f2 6d 45 45 5a 43 a5 b8 bb 27 6a 40 3b 39"
        "e7 fe 37 a0 c4 1e 02 c2 81 ff 30 69 e1 e9 4f 52",
        "f1 49 c1 f2 e1 54 a7 34 52 d4 3e 7f e6 2a 56 e5",
        "4b 6d 98 39 f8 44 06 df 1f 09 cc 16 6d b4 b8 3c"
        "57 18 48 b7 84 a3 d6 bd c3 46 58 9a 3e 39 3f 9e",
    ),
]


@pytest.mark.parametrize(
    ("iterations", "password", "salt", "pbkdf2", "key128", "key256"), STRING_TO_KEY
)
def test_string_to_key(
    iterations: int, password: bytes, salt: bytes, pbkdf2: str, key128: str, key256: str
) -> None:
    params = iterations.to_bytes(4, "big")
    # The PBKDF2 step alone (RFC 3962 §4), so a transcription error shows where it is.
    assert hashlib.pbkdf2_hmac("sha1", password, salt, iterations, 32) == h(pbkdf2)
    assert hashlib.pbkdf2_hmac("sha1", password, salt, iterations, 16) == h(pbkdf2)[:16]
    assert material(string_to_key(17, password, salt, params)) == h(key128)
    assert material(string_to_key(18, password, salt, params)) == h(key256)


def test_string_to_key_default_iterations_is_4096() -> None:
    salt = b"ATHENA.MIT.EDUraeburn"
    default = string_to_key(18, b"password", salt)
    assert material(default) == material(string_to_key(18, b"password", salt, h("00001000")))


CTS_KEY = h("63 68 69 63 6b 65 6e 20 74 65 72 69 79 61 6b 69")  # "chicken teriyaki"
CTS_INPUT = h(
    "49 20 77 6f 75 6c 64 20 6c 69 6b 65 20 74 68 65"
    "20 47 65 6e 65 72 61 6c 20 47 61 75 27 73 20 43"
    "68 69 63 6b 65 6e 2c 20 70 6c 65 61 73 65 2c 20"
    "61 6e 64 20 77 6f 6e 74 6f 6e 20 73 6f 75 70 2e"
)
# (input length, output), RFC 3962 App. B, all with a zero IV
CTS_VECTORS = [
    (17, "c6 35 35 68 f2 bf 8c b4 d8 a5 80 36 2d a7 ff 7f 97"),
    (
        31,
        "fc 00 78 3e 0e fd b2 c1 d4 45 d4 c8 ef f7 ed 22"
        "97 68 72 68 d6 ec cc c0 c0 7b 25 e2 5e cf e5",
    ),
    (
        32,
        "39 31 25 23 a7 86 62 d5 be 7f cb cc 98 eb f5 a8"
        "97 68 72 68 d6 ec cc c0 c0 7b 25 e2 5e cf e5 84",
    ),
    (
        47,
        "97 68 72 68 d6 ec cc c0 c0 7b 25 e2 5e cf e5 84"
        "b3 ff fd 94 0c 16 a1 8c 1b 55 49 d2 f8 38 02 9e"
        "39 31 25 23 a7 86 62 d5 be 7f cb cc 98 eb f5",
    ),
    (
        48,
        "97 68 72 68 d6 ec cc c0 c0 7b 25 e2 5e cf e5 84"
        "9d ad 8b bb 96 c4 cd c0 3b c1 03 e1 a1 94 bb d8"
        "39 31 25 23 a7 86 62 d5 be 7f cb cc 98 eb f5 a8",
    ),
    (
        64,
        "97 68 72 68 d6 ec cc c0 c0 7b 25 e2 5e cf e5 84"
        "39 31 25 23 a7 86 62 d5 be 7f cb cc 98 eb f5 a8"
        "48 07 ef e8 36 ee 89 a5 26 73 0d bc 2f 7b c8 40"
        "9d ad 8b bb 96 c4 cd c0 3b c1 03 e1 a1 94 bb d8",
    ),
]


@pytest.mark.parametrize(("length", "output"), CTS_VECTORS)
def test_aes_cts_vectors(length: int, output: str) -> None:
    cipher = AesCts(bytearray(CTS_KEY))
    assert cipher.encrypt(CTS_INPUT[:length]) == h(output)
    assert cipher.decrypt(h(output)) == CTS_INPUT[:length]


def test_aes_cts_single_block_is_plain_aes() -> None:
    # RFC 3962 §5: one block is encrypted as in plain CBC, i.e. AES of the block (zero IV).
    cipher = AesCts(bytearray(CTS_KEY))
    block = CTS_INPUT[:16]
    aes = Cipher(algorithms.AES(CTS_KEY), modes.ECB()).encryptor().update(block)
    assert cipher.encrypt(block) == aes
    assert cipher.decrypt(aes) == block


def test_aes_cts_refuses_short_input_and_wiped_key() -> None:
    cipher = AesCts(bytearray(CTS_KEY))
    with pytest.raises(CryptoError):
        cipher.encrypt(b"\0" * 15)
    with pytest.raises(CryptoError):
        cipher.decrypt(b"\0" * 15)
    cipher.wipe()
    with pytest.raises(CryptoError):
        cipher.encrypt(CTS_INPUT)


@pytest.mark.parametrize("enctype", [17, 18])
@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 31, 32, 33, 200])
def test_round_trip(enctype: int, length: int) -> None:
    key = Key(enctype, bytes(range(16 if enctype == 17 else 32)))
    plaintext = bytes(range(length))
    ciphertext = encrypt(key, 39, plaintext)
    assert len(ciphertext) == 16 + length + 12  # confounder + plaintext + HMAC-SHA1-96
    assert decrypt(key, 39, ciphertext) == plaintext


def test_aes_cts_reused_cipher_matches_a_fresh_one() -> None:
    # AesCts keeps its CBC contexts between messages and restarts the chain itself; every
    # message, whatever came before it on the same object, must be CBC-CS3 from the zero IV.
    reused = AesCts(bytearray(CTS_KEY))
    lengths = [17, 16, 64, 31, 32, 47, 16, 33, 200, 17, 48, 20]
    for length in lengths:
        data = bytes((length + i) & 0xFF for i in range(length))
        expected = AesCts(bytearray(CTS_KEY)).encrypt(data)
        assert reused.encrypt(data) == expected
        assert AesCts(bytearray(CTS_KEY)).decrypt(expected) == data
    for length in reversed(lengths):
        data = bytes((length * 7 + i) & 0xFF for i in range(length))
        ciphertext = AesCts(bytearray(CTS_KEY)).encrypt(data)
        assert reused.decrypt(ciphertext) == data
        assert reused.encrypt(data) == ciphertext
