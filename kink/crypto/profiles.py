"""The enctypes KINK uses: aes*-cts-hmac-sha1-96 (RFC 3962) and aes*-cts-hmac-sha2 (RFC 8009).

Both encrypt with AES-CBC-CS3 behind a 16-octet confounder and key each operation with keys
derived per key usage (Kc checksum, Ke encryption, Ki integrity; RFC 3961 §5.3, RFC 8009 §5).
They differ in how keys are derived, what the integrity HMAC covers, the PRF and string-to-key.
Every other enctype is refused with the reason (`profile_for`).
"""

import functools
import hashlib
import hmac
from abc import ABC, abstractmethod
from enum import Enum
from typing import Any, Final, Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from kink.crypto.aes_cts import BLOCK, AesCts
from kink.crypto.errors import CryptoError, UnsupportedEnctype
from kink.crypto.nfold import nfold

# Key usage suffixes: Kc = usage | 0x99, Ke = usage | 0xAA, Ki = usage | 0x55
# (RFC 3961 §5.3, RFC 8009 §5).
KC = 0x99
KE = 0xAA
KI = 0x55

_ZERO_IV = bytes(BLOCK)
_MAX_USAGE = 0xFFFFFFFF  # a key usage is sent to the KDF as 4 octets, big-endian


class AesPrf(Enum):
    """How to read the RFC 3962 §6 PRF for aes*-cts-hmac-sha1-96 (enctypes 17 and 18).

    RFC 3962 §6 sets the message block size to one octet, so the literal reading encrypts all
    20 octets of SHA-1(input) with AES-CTS and yields 20 octets; racoon2's kinkd does this,
    and every ESP key in its captures matches it. MIT krb5_c_prf and Heimdal truncate the hash
    to one AES block and yield 16 octets. RFC 8009 enctypes have one PRF and ignore this.
    """

    LITERAL = "literal"
    TRUNCATED = "truncated"


# Read off its class, an enum member goes through EnumType's __getattr__ hook on Python 3.11
# (~0.9 k instructions, a global ~0.1 k): the PRF checks it at every SA (issue 4).
_TRUNCATED: Final = AesPrf.TRUNCATED


class HmacKey:
    """An HMAC key (RFC 2104) with its inner and outer hash states keyed once; `mac` copies
    them per message.

    HMAC(K, m) = H((K ^ opad) | H((K ^ ipad) | m)), K padded with zeros to the hash's block
    (hashed first if longer). Written out over hashlib rather than through hmac.HMAC, whose
    Python wrapper costs ~0.4 us more per message (copy, update, digest): a KINK message
    takes four (Cksum and KINK_ENCRYPT integrity, on each side), eight per CREATE exchange
    (issue 4).
    """

    __slots__ = ("_inner", "_key", "_outer", "_size")

    def __init__(self, key: bytearray, hash_name: str, size: int) -> None:
        self._key = key
        inner, outer = hashlib.new(hash_name), hashlib.new(hash_name)
        block = inner.block_size
        padded = bytearray(hashlib.new(hash_name, key).digest() if len(key) > block else key)
        padded.extend(bytes(block - len(padded)))
        pad = bytearray(b ^ 0x36 for b in padded)
        inner.update(pad)
        pad[:] = bytes(b ^ 0x5C for b in padded)
        outer.update(pad)
        # The padded key and its pads are key material: zeroed, not left to the allocator.
        pad[:] = bytes(block)
        padded[:] = bytes(block)
        self._inner: Any = inner
        self._outer: Any = outer
        self._size = size

    def __repr__(self) -> str:
        return f"HmacKey({len(self._key)} octets, {self._size}-octet output)"

    def mac(self, *parts: bytes) -> bytes:
        """HMAC over the concatenation of `parts`, truncated to the profile's length."""
        inner = self._inner
        if inner is None:
            raise CryptoError("key has been wiped")
        h = inner.copy()
        for part in parts:
            h.update(part)
        o = self._outer.copy()
        o.update(h.digest())
        digest: bytes = o.digest()
        return digest[: self._size]

    def wipe(self) -> None:
        self._key[:] = bytes(len(self._key))
        self._inner = self._outer = None


class EncKeys:
    """Ke (as an AES-CTS cipher) and Ki for one key usage."""

    __slots__ = ("cipher", "integrity")

    def __init__(self, cipher: AesCts, integrity: HmacKey) -> None:
        self.cipher = cipher
        self.integrity = integrity

    def __repr__(self) -> str:
        return "EncKeys(...)"

    def wipe(self) -> None:
        self.cipher.wipe()
        self.integrity.wipe()


