"""Diffie-Hellman over the IKE MODP groups, for the optional KE payloads (RFC 4430 §5.7).

With KE payloads, KEYMAT also covers g(qm)^xy (RFC 2409 §5.5, RFC 4430 §7). Groups 2 (RFC 2409
§6.2) and 5, 14, 15, 16 (RFC 3526) are offered, all with generator 2; group 1 (768 bits) is not.
Public values and the shared secret are big-endian and left-padded with zeros to the length of
the prime (RFC 2409 §5).
"""

import functools
import warnings

from cryptography.hazmat.primitives.asymmetric import dh
from cryptography.utils import CryptographyDeprecationWarning

from kink.crypto.errors import CryptoError, UnsupportedGroup
from kink.wire.ipsec_doi import GroupDescription

GENERATOR = 2

# cryptography 50 deprecated finite-field DH (pyca/cryptography#15171): looking up its classes
# warns. The groups KINK's KE payload names here are MODP groups, finite-field DH by definition,
# so the two classes are looked up once, at import, with that warning silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    _ParameterNumbers = dh.DHParameterNumbers
    _Parameters = dh.DHParameters
    _PublicNumbers = dh.DHPublicNumbers

# RFC 2409 §6.2, group 2: 2^1024 - 2^960 - 1 + 2^64 * {[2^894 pi] + k}
_MODP_1024 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381"
    "FFFFFFFFFFFFFFFF",
    16,
)

# RFC 3526 §2, group 5: 2^1536 - 2^1472 - 1 + 2^64 * {[2^1406 pi] + k}
_MODP_1536 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D"
    "670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF",
    16,
)

# RFC 3526 §3, group 14: 2^2048 - 2^1984 - 1 + 2^64 * {[2^1918 pi] + k}
_MODP_2048 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D"
    "670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9"
    "DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)

# RFC 3526 §4, group 15: 2^3072 - 2^3008 - 1 + 2^64 * {[2^2942 pi] + k}
_MODP_3072 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D"
    "670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9"
    "DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64"
    "ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6B"
    "F12FFA06D98A0864D87602733EC86A64521F2B18177B200C"
    "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB31"
    "43DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    16,
)

# RFC 3526 §5, group 16: 2^4096 - 2^4032 - 1 + 2^64 * {[2^3966 pi] + k}
_MODP_4096 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D"
    "670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9"
    "DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64"
    "ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6B"
    "F12FFA06D98A0864D87602733EC86A64521F2B18177B200C"
    "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB31"
    "43DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA"
    "2583E9CA2AD44CE8DBBBC2DB04DE8EF92E8EFC141FBECAA6"
    "287C59474E6BC05D99B2964FA090C3A2233BA186515BE7ED"
    "1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199"
    "FFFFFFFFFFFFFFFF",
    16,
)

PRIMES: dict[int, int] = {
    GroupDescription.MODP_1024: _MODP_1024,
    GroupDescription.MODP_1536: _MODP_1536,
    GroupDescription.MODP_2048: _MODP_2048,
    GroupDescription.MODP_3072: _MODP_3072,
    GroupDescription.MODP_4096: _MODP_4096,
}


@functools.cache
def _parameters(group: int) -> _Parameters:
    # OpenSSL checks parameters it does not know as named groups (group 2 takes ~40 ms): build
    # them once per group; they are immutable and shared by every exchange.
    return _ParameterNumbers(PRIMES[group], GENERATOR).parameters()


class DhExchange:
    """One side of a Diffie-Hellman exchange in a MODP group; the private key stays inside."""

    __slots__ = ("_group", "_length", "_numbers", "_prime", "_private")

    def __init__(self, group: int) -> None:
        prime = PRIMES.get(group)
        if prime is None:
            offered = ", ".join(str(g) for g in PRIMES)
            raise UnsupportedGroup(f"Diffie-Hellman group {group} is not offered ({offered} are)")
        self._group = group
        self._prime = prime
        self._length = (prime.bit_length() + 7) // 8
        parameters = _parameters(group)
        self._numbers = parameters.parameter_numbers()
        self._private = parameters.generate_private_key()

    def __repr__(self) -> str:
        return f"DhExchange(group={self._group})"

    @property
    def group(self) -> int:
        return self._group

    def public_bytes(self) -> bytes:
        """g^x mod p, the KE payload's Key Exchange Data (RFC 2409 §5)."""
        y = self._private.public_key().public_numbers().y
        return y.to_bytes(self._length, "big")

    def shared_secret(self, peer_public: bytes) -> bytes:
        """g^xy mod p from the peer's KE data; CryptoError for a malformed or degenerate value."""
        if len(peer_public) != self._length:
            raise CryptoError(
                f"group {self._group} public value must be {self._length} octets, "
                f"got {len(peer_public)}"
            )
        y = int.from_bytes(peer_public, "big")
        # 0, 1 and p-1 (and anything >= p) would force the secret into a tiny set.
        if not 1 < y < self._prime - 1:
            raise CryptoError(f"group {self._group} public value is out of range (1, p-1)")
        try:
            peer = _PublicNumbers(y, self._numbers).public_key()
            secret = self._private.exchange(peer)
        except ValueError as exc:
            raise CryptoError(f"group {self._group} key exchange failed: {exc}") from None
        return secret.rjust(self._length, b"\x00")
