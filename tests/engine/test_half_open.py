"""Giving up never leaves a pair half-open (§3.2, §3.3, §9): the initiator DELETEs what the
responder installed when it rejects the REPLY or hears none; the responder DELETEs the pair
whose ACK never came."""

from dataclasses import replace

import pytest

from kink.engine import proposals, responder
from kink.engine.config import PeerConfig
from kink.engine.events import Initiate, NegotiationFailed, SaDeleted, SaEstablished
from kink.engine.proposals import Choice
from kink.wire import Attribute, MessageType, SaPayload
from kink.wire.ipsec_doi import AttributeType
from tests.engine.conftest import WorldFactory
from tests.engine.harness import InFlight, World, check_consistent

pytestmark = pytest.mark.kdc

A, B = "192.0.2.1", "192.0.2.2"


def _raise_lifetimes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make b's REPLY claim a longer lifetime than offered, which the initiator must refuse
    (§3.2: NO-PROPOSAL-CHOSEN) after b has installed its SAs."""
    select = proposals.select

    def raising(sa: SaPayload, peer: PeerConfig, group: int | None) -> tuple[Choice, SaPayload]:
        choice, reply = select(sa, peer, group)
        longer = Attribute.of_int(AttributeType.SA_LIFE_DURATION, 10 * peer.lifetime_seconds)
        proposals = tuple(
            replace(
                p,
                transforms=tuple(
                    replace(
                        t,
                        attributes=tuple(
                            longer if a.type == AttributeType.SA_LIFE_DURATION else a
                            for a in t.attributes
                        ),
                    )
                    for t in p.transforms
                ),
            )
            for p in reply.proposals
        )
        return choice, replace(reply, proposals=proposals)

    monkeypatch.setattr(responder, "select", raising)


def _kinds(world: World, src: str) -> list[int]:
    return [d.data[0] for d in world.delivered if d.src == src]


def _gone_everywhere(world: World) -> None:
    assert check_consistent(world) == 0
    for name in ("a", "b"):
        assert not world.host(name).engine.sadb.children


@pytest.mark.parametrize(("three_way", "ack_late"), [(False, False), (True, False), (True, True)])
def test_rejected_reply_is_deleted_at_the_responder(
    make_world: WorldFactory, monkeypatch: pytest.MonkeyPatch, three_way: bool, ack_late: bool
) -> None:
    _raise_lifetimes(monkeypatch)
    world = make_world(engine_b={"responder_nonce": three_way})
    if ack_late:
        delayed: set[int] = set()

        def fate(item: InFlight) -> str:
            if item.data[0] == MessageType.ACK and item.seq not in delayed:
                delayed.add(item.seq)  # behind the DELETE sent with it
                return "delay"
            return "deliver"

        world.fate = fate
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    _gone_everywhere(world)
    codes = [n.code for n in world.host("a").notices if isinstance(n, NegotiationFailed)]
    assert codes == ["NO-PROPOSAL-CHOSEN"]
    expected = [MessageType.CREATE] + ([MessageType.ACK] if three_way else [])
    assert sorted(_kinds(world, A)) == sorted([*expected, MessageType.DELETE])
    assert [n for n in world.host("b").notices if isinstance(n, SaDeleted)]


def test_no_reply_at_all_deletes_at_the_responder(make_world: WorldFactory) -> None:
    """Every REPLY lost: b holds a 2-way pair, a gives up and DELETEs it."""
    world = make_world()
    lost: list[int] = []

    def fate(item: InFlight) -> str:
        if item.src == B and len(lost) < 5:
            lost.append(item.seq)
            return "drop"
        return "deliver"

    world.fate = fate
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    _gone_everywhere(world)
    assert [n for n in world.host("b").notices if isinstance(n, SaEstablished)]
    assert _kinds(world, A) == [MessageType.CREATE] * 5 + [MessageType.DELETE]


def test_every_ack_lost_deletes_at_the_initiator(make_world: WorldFactory) -> None:
    """§9: a's pair is in place, none of its ACKs arrives; b gives up and DELETEs the pair,
    which a honours (the DELETE is authenticated)."""
    world = make_world(engine_b={"responder_nonce": True})
    world.fate = lambda item: "drop" if item.data[0] == MessageType.ACK else "deliver"
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    _gone_everywhere(world)
    assert [n for n in world.host("a").notices if isinstance(n, SaEstablished)]
    assert [n for n in world.host("a").notices if isinstance(n, SaDeleted)]
    reasons = [n.reason for n in world.host("b").notices if isinstance(n, NegotiationFailed)]
    assert reasons == ["no ACK"]
    assert _kinds(world, B).count(MessageType.DELETE) == 1


def test_retransmitted_create_after_giving_up_gets_no_reply(make_world: WorldFactory) -> None:
    """b (a shorter retransmission cycle than a's) gave up waiting for the ACK while a still
    retransmits its CREATE: the cached REPLY must not go out again, or a would install a pair
    b no longer has."""
    world = make_world(engine_b={"responder_nonce": True, "max_attempts": 3})
    start = world.now
    world.fate = lambda item: "drop" if item.src == B and world.now < start + 7 else "deliver"
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    _gone_everywhere(world)
    b = world.host("b")
    assert [n.reason for n in b.notices if isinstance(n, NegotiationFailed)] == ["no ACK"]
    assert b.engine.counters["retransmitted-command"] >= 1
    assert not [n for n in world.host("a").notices if isinstance(n, SaEstablished)]
