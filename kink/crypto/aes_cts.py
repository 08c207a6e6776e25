"""AES in CBC mode with ciphertext stealing, RFC 3962 §5 (= NIST CBC-CS3), zero IV.

Every Kerberos operation KINK performs starts from the initial cipher state (all-zero IV,
RFC 3962 §6, RFC 8009 §5): KINK_ENCRYPT, the PRF and the key derivation each encrypt one
message on its own, so only the zero IV is offered.
"""

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from kink.crypto.errors import CryptoError

BLOCK = 16
_ZERO_IV = bytes(BLOCK)


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


class AesCts:
    """One AES key, ready for CBC-CS3 encryption and decryption with a zero IV.

    The cipher objects are built once and reused: building them costs about as much as the
    encryption itself for KINK-sized messages.
    """

    __slots__ = ("_cbc", "_ecb", "_key")

    def __init__(self, key: bytearray) -> None:
        self._key = key
        aes = algorithms.AES(key)
        self._cbc: Cipher[modes.CBC] | None = Cipher(aes, modes.CBC(_ZERO_IV))
        self._ecb: Cipher[modes.ECB] | None = Cipher(aes, modes.ECB())

    def __repr__(self) -> str:
        return f"AesCts(aes{len(self._key) * 8})"

    def wipe(self) -> None:
        """Zero the key octets and drop the cipher objects that were built from them."""
        self._key[:] = bytes(len(self._key))
        self._cbc = None
        self._ecb = None

    def encrypt(self, data: bytes) -> bytes:
        """CBC-CS3 encryption; `data` must be at least one block long."""
        if self._cbc is None:
            raise CryptoError("key has been wiped")
        n = len(data)
        if n < BLOCK:
            raise CryptoError(f"AES-CTS input is {n} octets, needs at least {BLOCK}")
        pad = -n % BLOCK
        out = self._cbc.encryptor().update(bytes(data) + bytes(pad))
        if n == BLOCK:
            return out
        # RFC 3962 §5: CBC over the zero-padded input, then swap the last two blocks and drop
        # the padding's worth of the (now final) next-to-last block.
        return out[:-32] + out[-16:] + out[-32 : -16 - pad]

    def decrypt(self, data: bytes) -> bytes:
        """CBC-CS3 decryption; `data` must be at least one block long."""
        if self._ecb is None:
            raise CryptoError("key has been wiped")
        n = len(data)
        if n < BLOCK:
            raise CryptoError(f"AES-CTS input is {n} octets, needs at least {BLOCK}")
        dec = self._ecb.decryptor()
        if n == BLOCK:
            return dec.update(bytes(data))
        r = n - BLOCK * ((n - 1) // BLOCK)  # octets in the short final block, 1..16
        head = bytes(data[: n - BLOCK - r])  # C1 .. C(n-2)
        last_full = bytes(data[n - BLOCK - r : n - r])  # Cn, sent before the stolen block
        stolen = bytes(data[n - r :])  # the first r octets of C(n-1)
        # D(Cn) = C(n-1) xor (Pn | 0...): its tail completes C(n-1), its head gives Pn.
        d_last = dec.update(last_full)
        chain = head + stolen + d_last[r:]
        plain_last = _xor(d_last[:r], stolen)
        # Plain CBC for the rest: Pi = D(Ci) xor C(i-1), C0 = IV = 0.
        return _xor(dec.update(chain), _ZERO_IV + chain[:-BLOCK]) + plain_last
