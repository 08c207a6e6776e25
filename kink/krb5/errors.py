"""The one exception of kink.krb5 and the Kerberos error numbers KINK acts on.

Two numbering schemes meet here. KRB-ERROR messages carry the RFC 4120 §7.5.9 protocol number
(0-127, e.g. 37 for KRB_AP_ERR_SKEW); libkrb5 reports failures as com_err codes, where each
protocol error n is ERROR_TABLE_BASE_krb5 + n and everything else (keytab, replay cache,
ASN.1, ...) lies outside that range. `Krb5Error.code` is always the libkrb5 (com_err) code;
`Krb5Error.protocol_code` and the constants below are protocol numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kink.krb5.acceptor import Accepted

# com_err base of the krb5 error table (krb5.h ERROR_TABLE_BASE_krb5).
ERROR_TABLE_BASE_KRB5 = -1765328384

# RFC 4120 §7.5.9 protocol error numbers (the KRB-ERROR error-code field).
_PROTOCOL_NAMES: dict[int, str] = {
    0: "KDC_ERR_NONE",
    1: "KDC_ERR_NAME_EXP",
    2: "KDC_ERR_SERVICE_EXP",
    3: "KDC_ERR_BAD_PVNO",
    4: "KDC_ERR_C_OLD_MAST_KVNO",
    5: "KDC_ERR_S_OLD_MAST_KVNO",
    6: "KDC_ERR_C_PRINCIPAL_UNKNOWN",
    7: "KDC_ERR_S_PRINCIPAL_UNKNOWN",
    8: "KDC_ERR_PRINCIPAL_NOT_UNIQUE",
    9: "KDC_ERR_NULL_KEY",
    10: "KDC_ERR_CANNOT_POSTDATE",
    11: "KDC_ERR_NEVER_VALID",
    12: "KDC_ERR_POLICY",
    13: "KDC_ERR_BADOPTION",
    14: "KDC_ERR_ETYPE_NOSUPP",
    15: "KDC_ERR_SUMTYPE_NOSUPP",
    16: "KDC_ERR_PADATA_TYPE_NOSUPP",
    17: "KDC_ERR_TRTYPE_NOSUPP",
    18: "KDC_ERR_CLIENT_REVOKED",
    19: "KDC_ERR_SERVICE_REVOKED",
    20: "KDC_ERR_TGT_REVOKED",
    21: "KDC_ERR_CLIENT_NOTYET",
    22: "KDC_ERR_SERVICE_NOTYET",
    23: "KDC_ERR_KEY_EXPIRED",
    24: "KDC_ERR_PREAUTH_FAILED",
    25: "KDC_ERR_PREAUTH_REQUIRED",
    26: "KDC_ERR_SERVER_NOMATCH",
    27: "KDC_ERR_MUST_USE_USER2USER",
    28: "KDC_ERR_PATH_NOT_ACCEPTED",
    29: "KDC_ERR_SVC_UNAVAILABLE",
    31: "KRB_AP_ERR_BAD_INTEGRITY",
    32: "KRB_AP_ERR_TKT_EXPIRED",
    33: "KRB_AP_ERR_TKT_NYV",
    34: "KRB_AP_ERR_REPEAT",
    35: "KRB_AP_ERR_NOT_US",
    36: "KRB_AP_ERR_BADMATCH",
    37: "KRB_AP_ERR_SKEW",
    38: "KRB_AP_ERR_BADADDR",
    39: "KRB_AP_ERR_BADVERSION",
    40: "KRB_AP_ERR_MSG_TYPE",
    41: "KRB_AP_ERR_MODIFIED",
    42: "KRB_AP_ERR_BADORDER",
    44: "KRB_AP_ERR_BADKEYVER",
    45: "KRB_AP_ERR_NOKEY",
    46: "KRB_AP_ERR_MUT_FAIL",
    47: "KRB_AP_ERR_BADDIRECTION",
    48: "KRB_AP_ERR_METHOD",
    49: "KRB_AP_ERR_BADSEQ",
    50: "KRB_AP_ERR_INAPP_CKSUM",
    51: "KRB_AP_PATH_NOT_ACCEPTED",
    52: "KRB_ERR_RESPONSE_TOO_BIG",
    60: "KRB_ERR_GENERIC",
    61: "KRB_ERR_FIELD_TOOLONG",
    62: "KDC_ERROR_CLIENT_NOT_TRUSTED",
    63: "KDC_ERROR_KDC_NOT_TRUSTED",
    64: "KDC_ERROR_INVALID_SIG",
    65: "KDC_ERR_KEY_TOO_WEAK",
    66: "KDC_ERR_CERTIFICATE_MISMATCH",
    67: "KRB_AP_ERR_NO_TGT",
    68: "KDC_ERR_WRONG_REALM",
    69: "KRB_AP_ERR_USER_TO_USER_REQUIRED",
    70: "KDC_ERR_CANT_VERIFY_CERTIFICATE",
    71: "KDC_ERR_INVALID_CERTIFICATE",
    72: "KDC_ERR_REVOKED_CERTIFICATE",
    73: "KDC_ERR_REVOCATION_STATUS_UNKNOWN",
    74: "KDC_ERR_REVOCATION_STATUS_UNAVAILABLE",
    75: "KDC_ERR_CLIENT_NAME_MISMATCH",
    76: "KDC_ERR_KDC_NAME_MISMATCH",
}

# The protocol errors KINK handles specially (RFC 4430 §3.1, §3.5, §3.7.1, §4.2.4, §9).
KDC_ERR_S_PRINCIPAL_UNKNOWN = 7
KDC_ERR_POLICY = 12
KDC_ERR_SERVER_NOMATCH = 26
KDC_ERR_MUST_USE_USER2USER = 27
KRB_AP_ERR_BAD_INTEGRITY = 31
KRB_AP_ERR_TKT_EXPIRED = 32
KRB_AP_ERR_TKT_NYV = 33
KRB_AP_ERR_REPEAT = 34
KRB_AP_ERR_NOT_US = 35
KRB_AP_ERR_BADMATCH = 36
KRB_AP_ERR_SKEW = 37
KRB_AP_ERR_MODIFIED = 41
KRB_AP_ERR_BADKEYVER = 44
KRB_AP_ERR_NOKEY = 45
KRB_AP_ERR_MUT_FAIL = 46
KRB_ERR_GENERIC = 60
KRB_AP_ERR_NO_TGT = 67
KRB_AP_ERR_USER_TO_USER_REQUIRED = 69

# libkrb5 codes outside the protocol range that KINK meets (krb5.h).
KRB5KRB_AP_WRONG_PRINC = ERROR_TABLE_BASE_KRB5 + 144
KRB5_MUTUAL_FAILED = ERROR_TABLE_BASE_KRB5 + 158
KRB5_KT_NOTFOUND = ERROR_TABLE_BASE_KRB5 + 181
KRB5_PARSE_MALFORMED = ERROR_TABLE_BASE_KRB5 + 134
KRB5_RC_IO = ERROR_TABLE_BASE_KRB5 + 164
KRB5_RC_PARSE = ERROR_TABLE_BASE_KRB5 + 166
# asn1 error table (krb5.h ASN1_*): what a message that is not DER at all produces.
ASN1_OVERRUN = 1859794437
ASN1_BAD_ID = 1859794438
ASN1_BAD_FORMAT = 1859794440

_MAX_PROTOCOL_CODE = 127


def protocol_code(code: int) -> int | None:
    """The RFC 4120 protocol number for a libkrb5 com_err code, or None outside that range."""
    n = code - ERROR_TABLE_BASE_KRB5
    return n if 0 <= n <= _MAX_PROTOCOL_CODE else None


def error_name(code: int) -> str | None:
    """The RFC 4120 §7.5.9 name of a protocol number (0-127) or of the libkrb5 code for it."""
    if 0 <= code <= _MAX_PROTOCOL_CODE:
        return _PROTOCOL_NAMES.get(code)
    n = protocol_code(code)
    return None if n is None else _PROTOCOL_NAMES.get(n)


class Krb5Error(Exception):
    """A libkrb5 failure: `code` is libkrb5's com_err code, `message` its text.

    `accepted` is set only by `Acceptor.accept` for KRB_AP_ERR_SKEW, KRB_AP_ERR_TKT_EXPIRED and
    KRB_AP_ERR_TKT_NYV when the ticket and authenticator still decrypted: the responder then
    holds the session key and answers with an authenticated error (RFC 4430 §3.5).
    """

    # Slots: a refused AP-REQ (every forged CREATE, issue 9) builds one of these, and a
    # per-instance dict was a good part of its cost. BaseException still gives each instance a
    # dict for anything else set on it, and its __new__ has stored (code, message) as args.
    __slots__ = ("_message", "accepted", "code")

    def __init__(
        self, code: int, message: str | bytes, *, accepted: Accepted | None = None
    ) -> None:
        self.code = code
        self._message = message  # bytes: libkrb5's UTF-8 text, decoded when first read
        self.accepted = accepted

    @property
    def message(self) -> str:
        """libkrb5's text for the failure (decoded on first read: a refused request whose
        error nobody logs never pays for it)."""
        text = self._message
        if isinstance(text, bytes):
            text = self._message = text.decode("utf-8", "replace")
        return text

    @property
    def protocol_code(self) -> int | None:
        """The RFC 4120 error number to put in a KRB-ERROR, None if the code has none."""
        return protocol_code(self.code)

    @property
    def name(self) -> str | None:
        """The RFC 4120 name, only for codes of libkrb5's protocol table: small codes are
        errno values (ENOENT for a missing keytab), not protocol numbers."""
        n = self.protocol_code
        return None if n is None else error_name(n)

    def __str__(self) -> str:
        name = self.name
        return f"{self.message} ({name})" if name else f"{self.message} (krb5 error {self.code})"

    def __repr__(self) -> str:
        return f"Krb5Error({self.code}, {self.message!r})"