class PrfKey(Protocol):
    """The PRF of one base key, with whatever key it needs already derived."""

    def prf(self, data: bytes, aes_prf: AesPrf) -> bytes: ...

    def expand(self, src: bytes, length: int, aes_prf: AesPrf) -> bytearray:
        """`length` octets of RFC 2409 §5.5 expansion: K1 = prf(src), Kn = prf(K(n-1) | src)."""
        ...

    def wipe(self) -> None: ...


def _usage_constant(usage: int, kind: int) -> bytes:
    if not 0 <= usage <= _MAX_USAGE:
        raise CryptoError(f"key usage {usage} is out of range (0..{_MAX_USAGE})")
    return usage.to_bytes(4, "big") + bytes((kind,))


class Profile(ABC):
    """One enctype: its sizes and the RFC 3961 operations on top of the derived keys."""

    name: str
    key_size: int  # octets of the protocol key
    mac_size: int  # octets of the truncated HMAC (integrity and checksum)
    hash_name: str
    default_iterations: int  # string-to-key default (RFC 3962 §4, RFC 8009 §4)

    def __init__(self, enctype: int) -> None:
        self.enctype = enctype

    @abstractmethod
    def derive(self, base: bytes | bytearray, usage: int, kind: int) -> bytearray:
        """The derived key Kc, Ke or Ki (`kind` = KC, KE, KI) of `base` for `usage`."""

    @abstractmethod
    def encrypt(self, keys: EncKeys, confounder: bytes, plaintext: bytes) -> bytes: ...

    @abstractmethod
    def decrypt(self, keys: EncKeys, ciphertext: bytes) -> bytes:
        """The plaintext without the confounder; CryptoError if the integrity check fails."""

    @abstractmethod
    def prf_key(self, base: bytes | bytearray) -> PrfKey: ...

    @abstractmethod
    def _string_to_key(self, password: bytes, salt: bytes, iterations: int) -> bytearray: ...

    def enc_keys(self, base: bytes | bytearray, usage: int) -> EncKeys:
        return EncKeys(
            AesCts(self.derive(base, usage, KE)),
            HmacKey(self.derive(base, usage, KI), self.hash_name, self.mac_size),
        )

    def checksum_key(self, base: bytes | bytearray, usage: int) -> HmacKey:
        return HmacKey(self.derive(base, usage, KC), self.hash_name, self.mac_size)

    def string_to_key(self, password: bytes, salt: bytes, params: bytes | None) -> bytearray:
        """RFC 3962 §4 / RFC 8009 §4; `params` is the iteration count, 4 octets big-endian."""
        if params is None:
            iterations = self.default_iterations
        elif len(params) == 4:
            iterations = int.from_bytes(params, "big")
        else:
            raise CryptoError(f"{self.name} string-to-key parameters must be 4 octets")
        if iterations == 0:
            raise CryptoError(f"{self.name} string-to-key iteration count must not be 0")
        return self._string_to_key(password, salt, iterations)

    def _split(self, ciphertext: bytes) -> tuple[bytes, bytes]:
        if len(ciphertext) < BLOCK + self.mac_size:
            raise CryptoError(
                f"{self.name} ciphertext is {len(ciphertext)} octets, "
                f"shorter than confounder and HMAC ({BLOCK + self.mac_size})"
            )
        return ciphertext[: -self.mac_size], ciphertext[-self.mac_size :]


class _CtsPrfKey:
    """RFC 3962 §6: PRF = E(DK(key, "prf"), SHA-1(input)), E being AES-CTS from a zero IV."""

    __slots__ = ("_cipher",)

    def __init__(self, cipher: AesCts) -> None:
        self._cipher = cipher

    def prf(self, data: bytes, aes_prf: AesPrf) -> bytes:
        digest = hashlib.sha1(data).digest()
        if aes_prf is _TRUNCATED:
            # MIT/Heimdal: truncate the hash to whole cipher blocks (one), 16 octets out.
            digest = digest[:BLOCK]
        return self._cipher.encrypt(digest)

    def expand(self, src: bytes, length: int, aes_prf: AesPrf) -> bytearray:
        # prf() written out with the cipher and hash bound once: every SA takes two or more
        # PRFs, four SAs per CREATE exchange (issue 4).
        encrypt = self._cipher.encrypt
        sha1 = hashlib.sha1
        size = BLOCK if aes_prf is _TRUNCATED else 20  # see prf(); SHA-1 has 20 octets
        out = bytearray(length)  # sized once: no reallocation leaves key copies behind
        block = encrypt(sha1(src).digest()[:size])  # K1
        out[:size] = block[:length]
        for filled in range(size, length, size):  # K2, K3, ...
            block = encrypt(sha1(block + src).digest()[:size])
            out[filled : filled + size] = block[: length - filled]
        return out

    def wipe(self) -> None:
        self._cipher.wipe()


