"""n-fold against every vector of RFC 3961 App. A.1."""

import pytest

from kink.crypto.nfold import nfold

# (output bits, input, expected), RFC 3961 App. A.1
VECTORS = [
    (64, b"012345", "be072631276b1955"),
    (56, b"password", "78a07b6caf85fa"),
    (64, b"Rough Consensus, and Running Code", "bb6ed30870b7f0e0"),
    (168, b"password", "59e4a8ca7c0385c3c37b3f6d2000247cb6e6bd5b3e"),
    (
        192,
        b"MASSACHVSETTS INSTITVTE OF TECHNOLOGY",
        "db3b0d8f0b061e603282b308a50841229ad798fab9540c1b",
    ),
    (168, b"Q", "518a54a215a8452a518a54a215a8452a518a54a215"),
    (168, b"ba", "fb25d531ae8974499f52fd92ea9857c4ba24cf297e"),
    (64, b"kerberos", "6b65726265726f73"),
    (128, b"kerberos", "6b65726265726f737b9b5b2b93132b93"),
    (168, b"kerberos", "8372c236344e5f1550cd0747e15d62ca7a5a3bcea4"),
    (
        256,
        b"kerberos",
        "6b65726265726f737b9b5b2b93132b935c9bdcdad95c9899c4cae4dee6d6cae4",
    ),
]


@pytest.mark.parametrize(("bits", "data", "expected"), VECTORS)
def test_rfc3961_vectors(bits: int, data: bytes, expected: str) -> None:
    assert nfold(data, bits // 8).hex() == expected


def test_empty_input_is_refused() -> None:
    with pytest.raises(ValueError):
        nfold(b"", 16)
