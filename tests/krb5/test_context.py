"""Context configuration, clock offset and principal names."""

from pathlib import Path

import pytest

from kink.krb5.context import Context, kink_principal
from kink.krb5.errors import KRB5_PARSE_MALFORMED, Krb5Error
from kink.krb5.initiator import Initiator

CONF = Path(__file__).with_name("data") / "krb5.conf"  # the racoon2 realm's krb5.conf


def test_explicit_config() -> None:
    context = Context(CONF)
    assert context.default_realm() == "EXAMPLE.TEST"
    assert context.canonical_name("kink/host-a.example.test") == (
        "kink/host-a.example.test@EXAMPLE.TEST"
    )


def test_missing_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(Krb5Error):
        Context("/nonexistent/krb5.conf")
    with pytest.raises(Krb5Error):
        Context("/nonexistent/krb5.conf", rcache_dir=tmp_path)


def test_rcache_dir_profile_comes_first(tmp_path: Path) -> None:
    Context(CONF, rcache_dir=tmp_path)
    profile = (tmp_path / "kink-rcache.conf").read_text()
    assert f"default_rcache_name = file2:{tmp_path.resolve()}/kink.rcache2" in profile


def test_adopted_clock_skew_moves_the_context_clock() -> None:
    context = Context(CONF)
    assert context.time_offset() == (0, 0)
    now, usec = context.now()
    Initiator(context).adopt_clock_skew(now + 1000, usec)
    offset, _ = context.time_offset()
    assert 999 <= offset <= 1000
    assert 999 <= context.now()[0] - now <= 1001
    other = Context(CONF)  # offsets are per context
    assert other.time_offset() == (0, 0)


def test_kink_principal() -> None:
    assert kink_principal("Host-A.Example.TEST.", "EXAMPLE.TEST") == (
        "kink/host-a.example.test@EXAMPLE.TEST"
    )
    for fqdn, realm in (("", "R"), ("a/b", "R"), ("a@b", "R"), ("a", ""), ("a", "R@S")):
        with pytest.raises(Krb5Error) as e:
            kink_principal(fqdn, realm)
        assert e.value.code == KRB5_PARSE_MALFORMED
