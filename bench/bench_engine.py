"""Complete CREATE exchanges per second between two engines in one process: real Kerberos
(a throwaway MIT realm, aes256-cts-hmac-sha1-96 session keys, file2 replay cache), the
in-memory SA backend of the engine tests, 2-way optimistic ESP AES-128-CBC + HMAC-SHA1.

Each exchange: ACQUIRE -> SPI allocation -> optimistic inbound SA -> CREATE -> AP-REQ check ->
SPI allocation -> two SAs -> REPLY -> AP-REP check -> outbound SA; then both engines forget
the pair locally (no DELETE) so that the next ACQUIRE negotiates again.
"""

import random
import tempfile
import time
from pathlib import Path

from bench.common import emit
from kink.engine import Engine, EngineConfig, Krb5Port, PeerConfig
from kink.engine.events import Acquire
from kink.krb5.acceptor import Acceptor
from kink.krb5.context import Context
from kink.krb5.credentials import Credentials
from kink.krb5.initiator import Initiator
from tests.engine.conftest import ESP_AES128_SHA1
from tests.engine.harness import Host, Kernel, World
from tests.support.kdc import Realm

SECONDS = 3.0


def _host(realm: Realm, tmp: Path, name: str, address: str) -> tuple[str, Credentials, Krb5Port]:
    principal, keytab = realm.add_host(f"{name}.kink.bench")
    creds = Credentials(Context(realm.krb5_conf), principal, str(keytab))
    creds.acquire()
    context = Context(realm.krb5_conf, rcache_dir=tmp / name)
    acceptor = Acceptor(context, principal, keytab=str(keytab), credentials=creds)
    return principal, creds, Krb5Port(Initiator(context), acceptor, creds)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name, Realm.start(Path(tmp_name) / "realm") as realm:
        tmp = Path(tmp_name)
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        pa, ca, porta = _host(realm, tmp, "a", "192.0.2.1")
        pb, cb, portb = _host(realm, tmp, "b", "192.0.2.2")
        peer_of_a = PeerConfig("b", "192.0.2.2", pb, (), (ESP_AES128_SHA1,))
        peer_of_b = PeerConfig("a", "192.0.2.1", pa, (), (ESP_AES128_SHA1,))
        a = Engine(EngineConfig("192.0.2.1", pa, (peer_of_a,)), porta, epoch=1, now=0.0)
        b = Engine(EngineConfig("192.0.2.2", pb, (peer_of_b,)), portb, epoch=2, now=0.0)
        world = World(
            [
                Host("a", "192.0.2.1", a, Kernel(random.Random(1)), ca),
                Host("b", "192.0.2.2", b, Kernel(random.Random(2)), cb),
            ],
            0.0,
        )
        reqid = next(iter(a.policies))

        def exchange() -> None:
            a.kernel_event(Acquire(reqid), world.now)
            while world.step():
                pass
            for engine in (a, b):
                for child in list(engine.sadb.children.values()):
                    engine.remove_child(child, "bench", world.now)
            world.drain()
            for host in world.hosts.values():
                host.notices.clear()
                host.sent.clear()
                host.kernel.log.clear()
            world.delivered.clear()

        exchange()  # fetches the ticket
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < SECONDS:
            for _ in range(100):
                exchange()
            n += 100
        elapsed = time.perf_counter() - start
        assert not a.sadb.children and not world.host("a").kernel.sas
        ticket = ca.cached_ticket(pb)
        emit(
            "engine_create_exchanges",
            n / elapsed,
            "exchanges/s",
            enctype=ticket.session_key.enctype if ticket else None,
            handshake="2-way",
            transform="esp aes128-cbc hmac-sha1",
        )


if __name__ == "__main__":
    main()
