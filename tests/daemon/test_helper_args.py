"""kink.daemon.helper_args: requests the helper's schema accepts, ACQUIREs with their seq."""

import dataclasses
from ipaddress import IPv4Address, IPv4Network, ip_network

from kink.daemon import helper_args
from kink.engine.config import PeerConfig, Policy, ProposalSpec, TransformSpec
from kink.engine.events import Acquire, SaSpec, Selector
from kink.wire.ipsec_doi import EspTransform, ProtocolId
from kink_privsep import protocol
from kink_privsep.schema import check

RANGES = helper_args.HelperRanges(0x4B49_0000, 0x4B49_FFFF, 0x4B49_0000, 0x4B49_FFFF)
REQID = 0x4B49_B000


def _spec() -> SaSpec:
    host_a, host_b = (
        Selector(ip_network("10.0.0.1/32"), 0, 0),
        Selector(ip_network("10.0.0.2/32"), 0, 0),
    )
    return SaSpec(
        "10.0.0.1", "10.0.0.2", 3, 0x1234, False, "transport", REQID, host_a, host_b,
        "rfc4106(gcm(aes))", bytearray(20), 128, None, bytearray(), None, 0, 0, 0, 0, 32,
    )  # fmt: skip


def test_outbound_sa_answering_an_acquire_carries_its_seq() -> None:
    args = helper_args.sa(_spec(), 77)
    assert check(protocol.REQUESTS["add_sa"], args, "args")["seq"] == 77
    assert args["reqid"] == REQID  # engine reqids are kernel reqids
    assert "seq" not in helper_args.sa(_spec())


def test_sa_leaves_out_what_the_helper_takes_by_default_and_means_the_same() -> None:
    args = helper_args.sa(_spec())
    assert "replay_window" not in args
    assert args["selector"] == {"src": "10.0.0.1/32", "dst": "10.0.0.2/32"}
    checked = check(protocol.REQUESTS["add_sa"], args, "args")
    assert checked["replay_window"] == 32
    assert (checked["selector"]["proto"], checked["selector"]["sport"]) == (0, 0)
    assert checked["selector"]["dport"] == 0
    # A narrower window and a selector's protocol and ports are sent.
    spec = dataclasses.replace(
        _spec(),
        replay_window=8,
        src_selector=Selector(ip_network("10.0.0.1/32"), 6, 0),
        dst_selector=Selector(ip_network("10.0.0.2/32"), 6, 443),
    )
    args = helper_args.sa(spec)
    assert args["replay_window"] == 8
    assert args["selector"] == {
        "src": "10.0.0.1/32",
        "dst": "10.0.0.2/32",
        "proto": 6,
        "dport": 443,
    }
    checked = check(protocol.REQUESTS["add_sa"], args, "args")
    assert (checked["replay_window"], checked["selector"]["sport"]) == (8, 0)


def test_acquire_event_gives_the_engine_reqid_and_seq() -> None:
    policy = {"templates": [{"proto": "esp", "mode": "transport", "reqid": REQID}]}
    event = protocol.Event(protocol.EVENT_ACQUIRE, {"seq": 9, "policy": policy})
    assert helper_args.kernel_event(event, {REQID}) == Acquire(REQID, 9)
    assert helper_args.kernel_event(event, {REQID + 1}) is None


def test_nd_bypass_lets_every_nd_type_through_at_the_best_priority() -> None:
    policies = helper_args.nd_bypass(RANGES)
    for policy in policies:
        checked = check(protocol.REQUESTS["update_policy"], policy, "args")
        assert checked["action"] == "allow" and not checked["templates"]
        assert policy["priority"] == RANGES.priority_lo
    kinds = {(p["dir"], p["selector"]["proto"], p["selector"]["sport"]) for p in policies}
    assert kinds == {(d, 58, t) for d in ("in", "out", "fwd") for t in range(133, 138)}


def test_tunnel_policies_go_out_in_and_forward_with_the_selectors_each_way() -> None:
    ours = Selector(ip_network("10.1.0.0/24"), 17, 53)
    theirs = Selector(ip_network("10.2.0.0/24"), 17, 0)
    peer = PeerConfig(
        "b",
        "192.0.2.2",
        "kink/b@TEST",
        (Policy(ours, theirs, REQID),),
        (ProposalSpec((TransformSpec(ProtocolId.ESP, EspTransform.AES_CBC, None, 128),)),),
        mode="tunnel",
    )
    out, inbound, forward = helper_args.policies(peer, peer.policies, "192.0.2.1", RANGES)
    assert (out["dir"], inbound["dir"], forward["dir"]) == ("out", "in", "fwd")
    assert out["selector"] == {
        "src": "10.1.0.0/24",
        "dst": "10.2.0.0/24",
        "proto": 17,
        "sport": 53,
        "dport": 0,
    }
    assert (
        inbound["selector"]
        == forward["selector"]
        == {
            "src": "10.2.0.0/24",
            "dst": "10.1.0.0/24",
            "proto": 17,
            "sport": 0,
            "dport": 53,
        }
    )
    template = {"proto": "esp", "mode": "tunnel", "reqid": REQID}
    assert out["templates"] == [{**template, "src": "192.0.2.1", "dst": "192.0.2.2"}]
    assert forward["templates"] == [{**template, "src": "192.0.2.2", "dst": "192.0.2.1"}]
    for policy in (out, inbound, forward):
        check(protocol.REQUESTS["update_policy"], policy, "args")


def test_selector_text_is_kept_per_selector_and_the_table_bounded() -> None:
    helper_args._prefix.cache_clear()
    nets = [Selector(ip_network(f"10.{i}.0.0/16"), 6, 80) for i in range(5)]
    for i in range(4):
        # The same text whether it was formatted now or taken from the table.
        for _ in range(2):
            assert helper_args.selector(nets[i], nets[i + 1]) == {
                "src": f"10.{i}.0.0/16",
                "dst": f"10.{i + 1}.0.0/16",
                "proto": 6,
                "sport": 80,
                "dport": 80,
            }
    # A selector equal to a kept one (another object) gets the kept text.
    hits = helper_args._prefix.cache_info().hits
    assert helper_args._prefix(Selector(ip_network("10.4.0.0/16"), 6, 80)) == "10.4.0.0/16"
    assert helper_args._prefix.cache_info().hits == hits + 1
    limit = helper_args._prefix.cache_info().maxsize
    assert limit is not None
    for n in range(limit + 10):
        assert helper_args._prefix(Selector(IPv4Network((n, 32)))) == f"{IPv4Address(n)}/32"
    assert helper_args._prefix.cache_info().currsize <= limit
