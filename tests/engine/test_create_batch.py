"""The negotiations a run of inputs starts for a peer (ACQUIREs, rekeys) go in one CREATE,
"any number of KINK_ISAKMP payloads within a single KINK message" (RFC 4430 §4.2.6), started
once the engine's actions run out (Engine.next_action), cut at MAX_CREATE_OCTETS of them; those
that must differ within a transaction (with and without KE) go in CREATEs of their own. The
responder answers each negotiation, and both sides end with the same SAs."""

import dataclasses
from typing import Any

import pytest

from kink.crypto.rfc3961 import Key
from kink.crypto.seal import open_message
from kink.engine.config import Policy, StartAction
from kink.engine.events import (
    Acquire,
    InstallSa,
    NegotiationFailed,
    PeerRemoved,
    Rekey,
    Terminate,
)
from kink.engine.initiator import MAX_CREATE_OCTETS
from kink.wire import Isakmp, KePayload, Message, MessageType, NotifyPayload, decode
from kink.wire.ipsec_doi import NotifyType
from tests.engine.conftest import ADDRESSES, AH_ESP, KerberosHostFactory, WorldFactory
from tests.engine.harness import Host, World, check_consistent
from tests.engine.many_policies import port_policies, sent_of, session_key

pytestmark = pytest.mark.kdc

A, B = ADDRESSES["a"], ADDRESSES["b"]
# Octets a KINK datagram stays under, well under 1,400 (no IP fragmentation). A CREATE's own
# size varies by 16 octets or so from one AP-REQ to the next.
WELL_UNDER = 1250
MODP_1024 = 2


def _world(
    make_world: WorldFactory,
    count: int,
    *,
    b_count: int | None = None,
    engine_b: dict[str, Any] | None = None,
    **extra: Any,
) -> World:
    """a (trap: it negotiates on ACQUIRE) and b with `count` policies between them (b grants
    the first `b_count` only)."""
    return make_world(
        a={
            "policies": port_policies(A, B, count, ours=True),
            "start_action": StartAction.TRAP,
            **extra,
        },
        b={
            "policies": port_policies(B, A, count if b_count is None else b_count, ours=False),
            **extra,
        },
        engine={"max_outstanding": 64},
        engine_b=engine_b,
    )


def _acquire_all(world: World, *, seq: int = 0) -> list[Policy]:
    """An ACQUIRE for each of a's policies, in one run of inputs (nothing drained between)."""
    a = world.host("a")
    policies = list(a.engine.peer_policies["b"])
    for i, policy in enumerate(policies):
        a.engine.kernel_event(Acquire(policy.reqid, seq=seq + i if seq else 0), world.now)
    return policies


def _isakmps(data: bytes, key: Key, request: MessageType | None = None) -> list[Isakmp]:
    """The KINK_ISAKMP payloads of a command (or of the REPLY to `request`)."""
    opened = open_message(decode(data), key, request=request)
    return [p for p in opened.encrypted or () if isinstance(p, Isakmp)]


def _negotiations(host: Host, key: Key) -> list[int]:
    """The KINK_ISAKMP payloads of each CREATE `host` sent, in order."""
    return [len(_isakmps(d, key)) for d in sent_of(host, MessageType.CREATE)]


@pytest.mark.parametrize("responder_nonce", [False, True], ids=["2-way", "3-way"])
def test_acquires_of_one_run_go_in_one_create(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory, responder_nonce: bool
) -> None:
    world = _world(make_world, 4, engine_b={"responder_nonce": responder_nonce})
    _acquire_all(world)
    world.settle()
    a, b, key = world.host("a"), world.host("b"), session_key(kerberos_host)
    assert _negotiations(a, key) == [4]
    [reply] = sent_of(b, MessageType.REPLY)
    assert len(_isakmps(reply, key, MessageType.CREATE)) == 4
    assert len(sent_of(a, MessageType.ACK)) == (1 if responder_nonce else 0)
    assert check_consistent(world) == 8
    assert len(world.established("a")) == len(world.established("b")) == 4
    assert not a.engine.peers["b"].creating


def test_a_second_acquire_for_a_waiting_policy_is_coalesced(make_world: WorldFactory) -> None:
    world = _world(make_world, 2)
    _acquire_all(world)
    _acquire_all(world)  # the same flows again, their CREATE still waiting for the run's end
    a = world.host("a")
    assert a.engine.counters["acquire-coalesced"] == 2
    assert a.engine.snapshot().peers[0].queued == 1  # one CREATE waiting
    world.settle()
    assert len(sent_of(a, MessageType.CREATE)) == 1
    assert check_consistent(world) == 4


