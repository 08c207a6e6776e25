"""KEYMAT for one IPsec SA from the Kerberos session key (RFC 4430 §7, RFC 2409 §5.5).

    KEYMAT = prf(Ksess, [g(qm)^xy |] protocol | SPI | Ni_b [| Nr_b])

prf is the RFC 3961 PRF of the session key's enctype, SKEYID_d is the ticket session key
(never a subkey), Nr_b is left out when the REPLY carries no nonce (RFC 4430 §7), and KEYMAT is
expanded as in RFC 2409 §5.5: K1 = prf(Ksess, src), Kn = prf(Ksess, K(n-1) | src).
"""

from collections.abc import Callable

from kink.crypto.errors import CryptoError
from kink.crypto.profiles import AesPrf
from kink.crypto.rfc3961 import Key

SPI_LENGTH = 4  # an IPsec SPI in the ISAKMP SA payload, RFC 2407 §4.6.1
MAX_KEYMAT = 1024  # far above any transform's need (AES-256 + HMAC-SHA-512 is 96 octets)
_OCTETS = tuple(bytes((n,)) for n in range(256))  # the protocol octet, built once (issue 4)


def keymat(
    key: Key,
    protocol: int,
    spi: bytes,
    ni: bytes,
    nr: bytes | None = None,
    gxy: bytes | None = None,
    *,
    length: int,
    aes_prf: AesPrf = AesPrf.LITERAL,
) -> bytearray:
    """`length` octets of KEYMAT for the SA with this protocol id and (inbound) SPI.

    `ni`/`nr` are the nonce payload bodies (Ni_b/Nr_b), `gxy` the shared Diffie-Hellman secret
    when KE payloads were exchanged. `aes_prf` picks the PRF reading for aes*-sha1 session keys
    (AesPrf.LITERAL interoperates with racoon2).
    """
    check_keymat_request(protocol, spi, length)
    whole, _ = SaKeymat(key, ni, nr, gxy, aes_prf).keys(protocol, spi, length, 0)
    return whole


def check_keymat_request(protocol: int, spi: bytes, length: int) -> None:
    """CryptoError unless `protocol` fits its octet, `spi` has 4 octets and `length` is
    within 1..MAX_KEYMAT."""
    if not 0 <= protocol <= 0xFF:
        raise CryptoError(f"protocol id {protocol} does not fit one octet")
    if len(spi) != SPI_LENGTH:
        raise CryptoError(f"SPI must be {SPI_LENGTH} octets, got {len(spi)}")
    if not 0 < length <= MAX_KEYMAT:
        raise CryptoError(f"KEYMAT length {length} is out of range (1..{MAX_KEYMAT})")


class SaKeymat:
    """KEYMAT for the SAs of one negotiation: everything but protocol and SPI is shared by
    them (RFC 4430 §7), so g^xy and Ni_b | Nr_b are joined once and the session key's PRF is
    fetched once, at the first SA. The caller vouches for the inputs check_keymat_request
    checks (a negotiated protocol, a 4-octet SPI, the transform's KEYMAT length)."""

    __slots__ = ("_aes_prf", "_expand", "_head", "_key", "_tail")

    def __init__(
        self, key: Key, ni: bytes, nr: bytes | None, gxy: bytes | None, aes_prf: AesPrf
    ) -> None:
        self._key = key
        self._head = gxy or b""
        self._tail = ni + nr if nr else ni
        self._aes_prf = aes_prf
        self._expand: Callable[[bytes, int, AesPrf], bytearray] | None = None

    def __repr__(self) -> str:
        return "SaKeymat(...)"

    def keys(
        self, protocol: int, spi: bytes, enc_length: int, auth_length: int
    ) -> tuple[bytearray, bytearray]:
        """KEYMAT for the SA with this protocol id and (inbound) SPI, split into the
        encryption key (the first `enc_length` octets) and the authentication key (the
        `auth_length` after them), the order of kink.crypto.algorithms; the whole KEYMAT is
        zeroed once split."""
        expand = self._expand
        if expand is None:
            # Fetched here rather than in __init__: a zeroed key raises where keymat() did.
            expand = self._expand = self._key._prf().expand
        src = b"".join((self._head, _OCTETS[protocol], spi, self._tail))
        material = expand(src, enc_length + auth_length, self._aes_prf)
        keys = material[:enc_length], material[enc_length:]
        material[:] = bytes(len(material))
        return keys
