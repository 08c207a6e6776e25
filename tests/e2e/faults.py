"""Fault scenarios of issue 10, run as root inside user-mode Linux by test_faults.py (one boot):
the helper killed under traffic, one host's clock ten minutes ahead, heavy loss with duplication
and reordering, KDC failover to a replica, the KDC down, kinkd killed in the middle of a CREATE.
Each checks the kernels (`ip xfrm`), kinkctl's view and the traffic that arrives."""

import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kink.wire.constants import MessageType
from tests.e2e.scenarios import GCM128, configure, exchange, kinkctl_pairs, mirrored
from tests.support.e2e import (
    Capture,
    Host,
    Network,
    Receiver,
    Sender,
    Stream,
    TomlValue,
    kink_toml,
    wait_until,
)
from tests.support.e2e_faults import (
    Kdc,
    drop_replica,
    kink_headers,
    pin_neighbours,
    settle,
    spawn_kinkd_shifted,
    start_replica,
    take_over_kdc,
)

ALL = socket.AF_INET
NEW: dict[str, TomlValue] = {"proposals": [GCM128], "start_action": "none"}
CREATE = MessageType.CREATE


@pytest.fixture(scope="module")
def primary(net: Network) -> Iterator[Kdc]:
    """The realm's KDC, taken over to be stopped and started by the scenarios (which leave it
    running)."""
    kdc = take_over_kdc(net.realm)
    yield kdc
    kdc.stop()


def kernel_view(host: Host) -> set[tuple[str, int, str, str]]:
    return {(s.proto, s.spi, s.src, s.dst) for s in host.states()}


def pair_spis(host: Host) -> set[tuple[int, int]]:
    return {(sa["spi_in"], sa["spi_out"]) for sa in kinkctl_pairs(host)}


def balanced(host: Host, peer: Host) -> bool:
    """The host's SAs come in pairs: as many inbound (peer -> host) as outbound, and kinkd
    knows every one of them (no orphan in the kernel, none it believes in that is gone)."""
    states = host.states()
    inbound = {s.spi for s in states if s.dst == host.addresses.v4}
    outbound = {s.spi for s in states if s.dst == peer.addresses.v4}
    known = {spi for pair in pair_spis(host) for spi in pair}
    return len(inbound) == len(outbound) and known == inbound | outbound


def initiator_up(net: Network, a: Host, b: Host, **daemon: Any) -> None:
    """a initiates at start, b responds only; SAs on both sides."""
    configure(
        a,
        b,
        only_a={"start_action": "start"},
        only_b={"start_action": "none"},
        daemon=daemon or None,
    )
    net.start()
    wait_until(lambda: mirrored(a, b, 2), "SAs up on both hosts")


# ------------------------------------------------------------------------------ 1. helper


def test_helper_killed_under_traffic(hosts: tuple[Host, Host], net: Network) -> None:
    a, b = hosts
    initiator_up(net, a, b)
    states, policies, spis = kernel_view(a), a.policies(), pair_spis(a)
    connects = a.request("status")["helper"]["connects"]
    with (
        Receiver(b, b.addresses.v4) as receiver,
        Stream(Sender(a, a.addresses.v4, b.addresses.v4)) as stream,
    ):
        a.stop_helper(signal.SIGKILL)
        wait_until(lambda: not a.request("status")["helper"]["connected"], "kinkd to see it go")
        a.start_helper()
        wait_until(
            lambda: a.request("status")["helper"]["connects"] > connects,
            "kinkd to reconnect to the new helper",
        )
        assert a.request("status")["helper"]["connected"]
        assert kernel_view(a) == states
        assert sorted(map(repr, a.policies())) == sorted(map(repr, policies))
        assert pair_spis(a) == spis
        last = stream.stop()
        assert receiver.missing(last) == [] and stream.sender.errors == 0
    # The restarted helper serves kinkd: a new negotiation goes through it.
    a.request("rekey", peer="b")
    wait_until(lambda: pair_spis(a) != spis and mirrored(a, b, 2), "a rekey through it")
    exchange(a, b, ALL, 5)


# -------------------------------------------------------------------------- 2. clock skew


def test_clock_skew_takes_the_authenticated_skew_path(
    hosts: tuple[Host, Host], net: Network
) -> None:
    a, b = hosts
    configure(a, b, only_a={"start_action": "none"}, only_b={"start_action": "none"})
    net.start("a")
    b.start_helper()
    spawn_kinkd_shifted(b, 600)  # b's clock ten minutes ahead
    capture = Capture(a)
    a.request("initiate", peer="b")
    wait_until(lambda: mirrored(a, b, 2), "SAs up despite the skew")
    creates = [h for h in kink_headers(capture.stop(), a.addresses.v4) if h.type == CREATE]
    # RFC 4430 §3.5: b answered the first CREATE with an authenticated KRB_AP_ERR_SKEW; a
    # adopted b's clock and began a new transaction (a new XID), which b accepted.
    assert len({h.xid for h in creates}) == 2, creates
    exchange(a, b, ALL, 5)


# ------------------------------------------------------------- 3. loss, duplicates, order


