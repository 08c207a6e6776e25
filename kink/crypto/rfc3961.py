"""Kerberos encryption, checksum and PRF of a session key (RFC 3961 §3), as KINK uses them.

KINK_ENCRYPT is `encrypt(session key, 39, ...)`, the Cksum field is `checksum(session key, 40,
...)` with the enctype's required checksum, and KEYMAT uses `prf` (RFC 4430 §4, §4.2.7, §7, §8).
Only aes128/256-cts-hmac-sha1-96 (RFC 3962) and aes128-cts-hmac-sha256-128 /
aes256-cts-hmac-sha384-192 (RFC 8009) are accepted; everything else is UnsupportedEnctype.
"""

import hmac

from kink.crypto.aes_cts import BLOCK
from kink.crypto.entropy import random_bytes
from kink.crypto.errors import CryptoError
from kink.crypto.profiles import AesPrf, EncKeys, HmacKey, PrfKey, enctype_name, profile_for

__all__ = [
    "KEY_USAGE_KINK_CKSUM",
    "KEY_USAGE_KINK_ENCRYPT",
    "AesPrf",
    "Key",
    "checksum",
    "checksum_length",
    "decrypt",
    "encrypt",
    "enctype_name",
    "prf",
    "string_to_key",
    "verify_checksum",
]

KEY_USAGE_KINK_ENCRYPT = 39  # RFC 4430 §8: the KINK_ENCRYPT payload
KEY_USAGE_KINK_CKSUM = 40  # RFC 4430 §8: the Cksum field of the KINK header


class Key:
    """A Kerberos protocol key of a supported enctype.

    The key octets live in a bytearray; the keys derived from it (Kc, Ke, Ki per key usage and
    the PRF key) are computed on first use and kept, with their cipher and HMAC objects, so
    that repeated operations cost only the cipher and the hash. `zero()` overwrites all of them
    and makes the key unusable. (The copies OpenSSL keeps inside its cipher and HMAC contexts
    are beyond Python's reach; they are released with the objects.) The cipher contexts carry
    state from one operation to the next (see AesCts): a Key belongs to one thread at a time.
    """

    __slots__ = ("_checksum_keys", "_enc_keys", "_material", "_prf_key", "_profile")

    def __init__(self, enctype: int, material: bytes | bytearray) -> None:
        self._profile = profile_for(enctype)
        if len(material) != self._profile.key_size:
            raise CryptoError(
                f"{self._profile.name} key must be {self._profile.key_size} octets, "
                f"got {len(material)}"
            )
        self._material: bytearray | None = bytearray(material)
        self._enc_keys: dict[int, EncKeys] = {}
        self._checksum_keys: dict[int, HmacKey] = {}
        self._prf_key: PrfKey | None = None

    @property
    def enctype(self) -> int:
        return self._profile.enctype

    def __repr__(self) -> str:
        state = "" if self._material is not None else ", zeroed"
        return f"Key(enctype={self.enctype} ({self._profile.name}){state})"

    def zero(self) -> None:
        """Overwrite the key and every derived key; later operations raise CryptoError."""
        if self._material is not None:
            self._material[:] = bytes(len(self._material))
            self._material = None
        for enc in self._enc_keys.values():
            enc.wipe()
        for cksum in self._checksum_keys.values():
            cksum.wipe()
        if self._prf_key is not None:
            self._prf_key.wipe()
        self._enc_keys.clear()
        self._checksum_keys.clear()
        self._prf_key = None

    def _base(self) -> bytearray:
        if self._material is None:
            raise CryptoError("key has been zeroed")
        return self._material

    def _encryption(self, usage: int) -> EncKeys:
        keys = self._enc_keys.get(usage)
        if keys is None:
            keys = self._enc_keys[usage] = self._profile.enc_keys(self._base(), usage)
        return keys

    def _checksum(self, usage: int) -> HmacKey:
        key = self._checksum_keys.get(usage)
        if key is None:
            key = self._checksum_keys[usage] = self._profile.checksum_key(self._base(), usage)
        return key

    def _prf(self) -> PrfKey:
        if self._prf_key is None:
            self._prf_key = self._profile.prf_key(self._base())
        return self._prf_key


def encrypt(key: Key, usage: int, plaintext: bytes, *, confounder: bytes | None = None) -> bytes:
    """The enctype's encryption function (RFC 3961 §3) from the initial cipher state.

    `confounder` (16 octets) is for test vectors; by default it is random.
    """
    if confounder is None:
        # Single-use, public once sent: from the pooled OS CSPRNG (kink.crypto.entropy).
        confounder = random_bytes(BLOCK)
    elif len(confounder) != BLOCK:
        raise CryptoError(f"confounder must be {BLOCK} octets, got {len(confounder)}")
    # The cached keys read here, derived on a miss: a frame less per message (issue 4).
    keys = key._enc_keys.get(usage) or key._encryption(usage)
    return key._profile.encrypt(keys, confounder, plaintext)


def decrypt(key: Key, usage: int, ciphertext: bytes) -> bytes:
    """The enctype's decryption function; CryptoError if too short or the integrity check fails.

    RFC 4430 §4.2.7: the result may carry trailing padding after the last inner payload.
    """
    keys = key._enc_keys.get(usage) or key._encryption(usage)
    return key._profile.decrypt(keys, ciphertext)


def checksum(key: Key, usage: int, data: bytes) -> bytes:
    """The enctype's required keyed checksum (get_mic): hmac-sha1-96-aes128/256 (15, 16) for
    enctypes 17/18, hmac-sha256-128-aes128 (19) / hmac-sha384-192-aes256 (20) for 19/20."""
    return (key._checksum_keys.get(usage) or key._checksum(usage)).mac(data)


def verify_checksum(key: Key, usage: int, data: bytes, cksum: bytes) -> None:
    """verify_mic: CryptoError unless `cksum` is the checksum of `data` (constant-time compare)."""
    mac = key._checksum_keys.get(usage) or key._checksum(usage)
    if not hmac.compare_digest(mac.mac(data), cksum):
        raise CryptoError(f"{key._profile.name} checksum mismatch")


def checksum_length(enctype: int) -> int:
    """Octets of the required checksum of `enctype` (the KINK header's CksumLen)."""
    return profile_for(enctype).mac_size


def prf(key: Key, data: bytes, *, aes_prf: AesPrf = AesPrf.LITERAL) -> bytes:
    """The enctype's pseudo-random function (RFC 3961 §3): 20 or 16 octets for enctypes 17/18
    depending on `aes_prf` (see AesPrf), 32 for 19, 48 for 20 (RFC 8009 §5)."""
    return key._prf().prf(data, aes_prf)


def string_to_key(enctype: int, password: bytes, salt: bytes, params: bytes | None = None) -> Key:
    """RFC 3962 §4 / RFC 8009 §4; `params` is the 4-octet iteration count (default if None)."""
    profile = profile_for(enctype)
    material = profile.string_to_key(password, salt, params)
    key = Key(enctype, material)
    material[:] = bytes(len(material))
    return key