@functools.lru_cache(maxsize=64)
def _folded(constant: bytes) -> bytes:
    # The same few constants (usages 39/40 with 0x99/0xAA/0x55, "prf", "kerberos") recur for
    # every new session key; n-folding them is the costly part of the derivation.
    return nfold(constant, BLOCK)


class Rfc3962Profile(Profile):
    """aes128-cts-hmac-sha1-96 (17) and aes256-cts-hmac-sha1-96 (18): RFC 3962, RFC 3961 §5.3."""

    mac_size = 12
    hash_name = "sha1"
    default_iterations = 4096

    def __init__(self, enctype: int, name: str, key_size: int) -> None:
        super().__init__(enctype)
        self.name = name
        self.key_size = key_size

    def _dk(self, base: bytes | bytearray, constant: bytes) -> bytearray:
        # RFC 3961 §5.1: DK(key, c) = random-to-key(DR(key, c)), DR = E(key, n-fold(c)) chained
        # until key-size octets; random-to-key is the identity for AES (RFC 3962 §6). E of one
        # block from the zero IV is plain AES of that block.
        aes = Cipher(algorithms.AES(base), modes.ECB()).encryptor()
        block = _folded(constant)
        out = bytearray(self.key_size)  # AES key sizes are whole blocks
        for offset in range(0, self.key_size, BLOCK):
            block = aes.update(block)
            out[offset : offset + BLOCK] = block
        return out

    def derive(self, base: bytes | bytearray, usage: int, kind: int) -> bytearray:
        return self._dk(base, _usage_constant(usage, kind))

    def encrypt(self, keys: EncKeys, confounder: bytes, plaintext: bytes) -> bytes:
        # RFC 3961 §5.3: C = E(Ke, conf | msg), H = HMAC(Ki, conf | msg) truncated to 96 bits;
        # CTS needs no padding (message block size 1, RFC 3962 §6).
        data = confounder + plaintext
        return keys.cipher.encrypt(data) + keys.integrity.mac(data)

    def decrypt(self, keys: EncKeys, ciphertext: bytes) -> bytes:
        body, mac = self._split(ciphertext)
        data = keys.cipher.decrypt(body)
        if not hmac.compare_digest(keys.integrity.mac(data), mac):
            raise CryptoError(f"{self.name} integrity check failed")
        return data[BLOCK:]

    def prf_key(self, base: bytes | bytearray) -> PrfKey:
        return _CtsPrfKey(AesCts(self._dk(base, b"prf")))

    def _string_to_key(self, password: bytes, salt: bytes, iterations: int) -> bytearray:
        tkey = hashlib.pbkdf2_hmac("sha1", password, salt, iterations, self.key_size)
        return self._dk(tkey, b"kerberos")


