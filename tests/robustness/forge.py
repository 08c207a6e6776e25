"""Forging KINK messages against a real engine: real tickets from the test realm, real
kink.crypto sealing, and a watch on what the attacked engine asks of Kerberos.

An Attack holds a two-host World (tests.engine.harness) in which a has negotiated an SA pair
with b. `forge` builds a command from a to b with a fresh AP-REQ of a's real ticket, so that
everything but the one fault under test is valid; `hit` delivers a datagram to one engine and
returns what it did, without carrying any of it out.
"""

import dataclasses
import struct
from dataclasses import dataclass, field
from typing import Any

from kink.crypto.rfc3961 import Key
from kink.crypto.seal import SessionSealer, open_message
from kink.engine import Engine
from kink.engine.events import Action, Dropped, Initiate, SendDatagram
from kink.engine.kerberos import KerberosPort
from kink.wire import ApReq, KinkPayload, Message, MessageType, decode, encode
from tests.engine.conftest import KerberosHost, KerberosHostFactory, WorldFactory
from tests.engine.harness import Host, World

A, B, C = "192.0.2.1", "192.0.2.2", "192.0.2.3"  # tests.engine.conftest.ADDRESSES
PORT = 910


class WatchedPort:
    """A KerberosPort that records the name of every call before passing it on."""

    def __init__(self, port: KerberosPort) -> None:
        self._port = port
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._port, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return method(*args, **kwargs)

        return call


@dataclass
class Outcome:
    """What an engine did with one datagram: every action, and how its counters moved."""

    actions: list[Action]
    counted: dict[str, int]
    kerberos: list[str]

    @property
    def sent(self) -> list[bytes]:
        return [a.data for a in self.actions if isinstance(a, SendDatagram)]

    @property
    def effects(self) -> list[Action]:
        """Everything but the Dropped notice and datagrams: SA and ticket actions, notices."""
        return [a for a in self.actions if not isinstance(a, Dropped | SendDatagram)]


@dataclass
class Attack:
    world: World
    a: KerberosHost
    b: KerberosHost
    key: Key = field(repr=False)  # the session key of a's ticket for b
    ticket: object
    create: bytes  # the CREATE that set up the pair, as b received it
    inner: tuple[KinkPayload, ...]  # its decrypted KINK_ENCRYPT content
    watched: dict[str, WatchedPort] = field(default_factory=dict)

    def host(self, name: str) -> Host:
        return self.world.host(name)

    def ap_req(self) -> ApReq:
        """A fresh AP-REQ (new authenticator) of a's ticket for b, with a's epoch."""
        raw, _ = self.a.port.make_ap_req(self.ticket)
        return ApReq(self.host("a").engine.epoch, raw)

    def forge(
        self,
        kind: MessageType = MessageType.CREATE,
        inner: tuple[KinkPayload, ...] | None = None,
        *,
        outer: tuple[KinkPayload, ...] | None = None,
        plaintext: bytes | None = None,
        key: Key | None = None,
        xid: int = 0x7E57,
    ) -> bytes:
        """A sealed command: `outer` payloads (default: a fresh AP-REQ), KINK_ENCRYPT over
        `plaintext` (raw octets) or `inner` (default: the captured CREATE's), Cksum by `key`."""
        sealer = SessionSealer(key or self.key)
        msg = Message(kind, xid, outer if outer is not None else (self.ap_req(),))
        if plaintext is not None:
            msg = dataclasses.replace(msg, ciphertext=sealer.encrypt(plaintext))
        else:
            msg = dataclasses.replace(msg, encrypted=inner if inner is not None else self.inner)
        return encode(msg, sealer)

    def hit(self, name: str, data: bytes, source: str = A) -> Outcome:
        """Deliver `data` to host `name` from `source`; its actions are returned, not run."""
        engine = self.host(name).engine
        watched = self.watched[name]
        before, calls = dict(engine.counters), len(watched.calls)
        engine.datagram_received(data, (source, PORT), self.world.now)
        actions: list[Action] = []
        while (action := engine.next_action()) is not None:
            actions.append(action)
        counted = {
            k: v - before.get(k, 0) for k, v in engine.counters.items() if v != before.get(k, 0)
        }
        return Outcome(actions, counted, watched.calls[calls:])

    def sas(self, name: str) -> dict[tuple[str, int, int], object]:
        return dict(self.host(name).kernel.sas)


def make_attack(make_world: WorldFactory, kerberos_host: KerberosHostFactory) -> Attack:
    world = make_world()
    a, b, c = kerberos_host("a"), kerberos_host("b"), kerberos_host("c")
    # b also knows host c, at another address, with a principal of its own.
    engine = world.host("b").engine
    (peer_a,) = engine.config.peers
    peer_c = dataclasses.replace(peer_a, name="c", address=C, principal=c.principal)
    config = dataclasses.replace(engine.config, peers=(peer_a, peer_c))
    world.host("b").engine = Engine(config, b.port, epoch=engine.epoch, now=world.now)
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    create = next(f.data for f in world.delivered if decode(f.data).type == MessageType.CREATE)
    ticket = a.port.ticket_for(b.principal)
    key = a.port.ticket_key(ticket)
    inner = open_message(decode(create), key).encrypted
    assert inner is not None
    attack = Attack(world, a, b, key, ticket, create, inner)
    for host in world.hosts.values():
        watched = WatchedPort(host.engine.kerberos)
        host.engine.kerberos = watched
        attack.watched[host.name] = watched
    return attack


def patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    """`data` with the big-endian field `fmt` at `offset` set to `value`."""
    field_ = struct.pack(">" + fmt, value)
    return data[:offset] + field_ + data[offset + len(field_) :]
