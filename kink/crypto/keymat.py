"""KEYMAT for one IPsec SA from the Kerberos session key (RFC 4430 §7, RFC 2409 §5.5).

    KEYMAT = prf(Ksess, [g(qm)^xy |] protocol | SPI | Ni_b [| Nr_b])

prf is the RFC 3961 PRF of the session key's enctype, SKEYID_d is the ticket session key
(never a subkey), Nr_b is left out when the REPLY carries no nonce (RFC 4430 §7), and KEYMAT is
expanded as in RFC 2409 §5.5: K1 = prf(Ksess, src), Kn = prf(Ksess, K(n-1) | src).
"""

from kink.crypto.errors import CryptoError
from kink.crypto.profiles import AesPrf
from kink.crypto.rfc3961 import Key

SPI_LENGTH = 4  # an IPsec SPI in the ISAKMP SA payload, RFC 2407 §4.6.1
MAX_KEYMAT = 1024  # far above any transform's need (AES-256 + HMAC-SHA-512 is 96 octets)


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
    if not 0 <= protocol <= 0xFF:
        raise CryptoError(f"protocol id {protocol} does not fit one octet")
    if len(spi) != SPI_LENGTH:
        raise CryptoError(f"SPI must be {SPI_LENGTH} octets, got {len(spi)}")
    if not 0 < length <= MAX_KEYMAT:
        raise CryptoError(f"KEYMAT length {length} is out of range (1..{MAX_KEYMAT})")
    src = b"".join((gxy or b"", bytes((protocol,)), spi, ni, nr or b""))
    out = bytearray(length)  # sized once: no reallocation leaves key copies behind
    # rfc3961.prf is key._prf().prf: the PRF key is fetched once for the whole expansion
    # (every SA takes two or more PRFs, issue 4).
    prf = key._prf().prf
    block = prf(src, aes_prf)
    filled = len(block)
    out[:filled] = block[:length]
    while filled < length:
        block = prf(block + src, aes_prf)
        out[filled : filled + len(block)] = block[: length - filled]
        filled += len(block)
    return out
