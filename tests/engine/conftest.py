"""Fixtures for the engine tests: one MIT realm per session, Kerberos hosts made once, engines
made per test and wired back to back (tests.engine.harness)."""

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from kink.engine import Engine, EngineConfig, Krb5Port, PeerConfig, ProposalSpec, TransformSpec
from kink.krb5.acceptor import Acceptor
from kink.krb5.context import Context
from kink.krb5.credentials import Credentials
from kink.krb5.initiator import Initiator
from kink.wire.ipsec_doi import AuthAlgorithm, EspTransform, ProtocolId
from tests.engine.harness import Host, Kernel, World
from tests.support.kdc import Realm

ESP_AES128_SHA1 = ProposalSpec(
    (TransformSpec(ProtocolId.ESP, EspTransform.AES_CBC, AuthAlgorithm.HMAC_SHA1, 128),)
)
ESP_AES256_SHA256 = ProposalSpec(
    (TransformSpec(ProtocolId.ESP, EspTransform.AES_CBC, AuthAlgorithm.HMAC_SHA2_256, 256),)
)
ESP_GCM = ProposalSpec((TransformSpec(ProtocolId.ESP, EspTransform.AES_GCM_16, None, 128),))
AH_ESP = ProposalSpec(
    (
        TransformSpec(ProtocolId.AH, 3, AuthAlgorithm.HMAC_SHA1),  # AH_SHA
        TransformSpec(ProtocolId.ESP, EspTransform.AES_CBC, AuthAlgorithm.HMAC_SHA1, 128),
    )
)

ADDRESSES = {"a": "192.0.2.1", "b": "192.0.2.2", "c": "192.0.2.3"}


@dataclass
class KerberosHost:
    name: str
    principal: str
    credentials: Credentials
    port: Krb5Port


@pytest.fixture(scope="session")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realm]:
    realm = Realm.start(tmp_path_factory.mktemp("engine-realm"))
    yield realm
    realm.remove()


@pytest.fixture(scope="session")
def kerberos_host(
    realm: Realm, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., KerberosHost]:
    made: dict[tuple[str, tuple[str, ...]], KerberosHost] = {}

    def make(name: str, flags: tuple[str, ...] = ()) -> KerberosHost:
        key = (name, flags)
        if key not in made:
            fqdn = f"{name}{'-u2u' if flags else ''}.engine.test"
            principal, keytab = realm.add_host(fqdn, flags=flags)
            rcache: Path = tmp_path_factory.mktemp(f"rcache-{name}")
            creds = Credentials(Context(realm.krb5_conf), principal, str(keytab))
            creds.acquire()
            context = Context(realm.krb5_conf, rcache_dir=rcache)
            acceptor = Acceptor(
                context,
                principal,
                keytab=None if flags else str(keytab),
                credentials=creds,
            )
            port = Krb5Port(Initiator(context), acceptor, creds)
            made[key] = KerberosHost(name, principal, creds, port)
        return made[key]

    return make


WorldFactory = Callable[..., World]


@pytest.fixture
def make_world(kerberos_host: Callable[..., KerberosHost]) -> WorldFactory:
    """make_world(a={...PeerConfig overrides for a's view of b}, b={...}, engine={...},
    seed=0, u2u_b=False) -> World with hosts "a" and "b"."""

    def make(
        *,
        a: dict[str, Any] | None = None,
        b: dict[str, Any] | None = None,
        engine: dict[str, Any] | None = None,
        engine_b: dict[str, Any] | None = None,
        seed: int = 0,
        u2u_b: bool = False,
        epochs: tuple[int, int] = (1000, 2000),
    ) -> World:
        ka = kerberos_host("a")
        kb = kerberos_host("b", ("-allow_svr",) if u2u_b else ())
        rng = random.Random(seed)
        now = 1000.0
        hosts = []
        for me, mine, other, theirs, overrides, extra, epoch in (
            ("a", ka, "b", kb, a or {}, engine or {}, epochs[0]),
            ("b", kb, "a", ka, b or {}, {**(engine or {}), **(engine_b or {})}, epochs[1]),
        ):
            peer = PeerConfig(
                name=other,
                address=ADDRESSES[other],
                principal=theirs.principal,
                policies=(),
                proposals=(ESP_AES128_SHA1,),
            )
            peer = replace(peer, **overrides)
            config = EngineConfig(ADDRESSES[me], mine.principal, (peer,), **extra)
            eng = Engine(config, mine.port, epoch=epoch, now=now, rng=random.Random(rng.random()))
            kernel = Kernel(random.Random(rng.random()))
            hosts.append(Host(me, ADDRESSES[me], eng, kernel, mine.credentials))
        return World(hosts, now)

    return make
