"""CREATE (RFC 4430 §3.2): 2-way, 3-way, bundles, several SAs, IDs, PFS, errors."""

from ipaddress import ip_network
from typing import Any

import pytest

from kink.crypto.keymat import keymat
from kink.crypto.rfc3961 import Key
from kink.crypto.seal import open_message
from kink.engine.config import Policy
from kink.engine.events import (
    Acquire,
    HelperResult,
    Initiate,
    InstallSa,
    NegotiationFailed,
    SaEstablished,
    Selector,
    UpdateSa,
)
from kink.wire import Isakmp, NoncePayload, SaPayload, decode
from tests.engine.conftest import AH_ESP, ESP_AES256_SHA256, ESP_GCM, WorldFactory
from tests.engine.harness import check_consistent

pytestmark = pytest.mark.kdc


def test_two_way_optimistic(make_world: WorldFactory) -> None:
    world = make_world()
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    (ea,) = world.established("a")
    (eb,) = world.established("b")
    assert not ea.three_way and not eb.three_way
    assert [(p, i, o) for p, i, o in ea.spis] == [(p, o, i) for p, i, o in eb.spis]
    # 2 datagrams: CREATE and REPLY without ACKREQ
    assert len(world.delivered) == 2


def _only_pairs(world_host_notices: list[object]) -> list[SaEstablished]:
    return [n for n in world_host_notices if isinstance(n, SaEstablished)]


def test_three_way_when_responder_adds_a_nonce(make_world: WorldFactory) -> None:
    world = make_world(engine_b={"responder_nonce": True})
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    assert world.established("a")[0].three_way and world.established("b")[0].three_way
    assert len(world.delivered) == 3  # CREATE, REPLY with ACKREQ, ACK
    # The optimistic inbound SA was replaced, not duplicated.
    kinds = [type(x).__name__ for x in world.host("a").kernel.log]
    assert kinds.count("UpdateSa") == 1


def test_three_way_when_responder_picks_another_proposal(make_world: WorldFactory) -> None:
    world = make_world(
        a={"proposals": (ESP_GCM, ESP_AES256_SHA256)}, b={"proposals": (ESP_AES256_SHA256,)}
    )
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    spec = next(iter(world.host("a").kernel.sas.values()))
    assert spec.authentication == "hmac(sha256)" and len(spec.enc_key) == 32
    assert world.established("a")[0].three_way


def test_no_proposal_chosen(make_world: WorldFactory) -> None:
    world = make_world(a={"proposals": (ESP_GCM,)})
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 0
    failed = [n for n in world.host("a").notices if isinstance(n, NegotiationFailed)]
    assert failed[0].code == "NO-PROPOSAL-CHOSEN"


def test_bundle_ah_and_esp(make_world: WorldFactory) -> None:
    world = make_world(a={"proposals": (AH_ESP,)}, b={"proposals": (AH_ESP,)})
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 4
    (est,) = world.established("a")
    assert sorted(p for p, _, _ in est.spis) == [2, 3]


def _policies(*pairs: tuple[str, str, int]) -> tuple[Policy, ...]:
    return tuple(
        Policy(Selector(ip_network(local)), Selector(ip_network(remote)), reqid)
        for local, remote, reqid in pairs
    )


def test_several_sas_in_one_create_with_ids(make_world: WorldFactory) -> None:
    a_side = _policies(("10.1.0.0/24", "10.2.0.0/24", 1), ("10.1.1.0/24", "10.2.1.0/24", 2))
    b_side = _policies(("10.2.0.0/24", "10.1.0.0/24", 1), ("10.2.1.0/24", "10.1.1.0/24", 2))
    world = make_world(
        a={"policies": a_side, "mode": "tunnel"}, b={"policies": b_side, "mode": "tunnel"}
    )
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 4
    assert len(world.delivered) == 2  # one CREATE carried both
    spec = next(s for s in world.host("b").kernel.sas.values() if s.inbound and s.reqid == 2)
    assert spec.src_selector.network == ip_network("10.1.1.0/24") and spec.mode == "tunnel"


def test_unauthorized_selectors_are_refused(make_world: WorldFactory) -> None:
    a_side = _policies(("10.1.0.0/24", "10.9.0.0/24", 1))
    b_side = _policies(("10.2.0.0/24", "10.1.0.0/24", 1))
    world = make_world(a={"policies": a_side}, b={"policies": b_side})
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 0
    codes = [n.code for n in world.host("a").notices if isinstance(n, NegotiationFailed)]
    assert "INVALID-ID-INFORMATION" in codes


def test_narrower_selectors_are_granted(make_world: WorldFactory) -> None:
    """A subnet, protocol and port inside b's policy: b grants them as asked (narrowing)."""
    narrow_local = Selector(ip_network("10.1.0.0/25"), 6)
    narrow_remote = Selector(ip_network("10.2.0.128/26"), 6, 443)
    a_side = (Policy(narrow_local, narrow_remote, 1),)
    b_side = (
        Policy(Selector(ip_network("10.2.0.0/24"), 6), Selector(ip_network("10.1.0.0/24")), 7),
    )
    world = make_world(a={"policies": a_side}, b={"policies": b_side})
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    spec = next(s for s in world.host("b").kernel.sas.values() if s.inbound)
    assert (spec.src_selector, spec.dst_selector, spec.reqid) == (narrow_local, narrow_remote, 7)


