"""Stand-ins for the crypto layer's Sealer (kink.wire.Sealer), so the wire tests need no keys."""

import hashlib


class ReplaySealer:
    """Gives back fixed ciphertext and checksum (those of a captured message) and records what
    encode() asked it to encrypt and to checksum."""

    def __init__(self, ciphertext: bytes | None, cksum: bytes) -> None:
        self.ciphertext = ciphertext
        self.cksum = cksum
        self.encrypted: list[bytes] = []
        self.checksummed: list[bytes] = []

    def checksum_length(self) -> int:
        return len(self.cksum)

    def checksum(self, data: bytes) -> bytes:
        self.checksummed.append(data)
        return self.cksum

    def encrypt(self, plaintext: bytes) -> bytes:
        self.encrypted.append(plaintext)
        assert self.ciphertext is not None
        return self.ciphertext


class TransparentSealer:
    """ "Encrypts" to the plaintext itself, so decode_inner(msg.ciphertext) recovers the inner
    payloads, and checksums with truncated SHA-1, so a test can recompute the Cksum over
    cksum_input() and see that encode() covered exactly the RFC 4430 §4 octets."""

    def __init__(self, length: int = 12) -> None:
        self.length = length

    def checksum_length(self) -> int:
        return self.length

    def checksum(self, data: bytes) -> bytes:
        return hashlib.sha1(data).digest()[: self.length]

    def encrypt(self, plaintext: bytes) -> bytes:
        return plaintext
