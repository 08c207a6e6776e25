"""Error numbers and names against libkrb5's own error table."""

from pathlib import Path

import pytest

from kink.krb5 import _lib
from kink.krb5.context import Context
from kink.krb5.errors import (
    ASN1_BAD_FORMAT,
    ASN1_BAD_ID,
    ASN1_OVERRUN,
    ERROR_TABLE_BASE_KRB5,
    KDC_ERR_MUST_USE_USER2USER,
    KRB5_KT_NOTFOUND,
    KRB5_MUTUAL_FAILED,
    KRB5_PARSE_MALFORMED,
    KRB5KRB_AP_WRONG_PRINC,
    KRB_AP_ERR_REPEAT,
    KRB_AP_ERR_SKEW,
    KRB_AP_ERR_USER_TO_USER_REQUIRED,
    Krb5Error,
    error_name,
    protocol_code,
)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (ERROR_TABLE_BASE_KRB5 + KRB_AP_ERR_SKEW, "Clock skew too great"),
        (ERROR_TABLE_BASE_KRB5 + KRB_AP_ERR_REPEAT, "Request is a replay"),
        (
            ERROR_TABLE_BASE_KRB5 + KDC_ERR_MUST_USE_USER2USER,
            "Server principal valid for user2user only",
        ),
        (KRB5KRB_AP_WRONG_PRINC, "Wrong principal in request"),
        (KRB5_MUTUAL_FAILED, "Mutual authentication failed"),
        (KRB5_KT_NOTFOUND, "Key table entry not found"),
        (KRB5_PARSE_MALFORMED, "Malformed representation of principal"),
        (ASN1_OVERRUN, "ASN.1 encoding ended unexpectedly"),
        (ASN1_BAD_ID, "ASN.1 identifier doesn't match expected value"),
        (ASN1_BAD_FORMAT, "ASN.1 badly-formatted encoding"),
    ],
)
def test_constants_match_libkrb5(code: int, text: str) -> None:
    # libkrb5 registers its error tables when the first context is created.
    Context(Path(__file__).with_name("data") / "krb5.conf")
    assert _lib.message_for(code) == text


def test_protocol_numbers_and_names() -> None:
    skew = ERROR_TABLE_BASE_KRB5 + KRB_AP_ERR_SKEW
    assert protocol_code(skew) == KRB_AP_ERR_SKEW == 37
    assert error_name(KRB_AP_ERR_SKEW) == error_name(skew) == "KRB_AP_ERR_SKEW"
    assert error_name(KRB_AP_ERR_USER_TO_USER_REQUIRED) == "KRB_AP_ERR_USER_TO_USER_REQUIRED"
    assert error_name(KDC_ERR_MUST_USE_USER2USER) == "KDC_ERR_MUST_USE_USER2USER"
    assert error_name(0) == "KDC_ERR_NONE"
    assert error_name(30) is None  # unassigned in RFC 4120
    assert protocol_code(KRB5KRB_AP_WRONG_PRINC) is None  # krb5 table, beyond 127
    assert error_name(KRB5KRB_AP_WRONG_PRINC) is None
    assert protocol_code(ASN1_BAD_FORMAT) is None


def test_krb5_error() -> None:
    e = Krb5Error(ERROR_TABLE_BASE_KRB5 + KRB_AP_ERR_SKEW, "Clock skew too great")
    assert e.protocol_code == KRB_AP_ERR_SKEW
    assert e.name == "KRB_AP_ERR_SKEW"
    assert str(e) == "Clock skew too great (KRB_AP_ERR_SKEW)"
    assert e.accepted is None
    other = Krb5Error(KRB5_KT_NOTFOUND, "Key table entry not found")
    assert other.protocol_code is None
    assert str(other) == f"Key table entry not found (krb5 error {KRB5_KT_NOTFOUND})"


def test_krb5_error_text_decoded_when_read() -> None:
    # RawContext.error hands libkrb5's octets over undecoded; what the error shows is the same.
    raw = Krb5Error(KRB5_KT_NOTFOUND, "Clé introuvable".encode())
    text = Krb5Error(KRB5_KT_NOTFOUND, "Clé introuvable")
    assert raw.message == text.message == "Clé introuvable"
    assert str(raw) == str(text)
    assert repr(raw) == repr(text)
    assert Krb5Error(5, b"bad \xff octet").message == "bad \ufffd octet"


def test_extended_message_kept_past_later_failures() -> None:
    # libkrb5 keeps one extended message per context, overwritten by the next failure: the
    # error must hold the text of its own failure even when read after another one.
    raw = Context(Path(__file__).with_name("data") / "krb5.conf").raw
    with pytest.raises(Krb5Error) as first:
        raw.memory_copy(raw.keytab("FILE:/nonexistent/first.keytab"))
    with pytest.raises(Krb5Error) as second:
        raw.memory_copy(raw.keytab("FILE:/nonexistent/second.keytab"))
    assert first.value.message == "Key table file '/nonexistent/first.keytab' not found"
    assert second.value.message == "Key table file '/nonexistent/second.keytab' not found"