def _kdf_hmac_sha2(
    key: bytes | bytearray, hash_name: str, label: bytes, bits: int, context: bytes = b""
) -> bytes:
    # RFC 8009 §3: SP 800-108 counter mode, one iteration: HMAC(key, 1 | label | 0 | context | k).
    msg = b"\x00\x00\x00\x01" + label + b"\x00" + context + bits.to_bytes(4, "big")
    return hmac.digest(key, msg, hash_name)[: bits // 8]


class _KdfPrfKey:
    """RFC 8009 §5: PRF = KDF-HMAC-SHA2(base key, "prf", input, 256 or 384)."""

    __slots__ = ("_bits", "_hmac")

    def __init__(self, key: HmacKey, bits: int) -> None:
        self._hmac = key
        self._bits = bits.to_bytes(4, "big")

    def prf(self, data: bytes, aes_prf: AesPrf) -> bytes:
        return self._hmac.mac(b"\x00\x00\x00\x01prf\x00", data, self._bits)

    def expand(self, src: bytes, length: int, aes_prf: AesPrf) -> bytearray:
        mac, bits = self._hmac.mac, self._bits
        out = bytearray(length)
        block = b""
        filled = 0
        while filled < length:
            block = mac(b"\x00\x00\x00\x01prf\x00", block + src, bits)
            out[filled : filled + len(block)] = block[: length - filled]
            filled += len(block)
        return out

    def wipe(self) -> None:
        self._hmac.wipe()


class Rfc8009Profile(Profile):
    """aes128-cts-hmac-sha256-128 (19) and aes256-cts-hmac-sha384-192 (20): RFC 8009."""

    default_iterations = 32768

    def __init__(
        self, enctype: int, name: str, key_size: int, mac_size: int, hash_name: str
    ) -> None:
        super().__init__(enctype)
        self.name = name
        self.key_size = key_size
        self.mac_size = mac_size
        self.hash_name = hash_name
        self._prf_bits = hashlib.new(hash_name).digest_size * 8  # 256 or 384, RFC 8009 §5

    def derive(self, base: bytes | bytearray, usage: int, kind: int) -> bytearray:
        # RFC 8009 §5: Ke is key-size long, Kc and Ki are as long as the truncated HMAC.
        bits = (self.key_size if kind == KE else self.mac_size) * 8
        label = _usage_constant(usage, kind)
        return bytearray(_kdf_hmac_sha2(base, self.hash_name, label, bits))

    def encrypt(self, keys: EncKeys, confounder: bytes, plaintext: bytes) -> bytes:
        # RFC 8009 §5: C = E(Ke, N | plaintext, IV), H = HMAC(Ki, IV | C); IV is the initial
        # (all-zero) cipher state.
        body = keys.cipher.encrypt(confounder + plaintext)
        return body + keys.integrity.mac(_ZERO_IV, body)

    def decrypt(self, keys: EncKeys, ciphertext: bytes) -> bytes:
        body, mac = self._split(ciphertext)
        # RFC 8009 §5: verify before decrypting.
        if not hmac.compare_digest(keys.integrity.mac(_ZERO_IV, body), mac):
            raise CryptoError(f"{self.name} integrity check failed")
        return keys.cipher.decrypt(body)[BLOCK:]

    def prf_key(self, base: bytes | bytearray) -> PrfKey:
        key = HmacKey(bytearray(base), self.hash_name, self._prf_bits // 8)
        return _KdfPrfKey(key, self._prf_bits)

    def _string_to_key(self, password: bytes, salt: bytes, iterations: int) -> bytearray:
        # RFC 8009 §4: the enctype name salts the salt, then the KDF derives the base key.
        saltp = self.name.encode() + b"\x00" + salt
        tkey = hashlib.pbkdf2_hmac(self.hash_name, password, saltp, iterations, self.key_size)
        return bytearray(_kdf_hmac_sha2(tkey, self.hash_name, b"kerberos", self.key_size * 8))


_PROFILES: dict[int, Profile] = {
    17: Rfc3962Profile(17, "aes128-cts-hmac-sha1-96", 16),
    18: Rfc3962Profile(18, "aes256-cts-hmac-sha1-96", 32),
    19: Rfc8009Profile(19, "aes128-cts-hmac-sha256-128", 16, 16, "sha256"),
    20: Rfc8009Profile(20, "aes256-cts-hmac-sha384-192", 32, 24, "sha384"),
}

_DES = "single DES is broken (RFC 6649)"
_DES3 = "triple DES is deprecated (RFC 8429)"
_RC4 = "RC4 is deprecated (RFC 8429)"
# Enctypes that are known but refused, with why (IANA Kerberos Encryption Type Numbers).
_REFUSED: dict[int, tuple[str, str]] = {
    1: ("des-cbc-crc", _DES),
    2: ("des-cbc-md4", _DES),
    3: ("des-cbc-md5", _DES),
    5: ("des3-cbc-md5", _DES3),
    7: ("des3-cbc-sha1", _DES3),
    16: ("des3-cbc-sha1-kd", _DES3),
    23: ("rc4-hmac", _RC4),
    24: ("rc4-hmac-exp", _RC4),
    25: ("camellia128-cts-cmac", "Camellia is not implemented"),
    26: ("camellia256-cts-cmac", "Camellia is not implemented"),
}


def enctype_name(enctype: int) -> str:
    """The IANA name of an enctype, or "unknown"."""
    if enctype in _PROFILES:
        return _PROFILES[enctype].name
    if enctype in _REFUSED:
        return _REFUSED[enctype][0]
    return "unknown"


def profile_for(enctype: int) -> Profile:
    """The profile of a supported enctype; UnsupportedEnctype (with the reason) otherwise."""
    profile = _PROFILES.get(enctype)
    if profile is not None:
        return profile
    why = f" ({_REFUSED[enctype][1]})" if enctype in _REFUSED else ""
    raise UnsupportedEnctype(
        f"enctype {enctype} ({enctype_name(enctype)}) is not supported: "
        f"KINK needs aes*-cts-hmac-*{why}"
    )