@pytest.mark.parametrize(
    ("local", "remote"),
    [
        (Selector(ip_network("10.1.0.0/23")), Selector(ip_network("10.2.0.0/24"))),  # wider
        (Selector(ip_network("10.1.0.0/24")), Selector(ip_network("10.2.0.0/24"), 17)),  # UDP
        (Selector(ip_network("10.1.0.0/24"), 6, 22), Selector(ip_network("10.2.0.0/24"), 6)),
        (Selector(ip_network("2001:db8::/64")), Selector(ip_network("10.2.0.0/24"))),
    ],
)
def test_selectors_outside_the_policy_are_refused(
    make_world: WorldFactory, local: Selector, remote: Selector
) -> None:
    b_side = (
        Policy(
            Selector(ip_network("10.2.0.0/24"), 6), Selector(ip_network("10.1.0.0/24"), 6, 80), 7
        ),
    )
    world = make_world(a={"policies": (Policy(local, remote, 1),)}, b={"policies": b_side})
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 0
    for name in ("a", "b"):
        codes = [n.code for n in world.host(name).notices if isinstance(n, NegotiationFailed)]
        assert codes == ["INVALID-ID-INFORMATION"]


def test_wrong_principal_is_refused(make_world: WorldFactory, kerberos_host: Any) -> None:
    other = kerberos_host("c").principal
    world = make_world(b={"principal": other})
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 0
    codes = [n.code for n in world.host("b").notices if isinstance(n, NegotiationFailed)]
    assert "INVALID-ID-INFORMATION" in codes


def test_pfs_with_ke(make_world: WorldFactory) -> None:
    world = make_world(a={"pfs_group": 14}, b={"pfs_group": 14})
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    assert world.established("a")[0].three_way
    # no optimistic SA with KE (§3.2): nothing was updated
    assert not any(isinstance(x, UpdateSa) for x in world.host("a").kernel.log)


def test_unsupported_ke_then_retry_without(make_world: WorldFactory) -> None:
    world = make_world(a={"pfs_group": 14})
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    codes = [n.code for n in world.host("a").notices if isinstance(n, NegotiationFailed)]
    assert codes == ["INVALID-PAYLOAD-TYPE"]
    assert not world.established("a")[0].three_way


def test_pfs_required_does_not_retry(make_world: WorldFactory) -> None:
    world = make_world(a={"pfs_group": 14, "pfs_required": True})
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 0


def test_lower_lifetime_is_adopted(make_world: WorldFactory) -> None:
    world = make_world(b={"lifetime_seconds": 600})
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert check_consistent(world) == 2
    for host in ("a", "b"):
        assert {s.hard_seconds for s in world.host(host).kernel.sas.values()} == {600}
    assert not world.established("a")[0].three_way


def test_invalid_spi_then_retry(make_world: WorldFactory) -> None:
    world = make_world()
    kernel_b = world.host("b").kernel
    original = kernel_b.install
    refused: list[int] = []

    def install_once(action: InstallSa) -> HelperResult:
        if not action.spec.inbound and not refused:
            refused.append(action.spec.spi)
            return HelperResult(action.token, error="EEXIST")
        return original(action)

    kernel_b.install = install_once  # type: ignore[method-assign]
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    assert refused
    assert check_consistent(world) == 2
    codes = [n.code for n in world.host("a").notices if isinstance(n, NegotiationFailed)]
    assert codes == ["INVALID-SPI"]


def test_acquire_burst_is_one_exchange(make_world: WorldFactory) -> None:
    world = make_world()
    engine = world.host("a").engine
    reqid = next(iter(engine.policies))
    for _ in range(5):
        engine.kernel_event(Acquire(reqid), world.now)
    world.settle()
    assert check_consistent(world) == 2
    assert sum(1 for d in world.delivered if d.src == "192.0.2.1") == 1


def test_outstanding_cap_queues(make_world: WorldFactory) -> None:
    a_side = tuple(
        Policy(
            Selector(ip_network(f"10.1.{i}.0/24")), Selector(ip_network(f"10.2.{i}.0/24")), i + 1
        )
        for i in range(6)
    )
    b_side = tuple(Policy(p.remote, p.local, p.reqid) for p in a_side)
    world = make_world(
        a={"policies": a_side}, b={"policies": b_side}, engine={"max_outstanding": 2}
    )
    engine = world.host("a").engine
    for policy in a_side:  # each in a run of its own: a CREATE each (ACQUIREs of one run
        engine.kernel_event(Acquire(policy.reqid), world.now)  # share one, test_create_batch)
        world.drain()
    assert len(world.flight) == 2  # two CREATEs out, four queued
    assert engine.snapshot().peers[0].queued == 4
    world.settle()
    assert check_consistent(world) == 12


def test_keys_match_keymat(make_world: WorldFactory, kerberos_host: Any) -> None:
    """The installed keys are KEYMAT of kink.crypto computed from the decrypted CREATE."""
    world = make_world()
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    ticket = kerberos_host("a").credentials.cached_ticket(kerberos_host("b").principal)
    key = Key(ticket.session_key.enctype, ticket.session_key.material)
    create = world.delivered[0].data
    msg = open_message(decode(create), key)
    assert msg.encrypted is not None
    (isakmp,) = msg.encrypted
    assert isinstance(isakmp, Isakmp)
    sa, nonce = isakmp.payloads[0], isakmp.payloads[1]
    assert isinstance(sa, SaPayload) and isinstance(nonce, NoncePayload)
    for spec in world.host("a").kernel.sas.values():
        expected = keymat(key, 3, spec.spi.to_bytes(4, "big"), nonce.data, None, length=36)
        assert bytes(spec.enc_key) + bytes(spec.auth_key) == bytes(expected)
    assert sa.proposals[0].spi in {
        s.spi.to_bytes(4, "big") for s in world.host("a").kernel.sas.values()
    }
