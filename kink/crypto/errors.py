"""The exceptions of kink.crypto. Messages name algorithms and lengths, never key bytes."""


class CryptoError(Exception):
    """An integrity check failed, or an input has the wrong length or range."""


class UnsupportedEnctype(CryptoError):
    """A Kerberos enctype KINK refuses or does not know (only aes*-cts-hmac-* are used)."""


class UnsupportedTransform(CryptoError):
    """An ISAKMP transform (protocol, transform id, attributes) this layer cannot key."""


class UnsupportedGroup(CryptoError):
    """A Diffie-Hellman group description this layer does not offer."""
