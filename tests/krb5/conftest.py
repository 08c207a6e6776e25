"""Fixtures for kink.krb5 tests: one MIT realm per test session, hosts created per test."""

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from kink.krb5.context import Context
from kink.krb5.credentials import Credentials
from tests.support.kdc import Realm

_host_numbers = itertools.count()


@dataclass(frozen=True)
class Host:
    principal: str
    keytab: Path


@pytest.fixture(scope="session")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realm]:
    realm = Realm.start(tmp_path_factory.mktemp("realm"))
    yield realm
    realm.remove()


@pytest.fixture
def new_host(realm: Realm) -> Callable[..., Host]:
    """Make a fresh kink/<name>@REALM with a keytab (unique per call: tests do not share)."""

    def make(
        *,
        enctypes: Sequence[int] | None = None,
        maxlife: int | None = None,
        flags: Sequence[str] = (),
    ) -> Host:
        fqdn = f"h{next(_host_numbers)}.kink.test"
        principal, keytab = realm.add_host(fqdn, enctypes=enctypes, maxlife=maxlife, flags=flags)
        return Host(principal, keytab)

    return make


@pytest.fixture
def new_context(realm: Realm, tmp_path: Path) -> Callable[[], Context]:
    """A new Context on the realm's krb5.conf, with this test's replay cache directory."""

    def make() -> Context:
        return Context(realm.krb5_conf, rcache_dir=tmp_path)

    return make


@pytest.fixture
def credentials_for(new_context: Callable[[], Context]) -> Callable[[Host], Credentials]:
    """Credentials of a host (TGT acquired), each on a Context of its own."""

    def make(host: Host) -> Credentials:
        creds = Credentials(new_context(), host.principal, str(host.keytab))
        creds.acquire()
        return creds

    return make
