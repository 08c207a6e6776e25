"""Small helpers shared by the crypto tests."""

from kink.crypto.rfc3961 import Key


def h(text: str) -> bytes:
    """Octets from hex as the RFCs print it (spaces and line breaks allowed)."""
    return bytes.fromhex("".join(text.split()))


def material(key: Key) -> bytes:
    """The key octets (tests only: the public API never hands them out)."""
    assert key._material is not None
    return bytes(key._material)