def test_a_lone_acquire_leaves_in_its_own_run(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = _world(make_world, 1)
    _acquire_all(world)
    world.drain()  # the run's actions: the CREATE is out, nothing waits for a later input
    assert len(world.flight) == 1
    world.settle()
    assert _negotiations(world.host("a"), session_key(kerberos_host)) == [1]
    assert check_consistent(world) == 2


def test_rekeys_of_one_run_go_in_one_create_and_one_delete(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = _world(make_world, 4)
    _acquire_all(world)
    world.settle()
    a, key = world.host("a"), session_key(kerberos_host)
    old = {c.id: c for c in a.engine.sadb.children.values()}
    world.batched = True  # the REPLY's run settles every new pair before the DELETE
    a.engine.request(Rekey(peer="b"), world.now)
    world.settle()
    assert _negotiations(a, key) == [4, 4]
    new = list(a.engine.sadb.children.values())
    assert sorted(c.rekey_of for c in new if c.rekey_of is not None) == sorted(old)
    assert len(sent_of(a, MessageType.DELETE)) == 1  # the old pairs, together (§3.3)
    assert not set(old) & set(a.engine.sadb.children)
    assert check_consistent(world) == 8
    for host in world.hosts.values():
        assert len(host.engine.sadb.children) == 4
    assert not any(c.rekeying for c in new)


def test_creates_are_cut_to_fit_a_datagram(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    # ESP with IDs: 104 KINK_ISAKMP octets a negotiation; 480 of them take 4 at most.
    assert MAX_CREATE_OCTETS // 104 == 4
    world = _world(make_world, 10)
    _acquire_all(world)
    world.settle()
    a, b, key = world.host("a"), world.host("b"), session_key(kerberos_host)
    assert _negotiations(a, key) == [4, 4, 2]
    datagrams = sent_of(a, MessageType.CREATE) + sent_of(b, MessageType.REPLY)
    assert max(len(d) for d in datagrams) < WELL_UNDER
    assert check_consistent(world) == 20


@pytest.mark.parametrize(
    ("extra", "per_create"),
    [({"proposals": (AH_ESP,)}, 3), ({"pfs_group": MODP_1024}, 2)],
    ids=["ah-esp", "ke"],
)
def test_the_cut_follows_what_a_negotiation_carries(
    make_world: WorldFactory,
    kerberos_host: KerberosHostFactory,
    extra: dict[str, Any],
    per_create: int,
) -> None:
    world = _world(make_world, 5, **extra)
    _acquire_all(world)
    world.settle()
    a, b, key = world.host("a"), world.host("b"), session_key(kerberos_host)
    counts = _negotiations(a, key)
    assert counts[0] == per_create and sum(counts) == 5
    datagrams = sent_of(a, MessageType.CREATE) + sent_of(b, MessageType.REPLY)
    assert max(len(d) for d in datagrams) < WELL_UNDER
    assert check_consistent(world) == 10 * (2 if "proposals" in extra else 1)


def test_with_and_without_ke_go_in_creates_of_their_own(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    """b takes no KE: a's CREATE with KE is refused per negotiation (INVALID-PAYLOAD-TYPE,
    §3.2) and retried without KE, all of it in one CREATE; an ACQUIRE in the run of that
    REPLY still offers KE, in a CREATE of its own."""
    policies = port_policies(A, B, 3, ours=True)
    world = make_world(
        a={"policies": policies, "start_action": StartAction.TRAP, "pfs_group": MODP_1024},
        b={"policies": port_policies(B, A, 3, ours=False)},
    )
    a, key = world.host("a"), session_key(kerberos_host)
    for policy in policies[:2]:
        a.engine.kernel_event(Acquire(policy.reqid), world.now)
    world.step()  # the CREATE to b, its REPLY back
    world.batched = True
    a.engine.kernel_event(Acquire(policies[2].reqid), world.now)  # the REPLY's run
    world.step()
    creates = sent_of(a, MessageType.CREATE)
    with_ke = [
        [any(isinstance(p, KePayload) for p in i.payloads) for i in _isakmps(c, key)]
        for c in creates
    ]
    assert sorted(with_ke) == sorted([[True, True], [False, False], [True]])
    world.settle()
    assert check_consistent(world) == 6


@pytest.mark.parametrize("responder_nonce", [False, True], ids=["2-way", "3-way"])
def test_a_refused_negotiation_leaves_the_others(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory, responder_nonce: bool
) -> None:
    world = _world(make_world, 4, b_count=3, engine_b={"responder_nonce": responder_nonce})
    _acquire_all(world)
    world.settle(0)
    a, b, key = world.host("a"), world.host("b"), session_key(kerberos_host)
    assert _negotiations(a, key) == [4]
    [reply] = sent_of(b, MessageType.REPLY)
    notifies = [
        p.notify_type
        for i in _isakmps(reply, key, MessageType.CREATE)
        for p in i.payloads
        if isinstance(p, NotifyPayload)
    ]
    assert notifies == [NotifyType.INVALID_ID_INFORMATION]
    refused = [n for n in a.notices if isinstance(n, NegotiationFailed)]
    assert [n.code for n in refused] == ["INVALID-ID-INFORMATION"]
    assert check_consistent(world) == 6
    assert not a.engine.peers["b"].creating


def test_a_lost_create_is_sent_again_whole(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = _world(make_world, 3)
    lost: list[bytes] = []

    def lose_first(item: Any) -> str:
        if not lost:
            lost.append(item.data)
            return "drop"
        return "deliver"

    world.fate = lose_first
    _acquire_all(world)
    world.settle()
    a, key = world.host("a"), session_key(kerberos_host)
    assert _negotiations(a, key) == [3, 3]  # the same transaction, rebuilt (§9)
    assert len({decode(c).xid for c in sent_of(a, MessageType.CREATE)}) == 1
    assert check_consistent(world) == 6


def test_removing_the_peer_drops_the_waiting_creates(make_world: WorldFactory) -> None:
    world = _world(make_world, 3)
    _acquire_all(world)
    a = world.host("a")
    assert len(a.engine.peers["b"].creating) == 3
    state = a.engine.peers["b"]
    a.engine.remove_peer("b", world.now)
    world.settle()
    assert not sent_of(a, MessageType.CREATE)
    assert all(isinstance(x, PeerRemoved) for x in a.kernel.log)  # no SA, no ticket asked
    assert not a.engine.creates and not state.creating
    assert any(isinstance(n, PeerRemoved) for n in a.notices)
    assert check_consistent(world) == 0


def test_new_peer_settings_drop_only_the_waiting_negotiations_they_disallow(
    make_world: WorldFactory, kerberos_host: KerberosHostFactory
) -> None:
    world = _world(make_world, 3)
    _acquire_all(world)
    a = world.host("a")
    config = a.engine.peers["b"].config
    a.engine.replace_peer(dataclasses.replace(config, policies=config.policies[:1]), world.now)
    assert list(a.engine.peers["b"].creating) == [config.policies[0]]
    world.settle()
    assert _negotiations(a, session_key(kerberos_host)) == [1]
    assert check_consistent(world) == 2
    assert not a.engine.peers["b"].creating


def test_terminate_drops_the_waiting_rekeys(make_world: WorldFactory) -> None:
    world = _world(make_world, 2)
    _acquire_all(world)
    world.settle()
    a = world.host("a")
    a.engine.request(Rekey(peer="b"), world.now)
    a.engine.request(Terminate(peer="b"), world.now)  # in the same run
    world.settle()
    assert len(sent_of(a, MessageType.CREATE)) == 1  # the first, not the rekey's
    assert not a.engine.peers["b"].creating
    assert not a.engine.sadb.children and check_consistent(world) == 0


def test_each_outbound_sa_answers_its_own_acquire(make_world: WorldFactory) -> None:
    world = _world(make_world, 3)
    policies = _acquire_all(world, seq=70)
    world.settle()
    a = world.host("a")
    outbound = [x for x in a.kernel.log if isinstance(x, InstallSa) and not x.spec.inbound]
    assert sorted((x.spec.reqid, x.acquire_seq) for x in outbound) == [
        (p.reqid, 70 + i) for i, p in enumerate(policies)
    ]
    inbound = [x for x in a.kernel.log if isinstance(x, InstallSa) and x.spec.inbound]
    assert len(inbound) == 3 and all(x.acquire_seq is None for x in inbound)
    assert all(
        x.acquire_seq is None for x in world.host("b").kernel.log if isinstance(x, InstallSa)
    )


@pytest.mark.parametrize("responder_nonce", [False, True], ids=["2-way", "3-way"])
def test_a_peer_answering_only_the_first_gets_one_negotiation_per_create(
    make_world: WorldFactory,
    kerberos_host: KerberosHostFactory,
    monkeypatch: pytest.MonkeyPatch,
    responder_nonce: bool,
) -> None:
    """racoon2's kinkd takes the first KINK_ISAKMP of a CREATE and ignores the others
    ("duplicate KINK_ISAKMP; currently not supported, ignored"): its REPLY answers the first
    only. The others are negotiated anew, and the peer gets one per CREATE from then on."""
    world = _world(make_world, 3, engine_b={"responder_nonce": responder_nonce})
    b = world.host("b").engine
    answer = b._answer_create

    def first_only(peer: Any, accepted: Any, msg: Message, entry: Any, now: float) -> None:
        isakmps = [p for p in msg.encrypted or () if isinstance(p, Isakmp)]
        kept = tuple(p for p in msg.encrypted or () if p is isakmps[0] or p not in isakmps)
        answer(peer, accepted, dataclasses.replace(msg, encrypted=kept), entry, now)

    monkeypatch.setattr(b, "_answer_create", first_only)
    _acquire_all(world)
    world.settle()
    a, key = world.host("a"), session_key(kerberos_host)
    assert _negotiations(a, key) == [3, 1, 1]
    assert a.engine.peers["b"].one_negotiation
    assert a.engine.counters["create-partly-answered"] == 1
    assert not any(isinstance(n, NegotiationFailed) for n in a.notices)
    assert check_consistent(world) == 6
    assert not a.engine.peers["b"].creating
