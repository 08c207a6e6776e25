"""Protecting KINK messages with the ticket session key: the Cksum (RFC 4430 §4, key usage 40)
and KINK_ENCRYPT (§4.2.7, key usage 39). The one place where kink.wire meets kink.crypto.

Receiving is two steps because the key is only known once the AP-REQ or AP-REP in the decoded
message has been verified by Kerberos:
    msg = kink.wire.decode(datagram)
    key = ... from msg's KINK_AP_REQ / KINK_AP_REP ...
    msg = open_message(msg, key, request=...)   # Cksum, decryption, §6 rules
"""

from kink.crypto.errors import CryptoError
from kink.crypto.rfc3961 import (
    KEY_USAGE_KINK_CKSUM,
    KEY_USAGE_KINK_ENCRYPT,
    Key,
    checksum,
    decrypt,
    encrypt,
    verify_checksum,
)
from kink.wire import Message, check_message, cksum_input, decode_inner, encode


class SessionSealer:
    """kink.wire.Sealer over a ticket session key (RFC 4430 §4: "The key used MUST be the
    session key in the ticket"). Keep one per session key: Key caches its derived keys."""

    __slots__ = ("_key",)

    def __init__(self, key: Key) -> None:
        self._key = key

    def checksum_length(self) -> int:
        # The profile's size at once rather than through checksum_length(enctype): asked for
        # every message sealed (issue 4).
        return self._key._profile.mac_size

    def checksum(self, data: bytes) -> bytes:
        return checksum(self._key, KEY_USAGE_KINK_CKSUM, data)

    def encrypt(self, plaintext: bytes) -> bytes:
        return encrypt(self._key, KEY_USAGE_KINK_ENCRYPT, plaintext)


def seal(msg: Message, key: Key) -> bytes:
    """The datagram of msg, its msg.encrypted payloads in KINK_ENCRYPT and a Cksum appended."""
    return encode(msg, SessionSealer(key))


def verify_cksum(datagram: bytes, key: Key) -> None:
    """RFC 4430 §4: verify the Cksum of a received datagram; CryptoError if it is absent or
    wrong ("If verification fails, the message MUST be dropped")."""
    _verify(*cksum_input(datagram), key)


def _verify(signed: bytes, cksum: bytes, key: Key) -> None:
    if not cksum:
        raise CryptoError("message has no Cksum although a session key is available")
    verify_checksum(key, KEY_USAGE_KINK_CKSUM, signed, cksum)


def open_message(msg: Message, key: Key, *, request: int | None = None) -> Message:
    """Verify the Cksum of a received message (msg = kink.wire.decode(datagram), which keeps
    the octets the Cksum covers in msg.signed), decrypt its KINK_ENCRYPT and check the §6
    payload rules (`request`: for a REPLY, the command it answers).

    Raises CryptoError (bad or missing Cksum, decryption failure) or kink.wire.DecodeError
    (malformed inner payloads or a §6 violation); either way the message must be dropped or
    answered as the engine decides.
    """
    # decode() kept the Cksum's coverage in msg.signed (cksum_input(datagram), without parsing
    # the header a second time, issue 4); read once, a property (a Python call each time).
    signed = msg.signed
    _verify(signed, msg.cksum, key)
    if msg.ciphertext is not None:
        plaintext = decrypt(key, KEY_USAGE_KINK_ENCRYPT, msg.ciphertext)
        # Field by field rather than dataclasses.replace, which introspects the class on
        # every call: this runs for every authenticated message.
        msg = Message(
            msg.type,
            msg.xid,
            msg.payloads,
            decode_inner(plaintext),
            msg.ciphertext,
            msg.ackreq,
            msg.doi,
            msg.mjver,
            msg.cksum,
            signed,
        )
    check_message(msg, request)
    return msg