def test_half_loss_duplication_reordering(hosts: tuple[Host, Host], net: Network) -> None:
    a, b = hosts
    configure(
        a,
        b,
        only_a={"start_action": "start"},
        only_b={"start_action": "none"},
        daemon={"retransmit_initial": 0.5, "retransmit_cap": 2.0, "max_attempts": 15},
    )
    for host in (a, b):
        host.netem("loss 50% duplicate 50% delay 20ms 10ms reorder 50%")
    net.start()
    wait_until(lambda: bool(a.sas() and b.sas()), "CREATE to complete", timeout=90)
    settle(3.0)
    assert mirrored(a, b, 2), (kernel_view(a), kernel_view(b))
    assert len(kinkctl_pairs(a)) == len(kinkctl_pairs(b)) == 1
    a.request("terminate", peer="b")
    wait_until(lambda: not a.states() and not b.states(), "DELETE on both hosts", timeout=90)
    assert not a.sas() and not b.sas()


# ----------------------------------------------------------------------- 4. KDC failover


def test_kdc_failover_to_replica(hosts: tuple[Host, Host], net: Network, primary: Kdc) -> None:
    a, b = hosts
    replica = start_replica(net.realm, net.directory / "replica")
    try:
        configure(a, b, only_a={"start_action": "none"}, only_b={"start_action": "none"})
        net.start()
        before = replica.requests()
        primary.stop()
        began = time.monotonic()
        a.request("initiate", peer="b")
        wait_until(lambda: mirrored(a, b, 2), "SAs up through the replica", timeout=60)
        print(f"CREATE through the replica: SAs up after {time.monotonic() - began:.2f} s")
        assert replica.requests() > before, replica.log.read_text()
        exchange(a, b, ALL, 5)
    finally:
        drop_replica(net.realm, replica)
        primary.start()


# ------------------------------------------------------------------------- 5. KDC down


def test_kdc_down_keeps_sas_and_recovers(
    hosts: tuple[Host, Host], net: Network, primary: Kdc
) -> None:
    a, b = hosts
    # Scaled down: tickets for two minutes (not hours), SAs for 10 s rekeyed 5 s early, the
    # KDC away for ~20 s (not 10 minutes): the same order, tickets outliving the outage.
    for host in (a, b):
        net.realm.kadmin(f'modprinc -maxlife "120 seconds" {host.principal}')
    # b also has a peer "c" it never asked a ticket for, at an address where no host answers:
    # a new peer, whose negotiation needs the KDC before anything goes on the wire.
    c = "kink/c.e2e.test"
    if "c.e2e.test" not in net.realm.kadmin("listprincs kink/*"):
        net.realm.add_principal(c)
    configure(
        a,
        b,
        both={"lifetime_seconds": 10},
        only_a={"start_action": "start"},
        only_b={"start_action": "none"},
        daemon={"rekey_margin": 5.0, "retransmit_initial": 0.5, "max_attempts": 3},
    )
    with b.config_path.open("a") as config:
        config.write(
            kink_toml(
                {},
                {"c": {"address": "10.0.0.3", "principal": net.realm.principal(c), **NEW}},
            ).removeprefix("[daemon]\n")
        )
    try:
        net.start()
        wait_until(lambda: mirrored(a, b, 2), "SAs up")
        primary.stop()
        outbound: set[int] = set()

        def rekeyed_twice() -> bool:
            outbound.update(s.spi for s in a.states() if s.dst == b.addresses.v4)
            return len(outbound) >= 3

        monitor = b.monitor()
        try:
            with (
                Receiver(b, b.addresses.v4) as receiver,
                Stream(Sender(a, a.addresses.v4, b.addresses.v4)) as stream,
            ):
                wait_until(rekeyed_twice, "rekeys without the KDC", timeout=40)
                b.request("initiate", peer="c")
                without = monitor.wait_for("negotiation-failed").data
                last = stream.stop()
                assert receiver.missing(last) == [] and stream.sender.errors == 0
            print("negotiation-failed without the KDC:", without)
            assert without["peer"] == "c" and without["reason"], without
            assert b.request("status")["kerberos"]["failures"] > 0
            # The KDC back: the ticket comes, the CREATE goes out (and times out: nobody is
            # at c's address), a failure of another kind.
            primary.start()
            monitor.events.clear()
            b.request("initiate", peer="c")
            after = monitor.wait_for("negotiation-failed").data
        finally:
            monitor.close()
        print("negotiation-failed with the KDC back:", after)
        assert after["peer"] == "c" and after["reason"] != without["reason"], after
        exchange(a, b, ALL, 5)
    finally:
        if not primary.running:
            primary.start()
        for host in (a, b):
            net.realm.kadmin(f'modprinc -maxlife "10 hours" {host.principal}')


# -------------------------------------------------------------- 6. kinkd killed in a CREATE


def _settled(a: Host, b: Host) -> None:
    """Once a's restarted kinkd has its SAs again and retransmissions have run out: each
    host holds both directions or none of every exchange, and traffic flows."""
    wait_until(lambda: bool(a.sas()), "a's new SAs")
    settle(3.0)
    assert balanced(a, b), (kernel_view(a), a.sas())
    assert balanced(b, a), (kernel_view(b), b.sas())
    exchange(a, b, ALL, 5)


