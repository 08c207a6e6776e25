"""End-to-end scenarios, run as root inside user-mode Linux by test_e2e.py (one boot for all):
the topology of tests.support.e2e is built once; each scenario writes the two hosts' kink.toml,
starts kink-privsep and kinkd on both, and checks the kernels (`ip xfrm`), kinkctl's view
(the control socket), the traffic that arrives and a capture on the wire (ESP, no plaintext)."""

import signal
import socket
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.e2e import (
    IPPROTO_AH,
    IPPROTO_ESP,
    MARKER,
    Capture,
    Host,
    Network,
    Packet,
    Receiver,
    Sender,
    Stream,
    TomlValue,
    XfrmState,
    subnet,
    wait_until,
)

GCM128 = {"esp": {"encryption": "aes-gcm", "key_length": 128}}
CBC_SHA256 = {"esp": {"encryption": "aes-cbc", "key_length": 256, "integrity": "sha256"}}


def configure(
    a: Host,
    b: Host,
    family: int = socket.AF_INET,
    *,
    both: dict[str, TomlValue] | None = None,
    only_a: dict[str, TomlValue] | None = None,
    only_b: dict[str, TomlValue] | None = None,
    daemon: dict[str, TomlValue] | None = None,
) -> None:
    """a's peer b and b's peer a: `both` in each, then each host's own keys."""
    common: dict[str, TomlValue] = {"proposals": [GCM128], **(both or {})}
    a.write_config(
        {"b": {**b.peer_settings(family), **common, **(only_a or {})}},
        family=family,
        **(daemon or {}),
    )
    b.write_config(
        {"a": {**a.peer_settings(family), **common, **(only_b or {})}},
        family=family,
        **(daemon or {}),
    )


def esp_states(host: Host) -> list[XfrmState]:
    return [s for s in host.states() if s.proto == "esp"]


def mirrored(a: Host, b: Host, count: int) -> bool:
    """Each host has `count` SAs and they are the same SAs (SPI, ends, algorithms)."""
    sa = {(s.proto, s.spi, s.src, s.dst, s.algorithms) for s in a.states()}
    sb = {(s.proto, s.spi, s.src, s.dst, s.algorithms) for s in b.states()}
    return len(sa) == count and sa == sb


def exchange(src: Host, dst: Host, family: int, count: int, *, inner: bool = False) -> None:
    """`count` datagrams src -> dst and dst -> src; all must arrive."""
    for one, other in ((src, dst), (dst, src)):
        source = one.addresses.inner(family) if inner else one.addresses.host(family)
        target = other.addresses.inner(family) if inner else other.addresses.host(family)
        with Receiver(other, target) as receiver, Sender(one, source, target) as sender:
            for _ in range(count):
                sender.send()
            assert receiver.missing(count) == [], (one.name, other.name)


def assert_protected(packets: list[Packet], protocol: int = IPPROTO_ESP) -> None:
    """The capture shows `protocol` packets and no test datagram in the clear."""
    assert any(p.protocol == protocol for p in packets), [p.protocol for p in packets]
    clear = [(p.protocol, p.data[14:60].hex()) for p in packets if MARKER in p.data]
    assert not clear, clear


def kinkctl_pairs(host: Host) -> list[dict[str, Any]]:
    return [sa for child in host.sas() for sa in child["sas"]]


def test_trap_policy_first_datagram_negotiates(hosts: tuple[Host, Host], net: Network) -> None:
    a, b = hosts
    configure(a, b, only_a={"start_action": "trap"}, only_b={"start_action": "none"})
    net.start()
    assert not a.states() and not b.states()
    assert {p.dir for p in a.policies()} >= {"out", "in"}
    capture = Capture(a)
    with (
        Receiver(b, b.addresses.v4) as receiver,
        Sender(a, a.addresses.v4, b.addresses.v4) as sender,
    ):
        sender.send()  # ACQUIRE -> CREATE
        wait_until(lambda: mirrored(a, b, 2), "SAs on both hosts")
        seqs = [sender.send() for _ in range(10)]
        assert receiver.wait_for(seqs), receiver.received
    exchange(b, a, socket.AF_INET, 10)  # and back
    assert_protected(capture.stop())
    # kinkctl sas on both hosts: the same SPIs, crossed, and the kernel's counters.
    pa, pb = kinkctl_pairs(a), kinkctl_pairs(b)
    assert len(pa) == len(pb) == 1
    assert (pa[0]["spi_in"], pa[0]["spi_out"]) == (pb[0]["spi_out"], pb[0]["spi_in"])
    kernel = {s.spi: s for s in a.states()}
    assert {pa[0]["spi_in"], pa[0]["spi_out"]} == set(kernel)
    assert pa[0]["packets_out"] == pb[0]["packets_in"] >= 10
    assert pa[0]["packets_in"] == pb[0]["packets_out"] >= 10
    assert pa[0]["packets_out"] == kernel[pa[0]["spi_out"]].packets


