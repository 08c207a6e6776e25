"""The test realm serves ordinary MIT tools too (tests/support/kdc.py)."""

import subprocess
from collections.abc import Callable

import pytest

from tests.krb5.conftest import Host
from tests.support.kdc import Realm

pytestmark = pytest.mark.kdc


def test_kinit_with_a_host_keytab(realm: Realm, new_host: Callable[..., Host]) -> None:
    a = new_host()
    subprocess.run(["kinit", "-k", "-t", str(a.keytab), a.principal], env=realm.env, check=True)
    listing = subprocess.run(
        ["klist"], env=realm.env, check=True, capture_output=True, text=True
    ).stdout
    assert f"krbtgt/{realm.name}@{realm.name}" in listing


def test_maxlife_and_enctypes(realm: Realm, new_host: Callable[..., Host]) -> None:
    b = new_host(enctypes=[19], maxlife=90)
    info = realm.kadmin(f"getprinc {b.principal}")
    assert "Maximum ticket life: 0 days 00:01:30" in info
    assert "aes128-cts-hmac-sha256-128" in info
    assert "aes256-cts-hmac-sha1-96" not in info


def test_password_principal(realm: Realm) -> None:
    principal = realm.add_principal("alice", password="correct horse")
    ok = subprocess.run(["kinit", principal], input="correct horse\n", env=realm.env, text=True)
    assert ok.returncode == 0
    bad = subprocess.run(
        ["kinit", principal], input="wrong\n", env=realm.env, text=True, capture_output=True
    )
    assert bad.returncode != 0
