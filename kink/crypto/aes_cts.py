"""AES in CBC mode with ciphertext stealing, RFC 3962 §5 (= NIST CBC-CS3), zero IV.

Every Kerberos operation KINK performs starts from the initial cipher state (all-zero IV,
RFC 3962 §6, RFC 8009 §5): KINK_ENCRYPT, the PRF and the key derivation each encrypt one
message on its own, so only the zero IV is offered.
"""

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from kink.crypto.errors import CryptoError

BLOCK = 16
_ZERO_IV = bytes(BLOCK)
# Bound once: read off `int`, a classmethod is looked up and bound anew at every call (~0.8 k
# instructions), and a KINK CREATE exchange converts about thirty blocks (issue 4).
_from_bytes = int.from_bytes


class AesCts:
    """One AES key, ready for CBC-CS3 encryption and decryption with a zero IV.

    Up to three OpenSSL contexts (CBC encrypt; CBC and ECB decrypt, built on the first
    decryption since a PRF key never decrypts) are built once and fed message after message:
    building a context costs several times more than encrypting a KINK-sized message. A CBC
    context carries its chaining value from one update() to the next, so each message's first
    block is xored with the previous message's last ciphertext block (`_enc_chain`,
    `_dec_chain`, kept as little-endian ints: the xor is one int operation), which is exactly
    CBC from the zero IV again. Because of that state, one AesCts must not be used from
    several threads at once.
    """

    __slots__ = ("_aes", "_cbc_dec", "_cbc_enc", "_dec_chain", "_ecb_dec", "_enc_chain", "_key")

    def __init__(self, key: bytearray) -> None:
        self._key = key
        self._aes: algorithms.AES | None = algorithms.AES(key)
        self._cbc_enc: CipherContext | None = Cipher(self._aes, modes.CBC(_ZERO_IV)).encryptor()
        self._cbc_dec: CipherContext | None = None
        self._ecb_dec: CipherContext | None = None
        # The last ciphertext block each CBC context has seen, as a little-endian int.
        self._enc_chain = 0
        self._dec_chain = 0

    def __repr__(self) -> str:
        return f"AesCts(aes{len(self._key) * 8})"

    def wipe(self) -> None:
        """Zero the key octets and drop the cipher contexts that were built from them."""
        self._key[:] = bytes(len(self._key))
        self._aes = None
        self._cbc_enc = None
        self._cbc_dec = None
        self._ecb_dec = None

    def encrypt(self, data: bytes) -> bytes:
        """CBC-CS3 encryption; `data` must be at least one block long."""
        cbc = self._cbc_enc
        if cbc is None:
            raise CryptoError("key has been wiped")
        n = len(data)
        if n < BLOCK:
            raise CryptoError(f"AES-CTS input is {n} octets, needs at least {BLOCK}")
        pad = -n % BLOCK
        # The whole message as one little-endian int: xoring the chaining value into it
        # changes its first block only, with one conversion each way and no slicing; and
        # written back `pad` octets longer, it ends in CBC-CS3's zero padding (the extra octets
        # of a little-endian int are its high-order zeros).
        out = cbc.update(
            (_from_bytes(data, "little") ^ self._enc_chain).to_bytes(n + pad, "little")
        )
        # RFC 3962 §5: CBC over the zero-padded input, then swap the last two blocks and drop
        # the padding's worth of the (now final) next-to-last block. One block is its own
        # output. Two blocks (the PRF's 20-octet hash, RFC 3962 §6) are the common case: their
        # last block is sliced once, for the output and the chaining value.
        if n == BLOCK:
            self._enc_chain = _from_bytes(out, "little")
            return out
        last = out[-BLOCK:]
        self._enc_chain = _from_bytes(last, "little")
        if n <= 2 * BLOCK:
            return last + out[: BLOCK - pad]
        return out[:-32] + last + out[-32 : -16 - pad]

    def decrypt(self, data: bytes) -> bytes:
        """CBC-CS3 decryption; `data` must be at least one block long."""
        cbc, ecb = self._cbc_dec, self._ecb_dec
        if cbc is None or ecb is None:
            if self._aes is None:
                raise CryptoError("key has been wiped")
            cbc = self._cbc_dec = Cipher(self._aes, modes.CBC(_ZERO_IV)).decryptor()
            ecb = self._ecb_dec = Cipher(self._aes, modes.ECB()).decryptor()
        n = len(data)
        if n < BLOCK:
            raise CryptoError(f"AES-CTS input is {n} octets, needs at least {BLOCK}")
        if n == BLOCK:
            return ecb.update(bytes(data))
        r = n - BLOCK * ((n - 1) // BLOCK)  # octets in the short final block, 1..16
        last_full = data[n - BLOCK - r : n - r]  # Cn, sent before the stolen block
        stolen = data[n - r :]  # the first r octets of C(n-1)
        # D(Cn) = C(n-1) xor (Pn | 0...): its tail completes C(n-1), its head gives Pn.
        d_last = ecb.update(last_full)
        chain = data[: n - BLOCK - r] + stolen + d_last[r:]  # C1 .. C(n-1)
        plain_last = (_from_bytes(d_last[:r], "little") ^ _from_bytes(stolen, "little")).to_bytes(
            r, "little"
        )
        # Plain CBC for the rest: Pi = D(Ci) xor C(i-1), C0 = IV = 0; the context chains from
        # the previous message's last block, which the first block's xor takes back out.
        out = cbc.update(chain)
        prev = self._dec_chain
        self._dec_chain = _from_bytes(chain[-BLOCK:], "little")
        # As in encrypt: one int for the whole output, whose first block the xor changes.
        return (_from_bytes(out, "little") ^ prev).to_bytes(len(out), "little") + plain_last