def start_both(net: Network, a: Host, b: Host) -> None:
    """Both daemons up, a initiating at start (b responds only): SAs on both sides."""
    net.start()
    wait_until(lambda: len(a.states()) > 0 and mirrored(a, b, len(a.states())), "SAs up")


@dataclass(frozen=True)
class Case:
    family: int
    tunnel: bool
    keys: dict[str, TomlValue]  # of the peer, on both sides
    protocols: frozenset[str]  # of the SAs in the kernel


# IPv6 host to host with protocol "any": the policies would also take the hosts' neighbour
# discovery, which kinkd lets through with its ICMPv6 ND bypass policies.
CASES = {
    "v4-transport-gcm": Case(socket.AF_INET, False, {"proposals": [GCM128]}, frozenset({"esp"})),
    "v6-transport-cbc": Case(
        socket.AF_INET6,
        False,
        {"proposals": [CBC_SHA256]},
        frozenset({"esp"}),
    ),
    "v4-tunnel-pfs": Case(
        socket.AF_INET,
        True,
        {"proposals": [CBC_SHA256], "pfs_group": "modp2048", "pfs_required": True},
        frozenset({"esp"}),
    ),
    "v6-tunnel-gcm": Case(socket.AF_INET6, True, {"proposals": [GCM128]}, frozenset({"esp"})),
    "v4-ah-esp-bundle": Case(
        socket.AF_INET,
        False,
        {"proposals": [{"ah": {"integrity": "sha256"}, **GCM128}]},
        frozenset({"esp", "ah"}),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_start_action_start(hosts: tuple[Host, Host], net: Network, name: str) -> None:
    a, b = hosts
    case = CASES[name]
    family, tunnel, keys, protocols = case.family, case.tunnel, case.keys, case.protocols
    both: dict[str, TomlValue] = dict(keys)
    only_a: dict[str, TomlValue] = {"start_action": "start"}
    only_b: dict[str, TomlValue] = {"start_action": "none"}
    if tunnel:
        both["mode"] = "tunnel"
        only_a |= {
            "local_subnets": [subnet(a.addresses.inner(family))],
            "remote_subnets": [subnet(b.addresses.inner(family))],
        }
        only_b |= {
            "local_subnets": [subnet(b.addresses.inner(family))],
            "remote_subnets": [subnet(a.addresses.inner(family))],
        }
    configure(a, b, family, both=both, only_a=only_a, only_b=only_b)
    net.start("b")
    monitor = b.monitor()
    try:
        start_both(net, a, b)
        up = monitor.wait_for("sa-up")
    finally:
        monitor.close()
    # PFS: the responder's KE makes the exchange 3-way, ending in an ACK (RFC 4430 §3.2).
    assert up.data["three_way"] == ("pfs_group" in keys)
    states = a.states()
    assert {s.proto for s in states} == protocols
    assert {s.mode for s in states} == {"tunnel" if tunnel else "transport"}
    assert len(states) == 2 * len(protocols)
    capture = Capture(a)
    exchange(a, b, family, 10, inner=tunnel)
    assert_protected(capture.stop(), IPPROTO_AH if "ah" in protocols else IPPROTO_ESP)


def test_terminate_deletes_on_both_sides(hosts: tuple[Host, Host], net: Network) -> None:
    a, b = hosts
    configure(a, b, only_a={"start_action": "start"}, only_b={"start_action": "none"})
    start_both(net, a, b)
    reply = a.request("terminate", peer="b")
    assert reply["children"] == 1
    wait_until(lambda: not a.states() and not b.states(), "SAs deleted on both hosts")
    assert not a.sas() and not b.sas()


def test_rekey_under_traffic_loses_nothing(hosts: tuple[Host, Host], net: Network) -> None:
    a, b = hosts
    configure(
        a,
        b,
        both={"lifetime_seconds": 10},
        only_a={"start_action": "start"},
        only_b={"start_action": "none"},
        daemon={"rekey_margin": 5.0},
    )
    start_both(net, a, b)
    outbound: set[int] = set()

    def rekeyed_three_times() -> bool:
        outbound.update(s.spi for s in a.states() if s.dst == b.addresses.v4)
        return len(outbound) >= 4

    with (
        Receiver(b, b.addresses.v4) as at_b,
        Receiver(a, a.addresses.v4) as at_a,
        Stream(Sender(a, a.addresses.v4, b.addresses.v4)) as to_b,
        Stream(Sender(b, b.addresses.v4, a.addresses.v4)) as to_a,
    ):
        wait_until(rekeyed_three_times, "three rekeys", timeout=60)
        last_b, last_a = to_b.stop(), to_a.stop()
        assert at_b.missing(last_b) == [] and to_b.sender.errors == 0
        assert at_a.missing(last_a) == [] and to_a.sender.errors == 0
    # The old SAs go after their grace: one pair left, the same on both sides.
    wait_until(lambda: mirrored(a, b, 2), "old SAs deleted")


def test_peer_restart_is_detected_by_status(hosts: tuple[Host, Host], net: Network) -> None:
    a, b = hosts
    configure(
        a,
        b,
        only_a={"start_action": "start"},
        only_b={"start_action": "none"},
        daemon={"dpd_delay": 2.0},
    )
    start_both(net, a, b)
    old_epoch = b.epoch()
    b.stop(signal.SIGKILL)
    b.flush_xfrm()
    net.start("b")
    assert b.epoch() != old_epoch
    with (
        Receiver(b, b.addresses.v4) as receiver,
        Stream(Sender(a, a.addresses.v4, b.addresses.v4), rate=10),
    ):
        # a's SAs lead nowhere now; DPD (STATUS) learns b's new epoch and a renegotiates.
        wait_until(lambda: len(receiver.received) >= 5, "traffic to resume", timeout=60)
    peers = a.request("peers")["peers"]
    assert peers[0]["epoch"] == b.epoch()
    wait_until(lambda: mirrored(a, b, 2), "one pair of SAs")


def test_kinkd_restart_keeps_sas_and_epoch(hosts: tuple[Host, Host], net: Network) -> None:
    a, b = hosts
    configure(a, b, only_a={"start_action": "trap"}, only_b={"start_action": "none"})
    net.start()
    with Sender(a, a.addresses.v4, b.addresses.v4) as trigger:
        trigger.send()
    wait_until(lambda: mirrored(a, b, 2), "SAs up")
    epoch = a.epoch()
    before = {(s.proto, s.spi, s.dst) for s in a.states()}
    with (
        Receiver(b, b.addresses.v4) as receiver,
        Stream(Sender(a, a.addresses.v4, b.addresses.v4)) as stream,
    ):
        a.stop_kinkd(signal.SIGKILL)
        a.start_kinkd()
        assert a.epoch() == epoch
        assert {(s.proto, s.spi, s.dst) for s in a.states()} == before
        assert receiver.missing(stream.stop()) == []


def test_kinkd_restart_adopts_its_sas(hosts: tuple[Host, Host], net: Network) -> None:
    a, b = hosts
    configure(a, b, only_a={"start_action": "start"}, only_b={"start_action": "none"})
    start_both(net, a, b)
    spis = {(sa["spi_in"], sa["spi_out"]) for sa in kinkctl_pairs(a)}
    states = {(s.proto, s.spi, s.dst) for s in a.states()}
    a.stop_kinkd(signal.SIGKILL)
    a.start_kinkd()
    assert {(sa["spi_in"], sa["spi_out"]) for sa in kinkctl_pairs(a)} == spis
    assert {(s.proto, s.spi, s.dst) for s in a.states()} == states


def test_user_to_user(hosts: tuple[Host, Host], net: Network) -> None:
    a, b = hosts
    # The KDC issues no ordinary service ticket for b (DISALLOW_SVR): only user-to-user.
    net.realm.kadmin(f"modprinc -allow_svr {b.principal}")
    try:
        configure(
            a,
            b,
            only_a={"start_action": "start", "u2u": "require"},
            only_b={"start_action": "none", "give_tgt": True},
        )
        start_both(net, a, b)
        exchange(a, b, socket.AF_INET, 5)
    finally:
        net.realm.kadmin(f"modprinc +allow_svr {b.principal}")


def test_selectors_of_another_host_are_refused(hosts: tuple[Host, Host], net: Network) -> None:
    a, b = hosts
    # a gives b 10.2.0.0/24 only; b asks for a tunnel to 10.9.0.0/24, which is not b's.
    a_keys: dict[str, TomlValue] = {
        "mode": "tunnel",
        "start_action": "none",
        "local_subnets": ["10.1.0.0/24"],
        "remote_subnets": ["10.2.0.0/24"],
    }
    b_keys: dict[str, TomlValue] = {
        "mode": "tunnel",
        "start_action": "start",
        "local_subnets": ["10.9.0.0/24"],
        "remote_subnets": ["10.1.0.0/24"],
    }
    configure(a, b, only_a=a_keys, only_b=b_keys)
    net.start()
    wait_until(lambda: "failed" in b.kinkd_log.read_text(), "b's CREATE to be refused")
    assert not a.states() and not b.states()
    assert not a.sas() and not b.sas()
    assert not [p for p in a.policies() if "10.9.0." in p.src + p.dst]


def test_loss_duplication_reordering(hosts: tuple[Host, Host], net: Network) -> None:
    a, b = hosts
    configure(
        a,
        b,
        only_a={"start_action": "start"},
        only_b={"start_action": "none"},
        daemon={"retransmit_initial": 0.5, "max_attempts": 8},
    )
    for host in (a, b):
        host.netem("loss 30% duplicate 30% delay 20ms reorder 50%")
    start_both(net, a, b)
    wait_until(lambda: bool(a.sas() and b.sas()), "kinkd to report the SA on both hosts")
    assert len(kinkctl_pairs(a)) == len(kinkctl_pairs(b)) == 1
    a.request("terminate", peer="b")
    wait_until(lambda: not a.states() and not b.states(), "SAs deleted on both hosts", 60)
    assert not a.sas() and not b.sas()
