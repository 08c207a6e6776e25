"""Our inbound SPIs (RFC 4303 §2.1, RFC 4430 §3.2, §7): drawn by the engine and installed at
once (add_sa), drawn again when the kernel holds the SPI (EEXIST) with the SA keyed anew, at
most SPI_DRAWS times; reserved in the kernel (AllocateSpi, then filled) only for an SA whose
keys come with the REPLY; never named in a message before the SA (or its reservation) is in."""

import random
from typing import Any

import pytest

from kink.crypto.keymat import keymat
from kink.crypto.rfc3961 import Key
from kink.crypto.seal import open_message
from kink.engine import Engine
from kink.engine.core import SPI_DRAWS, SPI_END, SPI_MIN
from kink.engine.events import (
    AllocateSpi,
    Initiate,
    InstallSa,
    NegotiationFailed,
    Terminate,
)
from kink.wire import Isakmp, MessageType, NoncePayload, SaPayload, decode
from kink.wire.ipsec_doi import ProtocolId
from tests.engine.conftest import (
    ADDRESSES,
    AH_ESP,
    ESP_AES128_SHA1,
    KerberosHostFactory,
    WorldFactory,
)
from tests.engine.harness import InFlight, SaKey, World, check_consistent

pytestmark = pytest.mark.kdc

A, B = ADDRESSES["a"], ADDRESSES["b"]
ESP, AH = ProtocolId.ESP, ProtocolId.AH
TAKEN, FRESH = 0x0BAD_5B15, 0x600D_5B15


class Scripted(random.Random):
    """An SPI source drawing the SPIs given in turn, the last one for ever; notes each range
    it was asked for."""

    def __init__(self, *spis: int) -> None:
        super().__init__(0)
        self.spis = list(spis)
        self.ranges: list[tuple[int, int | None]] = []

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        self.ranges.append((start, stop))
        return self.spis.pop(0) if len(self.spis) > 1 else self.spis[0]


def _session_key(kerberos_host: KerberosHostFactory) -> Key:
    ticket = kerberos_host("a").credentials.cached_ticket(kerberos_host("b").principal)
    assert ticket is not None
    return Key(ticket.session_key.enctype, ticket.session_key.material)


def _opened(item: InFlight, key: Key) -> list[Any]:
    """The payloads inside the KINK_ISAKMPs of a CREATE or of its REPLY."""
    msg = decode(item.data)
    request = MessageType.CREATE if msg.type == MessageType.REPLY else None
    opened = open_message(msg, key, request=request)
    return [p for i in opened.encrypted or () if isinstance(i, Isakmp) for p in i.payloads]


def _named(item: InFlight, key: Key) -> set[SaKey]:
    """The inbound SAs of the sender that the SA payloads of a datagram name."""
    return {
        (item.src, proposal.protocol, int.from_bytes(proposal.spi, "big"))
        for payload in _opened(item, key)
        if isinstance(payload, SaPayload)
        for proposal in payload.proposals
    }


def _inbound_installs(world: World, name: str) -> list[InstallSa]:
    return [x for x in world.host(name).kernel.log if isinstance(x, InstallSa) and x.spec.inbound]


def _failures(world: World, name: str) -> list[NegotiationFailed]:
    return [n for n in world.host(name).notices if isinstance(n, NegotiationFailed)]


def _keyed_for(world: World, name: str, key: Key, dst: str, spi: int, ni: bytes) -> None:
    """The SA (dst, ESP, spi) of host `name` holds KEYMAT for that SPI (2-way: no Nr)."""
    spec = world.host(name).kernel.sas[(dst, ESP, spi)]
    expected = keymat(key, ESP, spi.to_bytes(4, "big"), ni, None, length=36)
    assert bytes(spec.enc_key) + bytes(spec.auth_key) == bytes(expected)


@pytest.mark.parametrize(
    ("a", "b", "engine_b", "reserved"),
    [
        ({}, {}, {}, set()),  # 2-way: the optimistic SA is in before the CREATE goes
        ({}, {}, {"responder_nonce": True}, set()),  # 3-way: the optimistic SA re-keyed
        ({"pfs_group": 14}, {"pfs_group": 14}, {}, {ESP}),  # KE: reserved, keys on the REPLY
        ({"proposals": (AH_ESP,)}, {"proposals": (AH_ESP,)}, {}, set()),
        # Another bundle chosen: AH, outside the first bundle, had its SPI reserved.
        ({"proposals": (ESP_AES128_SHA1, AH_ESP)}, {"proposals": (AH_ESP,)}, {}, {AH}),
    ],
)
def test_no_message_names_an_spi_before_its_sa_is_in(
    make_world: WorldFactory,
    kerberos_host: KerberosHostFactory,
    a: dict[str, Any],
    b: dict[str, Any],
    engine_b: dict[str, Any],
    reserved: set[int],
) -> None:
    world = make_world(a=a, b=b, engine_b=engine_b)
    world.helper_lag = True  # the helper answers after the engine went on, as a process does
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) > 0
    key = _session_key(kerberos_host)
    named = 0
    for item in world.delivered:
        if decode(item.data).type not in (MessageType.CREATE, MessageType.REPLY):
            continue
        for sa in _named(item, key):
            named += 1
            # Only an SPI whose keys the REPLY brings may go out merely reserved.
            assert sa in item.installed or (sa[1] in reserved and sa in item.larval), sa
    assert named >= 2


