"""Fixtures of the crypto tests."""

from collections.abc import Iterator

import pytest

from tests.crypto.mit_k5crypto import MitK5Crypto


@pytest.fixture(scope="session")
def mit() -> Iterator[MitK5Crypto]:
    """MIT libk5crypto, the reference the tests cross-check against."""
    lib = MitK5Crypto()
    yield lib
    lib.close()
