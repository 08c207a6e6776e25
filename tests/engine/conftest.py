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
    context: Context  # the Initiator's and Acceptor's: its clock is what rd_req checks


@pytest.fixture(scope="session")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realm]:
    realm = Realm.start(tmp_path_factory.mktemp("engine-realm"))
    yield realm
    realm.remove()


KerberosHostFactory = Callable[..., KerberosHost]


@pytest.fixture(scope="session")
def kerberos_host(realm: Realm, tmp_path_factory: pytest.TempPathFactory) -> KerberosHostFactory:
    """kerberos_host(name, flags=(), *, maxlife=None, fresh=False): a host's principal (made
    once), its Credentials, Context and Krb5Port — shared, or with fresh=True new ones, as
    after a restart (a new TGT, no memory of the old)."""
    principals: dict[tuple[str, tuple[str, ...], int | None], tuple[str, Path]] = {}
    made: dict[tuple[str, tuple[str, ...], int | None], KerberosHost] = {}

    def make(
        name: str, flags: tuple[str, ...] = (), *, maxlife: int | None = None, fresh: bool = False
    ) -> KerberosHost:
        key = (name, flags, maxlife)
        if key in made and not fresh:
            return made[key]
        if key not in principals:
            suffix = ("-u2u" if flags else "") + (f"-life{maxlife}" if maxlife else "")
            fqdn = f"{name}{suffix}.engine.test"
            principal, keytab = realm.add_host(fqdn, flags=flags, maxlife=maxlife)
            principals[key] = (principal, keytab)
        principal, keytab = principals[key]
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
        host = KerberosHost(name, principal, creds, port, context)
        if not fresh:
            made[key] = host
        return host

    return make


@pytest.fixture
def shift_clock() -> Iterator[Callable[[Context, int], None]]:
    """shift_clock(context, seconds): move a context's clock (what a host with a wrong clock
    looks like to libkrb5); every shifted clock is set right again after the test."""
    shifted: list[Context] = []

    def shift(context: Context, seconds: int) -> None:
        now, usec = context.now()
        context.raw.set_real_time(now + seconds, usec)
        shifted.append(context)

    yield shift
    for context in shifted:
        now, usec = context.now()
        off_s, off_us = context.time_offset()
        total = (now - off_s) * 1_000_000 + (usec - off_us)
        context.raw.set_real_time(total // 1_000_000, total % 1_000_000)


WorldFactory = Callable[..., World]


@pytest.fixture
def make_world(kerberos_host: KerberosHostFactory) -> WorldFactory:
    """make_world(a={...PeerConfig overrides for a's view of b}, b={...}, engine={...},
    engine_b={...}, seed=0, u2u_b=False, epochs=(1000, 2000), b_host=None) -> World with
    hosts "a" and "b" (b_host: another Kerberos host for b)."""

    def make(
        *,
        a: dict[str, Any] | None = None,
        b: dict[str, Any] | None = None,
        engine: dict[str, Any] | None = None,
        engine_b: dict[str, Any] | None = None,
        seed: int = 0,
        u2u_b: bool = False,
        epochs: tuple[int, int] = (1000, 2000),
        b_host: KerberosHost | None = None,
    ) -> World:
        ka = kerberos_host("a")
        kb = b_host or kerberos_host("b", ("-allow_svr",) if u2u_b else ())
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
            eng = Engine(
                config,
                mine.port,
                epoch=epoch,
                now=now,
                rng=random.Random(rng.random()),
                spi_rng=random.Random(rng.random()),
            )
            kernel = Kernel(random.Random(rng.random()))
            hosts.append(Host(me, ADDRESSES[me], eng, kernel, mine.credentials))
        return World(hosts, now)

    return make