def test_only_an_sa_keyed_on_the_reply_reserves_its_spi(make_world: WorldFactory) -> None:
    world = make_world(a={"pfs_group": 14}, b={"pfs_group": 14})
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    log_a, log_b = world.host("a").kernel.log, world.host("b").kernel.log
    assert [x.protocol for x in log_a if isinstance(x, AllocateSpi)] == [ESP]
    assert [x.fills for x in _inbound_installs(world, "a")] == [True]
    # The responder knows its keys at once (Nr and g^xy are its own to make): no reservation.
    assert not [x for x in log_b if isinstance(x, AllocateSpi)]
    assert [x.fills for x in _inbound_installs(world, "b")] == [False]

    world = make_world()
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    for name in ("a", "b"):
        assert not [x for x in world.host(name).kernel.log if isinstance(x, AllocateSpi)]
        assert [x.fills for x in _inbound_installs(world, name)] == [False]


def test_responder_draws_again_when_its_spi_is_taken(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = make_world()
    b = world.host("b")
    b.engine.spi_rng = Scripted(TAKEN, FRESH)
    b.kernel.others.add((B, ESP, TAKEN))  # another SA holds it in b's kernel
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    assert not _failures(world, "a") and not _failures(world, "b")
    assert [x.spec.spi for x in _inbound_installs(world, "b")] == [TAKEN, FRESH]
    (established,) = world.established("b")
    assert established.spis == ((ESP, FRESH, established.spis[0][2]),)
    # The REPLY names the SPI installed, and the SA holds the KEYMAT of that SPI (§7); a
    # keyed its outbound SA alike (check_consistent compared the keys).
    key = _session_key(kerberos_host)
    create, reply = world.delivered
    assert _named(reply, key) == {(B, ESP, FRESH)}
    (ni,) = [p.data for p in _opened(create, key) if isinstance(p, NoncePayload)]
    _keyed_for(world, "b", key, B, FRESH, ni)
    # The pair goes as any other; the other owner's SA stays (the harness refuses its delete).
    world.host("a").engine.request(Terminate(peer="b"), world.now)
    world.settle()
    assert check_consistent(world) == 0
    assert b.kernel.others == {(B, ESP, TAKEN)}


def test_initiator_draws_again_before_the_create_leaves(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = make_world()
    a = world.host("a")
    a.engine.spi_rng = Scripted(TAKEN, FRESH)
    a.kernel.others.add((A, ESP, TAKEN))
    a.engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    assert not _failures(world, "a") and not _failures(world, "b")
    assert [x.spec.spi for x in _inbound_installs(world, "a")] == [TAKEN, FRESH]
    key = _session_key(kerberos_host)
    create, _reply = world.delivered  # one CREATE: the taken SPI never left
    assert _named(create, key) == {(A, ESP, FRESH)}
    (ni,) = [p.data for p in _opened(create, key) if isinstance(p, NoncePayload)]
    _keyed_for(world, "a", key, A, FRESH, ni)
    assert a.kernel.others == {(A, ESP, TAKEN)}


def test_responder_gives_up_after_spi_draws(make_world: WorldFactory) -> None:
    world = make_world()
    b = world.host("b")
    b.engine.spi_rng = Scripted(TAKEN)  # every SPI it draws is taken
    b.kernel.others.add((B, ESP, TAKEN))
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    # Each CREATE (the first and the initiator's retries with new SPIs, §3.2) is refused
    # with INVALID-SPI after SPI_DRAWS tries; nothing is left installed on either side.
    assert check_consistent(world) == 0
    creates = sum(1 for d in world.delivered if d.src == A)
    assert creates > 1
    assert len(_inbound_installs(world, "b")) == creates * SPI_DRAWS
    assert {n.code for n in _failures(world, "b")} == {"INVALID-SPI"}
    assert {n.code for n in _failures(world, "a")} == {"INVALID-SPI"}
    assert b.kernel.others == {(B, ESP, TAKEN)} and not b.kernel.sas
    assert not world.host("a").kernel.sas


def test_initiator_gives_up_after_spi_draws(make_world: WorldFactory) -> None:
    world = make_world()
    a = world.host("a")
    a.engine.spi_rng = Scripted(TAKEN)
    a.kernel.others.add((A, ESP, TAKEN))
    a.engine.request(Initiate("b"), world.now)
    world.settle()
    assert not world.delivered  # no CREATE went out
    assert check_consistent(world) == 0
    assert len(_inbound_installs(world, "a")) == SPI_DRAWS
    (failed,) = _failures(world, "a")
    assert failed.reason == "optimistic SA install failed: EEXIST"
    assert not a.engine.snapshot().peers[0].transactions


def test_an_spi_in_use_inbound_is_not_drawn(make_world: WorldFactory) -> None:
    world = make_world()
    engine = world.host("a").engine
    engine.request(Initiate("b"), world.now)
    world.settle()
    ((_, spi_in, spi_out),) = world.established("a")[0].spis
    engine.spi_rng = source = Scripted(spi_in, spi_out)
    # Our own inbound SPI is drawn again; the peer's (our outbound SPI) may be ours inbound.
    assert engine.draw_spi(ESP) == spi_out
    assert source.ranges == [(SPI_MIN, SPI_END)] * 2 == [(0x100, 0x1_0000_0000)] * 2


def test_inbound_spis_come_from_the_os_csprng(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    config = make_world().host("a").engine.config
    engine = Engine(config, kerberos_host("a").port, epoch=1, now=0.0)
    assert isinstance(engine.spi_rng, random.SystemRandom)