def test_initiator_killed_with_its_inbound_sa(hosts: tuple[Host, Host], net: Network) -> None:
    """a killed once the helper installed its inbound SA, the CREATE on its way to a paused b."""
    a, b = hosts
    configure(a, b, only_a={"start_action": "start"}, only_b={"start_action": "none"})
    net.start("b")
    assert b.kinkd is not None
    b.kinkd.send_signal(signal.SIGSTOP)  # the CREATE goes unanswered
    try:
        net.start("a")
        wait_until(lambda: bool(a.states()), "a's inbound SA")
        a.stop_kinkd(signal.SIGKILL)
    finally:
        b.kinkd.send_signal(signal.SIGCONT)
    net.start("a")
    _settled(a, b)


def test_initiator_killed_before_the_reply(hosts: tuple[Host, Host], net: Network) -> None:
    a, b = hosts
    configure(a, b, only_a={"start_action": "start"}, only_b={"start_action": "none"})
    net.start("b")
    pin_neighbours(a, b)
    b.netem("loss 100%")  # b installs its SAs and replies; the reply never reaches a
    net.start("a")
    wait_until(lambda: bool(b.states()), "b to install the responder's SAs")
    a.stop_kinkd(signal.SIGKILL)
    b.netem(None)
    net.start("a")
    _settled(a, b)


def test_initiator_killed_before_its_ack_arrived(hosts: tuple[Host, Host], net: Network) -> None:
    """A 3-way CREATE (b adds its nonce, RFC 4430 §3.2): a killed once it has both directions,
    its ACK delayed on the way. The ACK leaves only once a's state file holds the pair, so
    either b gets it and a's next kinkd takes the pair over, or b never gets it, gives up its
    REPLY and DELETEs: either way the hosts end with the same pair, and traffic flows."""
    a, b = hosts
    configure(
        a,
        b,
        only_a={"start_action": "start"},
        only_b={"start_action": "none"},
        daemon={"responder_nonce": True, "retransmit_initial": 0.5},
    )
    net.start("b")
    pin_neighbours(a, b)
    a.netem("delay 1500ms")  # a's datagrams (CREATE, then ACK) spend 1.5 s in its queue
    net.start("a")
    wait_until(lambda: len(a.states()) == 2, "a to install both directions", timeout=60)
    a.stop_kinkd(signal.SIGKILL)
    net.start("a")
    a.netem(None)
    wait_until(lambda: mirrored(a, b, 2), "the same pair on both hosts", timeout=60)
    _settled(a, b)
    assert mirrored(a, b, 2), (kernel_view(a), kernel_view(b))


def test_responder_killed_before_the_ack(hosts: tuple[Host, Host], net: Network) -> None:
    """A 3-way CREATE: b killed after its REPLY (ACKREQ), a's ACK delayed on the way. b saved
    the child awaiting the ACK before the REPLY left; its next kinkd, which the ACK no longer
    concerns, DELETEs it (RFC 4430 §3.3): a drops the pair it installed on the REPLY and
    negotiates again (start_action=start)."""
    a, b = hosts
    configure(
        a,
        b,
        only_a={"start_action": "start"},
        only_b={"start_action": "none"},
        daemon={"responder_nonce": True},
    )
    net.start("b")
    pin_neighbours(a, b)
    a.netem("delay 1500ms")
    net.start("a")
    wait_until(lambda: len(a.states()) == 2, "a to install both directions", timeout=60)
    b.stop_kinkd(signal.SIGKILL)
    net.start("b")
    a.netem(None)
    wait_until(lambda: mirrored(a, b, 2), "the same pair on both hosts", timeout=60)
    _settled(a, b)


def _responder_killed_after_installing(a: Host, b: Host, net: Network) -> None:
    """b installs both directions and replies into a drop; killed; a's retransmission of the
    CREATE reaches b's next kinkd."""
    configure(
        a,
        b,
        only_a={"start_action": "start"},
        only_b={"start_action": "none"},
        daemon={"retransmit_initial": 0.5, "max_attempts": 10},
    )
    net.start("b")
    pin_neighbours(a, b)
    b.netem("loss 100%")
    net.start("a")
    # Once b reports the SA: its REPLY left (into the drop) once the pair was saved, and b's
    # next kinkd answers the retransmission with it; if the kill came between the install and
    # the save, no REPLY left, and b's next kinkd deletes the pair and answers anew.
    wait_until(lambda: bool(b.sas()), "b to install the responder's SAs")
    b.stop_kinkd(signal.SIGKILL)
    b.netem(None)
    net.start("b")
    _settled(a, b)


def test_responder_killed_after_installing(hosts: tuple[Host, Host], net: Network) -> None:
    a, b = hosts
    _responder_killed_after_installing(a, b, net)


def test_responder_restart_leaves_no_orphan_pair(hosts: tuple[Host, Host], net: Network) -> None:
    a, b = hosts
    _responder_killed_after_installing(a, b, net)
    assert mirrored(a, b, 2), (kernel_view(a), kernel_view(b))
