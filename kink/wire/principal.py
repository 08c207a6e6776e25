"""The PrincName of KINK_TGT_REQ: a Kerberos principal and realm written as the NAME of a
GSS-API exported name token for the Kerberos V5 mechanism (RFC 4430 §4.2.4, RFC 1964 §2.1.3).

That is `component/component@REALM` where `@`, `/` and `\\` inside a component or the realm are
quoted with a backslash and NUL, backspace, tab and newline are written `\\0`, `\\b`, `\\t`,
`\\n`; a backslash appears for no other reason (§2.1.3 (3)), so every name has exactly one
encoding and parse_principal_name() accepts only that encoding. MIT krb5_unparse_name() writes
the same form.
"""

from collections.abc import Sequence

_ESCAPE = {"@": "\\@", "/": "\\/", "\\": "\\\\", "\0": "\\0", "\b": "\\b", "\t": "\\t", "\n": "\\n"}
_UNESCAPE = {"@": "@", "/": "/", "\\": "\\", "0": "\0", "b": "\b", "t": "\t", "n": "\n"}
_MUST_ESCAPE = frozenset(_ESCAPE)


def _quote(part: str) -> str:
    return "".join(_ESCAPE.get(c, c) for c in part)


def format_principal_name(components: Sequence[str], realm: str) -> str:
    """The RFC 1964 §2.1.3 string of a principal (at least one component) in a realm."""
    if not components or not realm:
        raise ValueError("a principal name needs a component and a realm")
    return "/".join(_quote(c) for c in components) + "@" + _quote(realm)


def parse_principal_name(name: str) -> tuple[tuple[str, ...], str]:
    """(components, realm) of an RFC 1964 §2.1.3 string; ValueError names what is wrong."""
    components: list[str] = []
    current: list[str] = []
    realm: str | None = None
    chars = iter(name)
    for c in chars:
        if c == "\\":
            quoted = next(chars, None)
            if quoted is None or quoted not in _UNESCAPE:
                raise ValueError("backslash not followed by @ / \\ 0 b t n (RFC 1964 §2.1.3)")
            current.append(_UNESCAPE[quoted])
        elif c == "/" and realm is None:
            components.append("".join(current))
            current = []
        elif c == "@" and realm is None:
            components.append("".join(current))
            current = []
            realm = ""
        elif c in _MUST_ESCAPE:
            raise ValueError(f"unquoted {c!r} (RFC 1964 §2.1.3)")
        else:
            current.append(c)
    if realm is None:
        raise ValueError("no realm (RFC 4430 §4.2.4 names a principal and its realm)")
    realm = "".join(current)
    if not realm or components == [""]:
        raise ValueError("empty principal or realm")
    return tuple(components), realm
