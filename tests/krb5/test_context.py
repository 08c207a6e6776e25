"""Context configuration, clock offset and principal names."""

import os
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


def test_rcache_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Context(CONF, rcache_dir=tmp_path).rcache_path == tmp_path / "kink.rcache"
    monkeypatch.setenv("KRB5RCACHEDIR", str(tmp_path / "elsewhere"))
    default = Context(CONF).rcache_path
    assert default == tmp_path / "elsewhere" / f"kink_{os.geteuid()}.rcache"
    # Nothing is written until an Acceptor uses the cache.
    assert list(tmp_path.iterdir()) == []


def test_clock_skew_is_read_from_the_profile(tmp_path: Path) -> None:
    assert Context(CONF).raw.clock_skew() == 300  # the racoon2 krb5.conf sets none: MIT's
    conf = tmp_path / "krb5.conf"
    conf.write_text("[libdefaults]\n\tclockskew = 120\n")
    assert Context(conf).raw.clock_skew() == 120


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
