"""Krb5Port's KerberosError for a refused AP-REQ (kink.engine.kerberos): the same code, name
and args whichever way it was made (issue 9: the names of the codes seen are kept, and the
exception's args are those BaseException.__new__ stored)."""

import pytest

from kink.engine.kerberos import KerberosError, _error
from kink.krb5.errors import ERROR_TABLE_BASE_KRB5, KRB_AP_ERR_BAD_INTEGRITY, Krb5Error


@pytest.mark.parametrize(
    ("code", "protocol", "name"),
    [
        (ERROR_TABLE_BASE_KRB5 + KRB_AP_ERR_BAD_INTEGRITY, 31, "KRB_AP_ERR_BAD_INTEGRITY"),
        (2, None, "krb5 error 2"),  # ENOENT (a missing keytab): no protocol number
    ],
)
def test_a_refusal_names_its_code_every_time(code: int, protocol: int | None, name: str) -> None:
    for _ in range(2):  # made, then from the names kept
        err = _error(Krb5Error(code, b"text"), b"ap-req")
        assert (err.code, err.name, err.args) == (protocol, name, (protocol, name))
        assert str(err) == str((protocol, name))


def test_kerberos_error_args_are_its_code_and_name() -> None:
    err = KerberosError(31, "X", ap_req=b"")
    assert err.args == (31, "X") and err.accepted is None and not err.user_to_user
