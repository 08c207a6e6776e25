"""What the daemon feeds and reads: ACQUIRE seq answered on the outbound SAs, reqids of the
implicit policies, the per-child view for `kinkctl sas`, DPD counters per protocol."""

from dataclasses import replace
from ipaddress import ip_network

import pytest

from kink.engine import Engine, EngineConfig, PeerConfig
from kink.engine.config import Policy, StartAction
from kink.engine.events import (
    Acquire,
    Initiate,
    InstallSa,
    SaLifetimes,
    SaTransform,
    Selector,
)
from kink.wire import MessageType
from kink.wire.ipsec_doi import ProtocolId
from kink_privsep.model import Config as HelperConfig
from tests.engine.conftest import AH_ESP, ESP_AES128_SHA1, KerberosHostFactory, WorldFactory
from tests.engine.harness import World, check_consistent

pytestmark = pytest.mark.kdc


def _established(make_world: WorldFactory, pairs: int = 2, **kw: object) -> World:
    world = make_world(**kw)
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle(0)
    assert check_consistent(world) == pairs
    return world


def test_acquire_seq_is_carried_by_the_outbound_sa(make_world: WorldFactory) -> None:
    world = make_world(a={"start_action": StartAction.TRAP})
    a = world.host("a")
    reqid = a.engine.peer_policies["b"][0].reqid
    a.engine.kernel_event(Acquire(reqid, seq=77), world.now)
    a.engine.kernel_event(Acquire(reqid, seq=78), world.now)  # the same flow: coalesced
    world.settle(0)
    assert check_consistent(world) == 2
    installs = [x for x in a.kernel.log if isinstance(x, InstallSa)]
    assert [(x.spec.inbound, x.acquire_seq) for x in installs] == [(True, None), (False, 77)]
    assert a.engine.counters["acquire-coalesced"] == 1
    b_installs = [x for x in world.host("b").kernel.log if isinstance(x, InstallSa)]
    assert all(x.acquire_seq is None for x in b_installs)


def test_implicit_reqids_lie_in_the_helpers_range(kerberos_host: KerberosHostFactory) -> None:
    port = kerberos_host("a").port

    def peer(name: str, address: str, *policies: Policy) -> PeerConfig:
        return PeerConfig(name, address, f"{name}@ENGINE.TEST", policies, (ESP_AES128_SHA1,))

    config = EngineConfig("192.0.2.1", "a@ENGINE.TEST", (peer("b", "192.0.2.2"),))
    engine = Engine(config, port, epoch=1, now=0.0)
    (policy,) = engine.peer_policies["b"]
    low, high = HelperConfig().reqid_range
    assert low <= policy.reqid <= high and policy.reqid == config.reqid_base
    assert engine.policies[policy.reqid][1] == policy

    # explicit reqids are kept clear of, whichever peer comes first
    base = 0x4B49_0010
    explicit = Policy(Selector(ip_network("10.0.0.0/8")), Selector(ip_network("10.1.0.0/16")), base)
    config = EngineConfig(
        "192.0.2.1",
        "a@ENGINE.TEST",
        (peer("b", "192.0.2.2"), peer("c", "192.0.2.3", explicit)),
        reqid_base=base,
    )
    engine = Engine(config, port, epoch=1, now=0.0)
    assert engine.peer_policies["b"][0].reqid == base + 1
    assert engine.peer_policies["c"] == (explicit,)
    with pytest.raises(ValueError, match="reqid"):
        engine.add_peer(peer("d", "192.0.2.4", replace(explicit, reqid=base + 1)), 0.0)


@pytest.mark.parametrize("pfs", [None, 14])
def test_child_view_for_kinkctl(make_world: WorldFactory, pfs: int | None) -> None:
    world = _established(make_world, a={"pfs_group": pfs}, b={"pfs_group": pfs})
    for name in ("a", "b"):
        (view,) = world.host(name).engine.snapshot().children
        here, there = ("192.0.2.1", "192.0.2.2") if name == "a" else ("192.0.2.2", "192.0.2.1")
        assert view.local == Selector(ip_network(here)) and view.remote == Selector(
            ip_network(there)
        )
        assert view.transforms == (
            SaTransform(ProtocolId.ESP, "cbc(aes)", 128, None, "hmac(sha1)", 96),
        )
        assert view.life == SaLifetimes(0, 28800, 0, 0)
        assert view.pfs_group == pfs and view.mode == "transport"
        assert view.reqid == world.host(name).engine.peer_policies[view.peer][0].reqid
        assert view.created == world.now


def test_dpd_counters_are_kept_per_protocol(make_world: WorldFactory) -> None:
    """Two-way traffic on an AH+ESP bundle, sampled per protocol: no suspicion; outbound only
    for dpd_delay: one STATUS (§3.7)."""
    world = _established(
        make_world,
        4,  # an inbound SA per protocol on each side
        a={"proposals": (AH_ESP,)},
        b={"proposals": (AH_ESP,)},
        engine={"dpd_delay": 10},
    )
    a = world.host("a").engine
    (child,) = a.sadb.children.values()
    ah, esp = sorted(child.sas, key=lambda s: s.protocol)
    sent = len(world.delivered)
    for step in range(1, 6):
        world.now += 5
        a.sa_activity(ah.protocol, ah.inbound_spi, 100 * step, 100 * step, world.now)
        a.sa_activity(esp.protocol, esp.inbound_spi, 150 * step, 150 * step, world.now)
        world.settle(0)
    assert len(world.delivered) == sent  # traffic both ways: nothing to suspect
    a.sa_activity(esp.protocol, esp.inbound_spi, 10, 10, world.now)  # reset: a new baseline
    for step in range(1, 4):
        world.now += 5
        a.sa_activity(esp.protocol, esp.inbound_spi, 10, 10 + 100 * step, world.now)
        world.settle(0)
    statuses = [d for d in world.delivered[sent:] if d.data[0] == MessageType.STATUS]
    assert len(statuses) == 1 and statuses[0].src == "192.0.2.1"
