"""The helper on the running kernel (XFRM without ESP: policies, ALLOCSPI, events), in a network
namespace of its own: the host's XFRM tables are never read nor changed, and `ip xfrm` in the
same namespace plays the other software whose objects kink must leave alone."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from ipaddress import ip_network
from typing import Any

import pytest

from kink_privsep import xfrm
from kink_privsep.client import Client, PrivsepError
from kink_privsep.model import DIR_OUT, PolicyId, PolicySpec, Selector
from kink_privsep.netlink import NetlinkSocket
from tests.privsep.harness import (
    TEST_PRIORITIES,
    TEST_RANGES,
    TEST_REQIDS,
    ProcessHelper,
    process_helper,
    wait_event,
)
from tests.support.e2e import in_namespace

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netns, XFRM)")

REQID = TEST_REQIDS[0] + 2
PRIORITY = TEST_PRIORITIES[0] + 2
FOREIGN_PRIORITY = 7
SELECTOR = {"src": "10.20.0.0/24", "dst": "10.21.0.0/24", "proto": 17, "dport": 5000}
TEMPLATE = {
    "proto": "esp",
    "mode": "tunnel",
    "reqid": REQID,
    "src": "192.0.2.1",
    "dst": "192.0.2.2",
}
POLICY: dict[str, Any] = {
    "dir": "out",
    "selector": SELECTOR,
    "priority": PRIORITY,
    "templates": [TEMPLATE],
}


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    name = f"kink-privsep-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            ["ip", "-n", name, "link", "add", "v0", "type", "veth", "peer", "v1"], check=True
        )
        subprocess.run(["ip", "-n", name, "addr", "add", "10.30.0.1/24", "dev", "v0"], check=True)
        for dev in ("v0", "v1"):
            subprocess.run(["ip", "-n", name, "link", "set", dev, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture(scope="module")
def helper(netns: str) -> Iterator[ProcessHelper]:
    with process_helper("--backend", "xfrm", "--max-policies", "8", *TEST_RANGES, netns=netns) as h:
        yield h


@pytest.fixture
def client(helper: ProcessHelper, netns: str) -> Iterator[Client]:
    with helper.client() as c:
        yield c
        c.call("flush")
    ip(netns, "xfrm", "policy", "flush")  # the foreign ones too: each test starts empty
    ip(netns, "xfrm", "state", "flush")


def ip(netns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", netns, *args], check=True, capture_output=True, text=True
    ).stdout


def policy_id(policy: dict[str, Any]) -> dict[str, Any]:
    return {"dir": policy["dir"], "selector": policy["selector"]}


def refused(client: Client, op: str, args: dict[str, Any]) -> str:
    with pytest.raises(PrivsepError) as e:
        client.call(op, args)
    return e.value.code


def test_policy_life_cycle(client: Client, netns: str) -> None:
    client.call("add_policy", POLICY)
    time.sleep(1.5)  # the kernel's first policy timer tick: unset limits must not expire it
    kernel = ip(netns, "xfrm", "policy", "list")
    assert f"priority {PRIORITY}" in kernel and f"reqid {REQID}" in kernel
    assert "src 10.20.0.0/24 dst 10.21.0.0/24 proto udp dport 5000" in kernel
    [pol] = client.call("dump")["policies"]
    assert pol["selector"] == SELECTOR | {"sport": 0}
    assert pol["templates"] == [TEMPLATE | {"spi": 0, "optional": False}]
    assert (pol["dir"], pol["action"], pol["priority"]) == ("out", "allow", PRIORITY)
    assert refused(client, "add_policy", POLICY) == "exists"

    client.call("update_policy", POLICY | {"templates": [TEMPLATE | {"reqid": REQID + 1}]})
    assert f"reqid {REQID + 1}" in ip(netns, "xfrm", "policy", "list")
    client.call("delete_policy", policy_id(POLICY))
    assert ip(netns, "xfrm", "policy", "list") == ""
    assert refused(client, "delete_policy", policy_id(POLICY)) == "not_found"


def test_ipv6_block_policy_with_mark(client: Client, netns: str) -> None:
    selector = {"src": "2001:db8:1::/48", "dst": "2001:db8:2::1/128"}
    policy = {"dir": "fwd", "selector": selector, "priority": PRIORITY, "action": "block"}
    mark = {"value": 0x42, "mask": 0xFF}
    client.call("add_policy", policy | {"mark": mark})
    kernel = ip(netns, "xfrm", "policy", "list")
    assert "action block" in kernel and "mark 0x42/0xff" in kernel
    assert refused(client, "delete_policy", policy_id(policy)) == "not_found"  # no mark
    [pol] = client.call("dump")["policies"]
    assert (pol["mark"], pol["dir"], pol["templates"]) == (mark, "fwd", [])
    client.call("delete_policy", policy_id(policy) | {"mark": mark})


def test_foreign_policies_are_never_touched(client: Client, netns: str) -> None:
    flow = ["src", "10.20.0.0/24", "dst", "10.21.0.0/24", "proto", "udp", "dport", "5000"]
    ip(netns, "xfrm", "policy", "add", *flow, "dir", "out", "priority", str(FOREIGN_PRIORITY))
    assert refused(client, "delete_policy", policy_id(POLICY)) == "not_owned"
    assert refused(client, "update_policy", POLICY) == "not_owned"
    assert refused(client, "add_policy", POLICY) == "exists"  # NEWPOLICY never replaces
    client.call("add_policy", POLICY | {"dir": "in"})
    assert client.call("flush") == {"sas": 0, "policies": 1}
    kernel = ip(netns, "xfrm", "policy", "list")
    assert f"priority {FOREIGN_PRIORITY}" in kernel and "dir out" in kernel
    assert "dir in" not in kernel
    assert client.call("dump") == {"sas": [], "policies": []}


def test_the_policy_limit(client: Client) -> None:
    for i in range(8):
        client.call("add_policy", POLICY | {"selector": SELECTOR | {"dport": 6000 + i}})
    assert refused(client, "add_policy", POLICY) == "limit"
    assert client.call("flush") == {"sas": 0, "policies": 8}
    client.call("add_policy", POLICY)


def test_allocspi_gives_a_larval_sa(client: Client, netns: str) -> None:
    request = {"proto": "esp", "src": "192.0.2.1", "dst": "192.0.2.2", "reqid": REQID}
    spi = client.call("alloc_spi", request | {"spi_min": 0x5000, "spi_max": 0x5FFF})["spi"]
    assert 0x5000 <= spi <= 0x5FFF
    assert f"spi {spi:#010x} reqid {REQID}" in ip(netns, "xfrm", "state", "list")
    sa_id = {"proto": "esp", "dst": "192.0.2.2", "spi": spi}
    sa = client.call("get_sa", sa_id)["sa"]
    assert (sa["enc"], sa["auth"], sa["reqid"], sa["src"]) == (None, None, REQID, "192.0.2.1")
    assert sa["counters"]["add_time"] > 0
    client.call("delete_sa", sa_id)
    assert ip(netns, "xfrm", "state", "list") == ""
    assert refused(client, "get_sa", sa_id) == "not_found"


def test_foreign_sas_are_never_touched(client: Client, netns: str) -> None:
    flow = ["src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp"]
    out = ip(
        netns, "xfrm", "state", "allocspi", *flow, "reqid", "3", "min", "0x6000", "max", "0x6000"
    )
    assert "spi 0x00006000" in out
    sa_id = {"proto": "esp", "dst": "192.0.2.2", "spi": 0x6000}
    for op in ("get_sa", "delete_sa"):
        assert refused(client, op, sa_id) == "not_owned"
    assert client.call("flush")["sas"] == 0
    assert "spi 0x00006000 reqid 3" in ip(netns, "xfrm", "state", "list")


def test_counters_of_kinks_own_sas_only(client: Client, netns: str) -> None:
    # XFRM_MSG_GETAE on the running kernel: larval SAs (no ESP here) have counters too.
    request = {"proto": "esp", "src": "192.0.2.1", "dst": "192.0.2.2", "reqid": REQID}
    spi = client.call("alloc_spi", request | {"spi_min": 0x5000, "spi_max": 0x5FFF})["spi"]
    flow = ["src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp"]
    ip(netns, "xfrm", "state", "allocspi", *flow, "reqid", "3", "min", "0x6000", "max", "0x6000")
    ours, foreign, gone = (
        {"proto": "esp", "dst": "192.0.2.2", "spi": s} for s in (spi, 0x6000, 0x7000)
    )
    assert client.call("counters", {"sas": [ours, foreign, gone, ours]}) == {
        "bytes": [0, None, None, 0]
    }
    ip(netns, "xfrm", "state", "delete", "src", "192.0.2.1", *flow[2:], "spi", str(spi))
    assert client.call("counters", {"sas": [ours]}) == {"bytes": [None]}  # gone from the kernel


def test_deletion_by_someone_else_is_an_event(client: Client, netns: str) -> None:
    other = POLICY | {"selector": SELECTOR | {"dport": 5001}}
    client.call("add_policy", POLICY)
    client.call("add_policy", other)
    client.call("delete_policy", policy_id(other))  # our own: no event
    flow = ["src", "10.20.0.0/24", "dst", "10.21.0.0/24", "proto", "udp", "dport", "5000"]
    ip(netns, "xfrm", "policy", "delete", *flow, "dir", "out")
    event = wait_event(client, lambda e: e.kind == "policy_deleted")
    assert event.data["policy"]["selector"] == SELECTOR | {"sport": 0}
    client.call("add_policy", POLICY)  # the limit count followed the deletion too


def test_policy_expiry_events(client: Client) -> None:
    lifetime = {"soft_add_seconds": 1, "hard_add_seconds": 3}
    client.call("add_policy", POLICY | {"lifetime": lifetime})
    soft = wait_event(client, lambda e: e.kind == "polexpire")
    hard = wait_event(client, lambda e: e.kind == "polexpire")
    assert (soft.data["hard"], hard.data["hard"]) == (False, True)
    assert hard.data["policy"]["lifetime"] == lifetime
    assert client.call("dump")["policies"] == []


def test_acquire_event(client: Client, netns: str) -> None:
    # Not over lo: the kernel never applies XFRM to loopback traffic (NOXFRM).
    selector = {"src": "10.30.0.1/32", "dst": "10.30.0.2/32", "proto": 17, "dport": 4000}
    template = {"proto": "esp", "mode": "transport", "reqid": REQID}
    client.call(
        "add_policy",
        {"dir": "out", "selector": selector, "priority": PRIORITY, "templates": [template]},
    )
    send = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    send += "try: s.sendto(b'x', ('10.30.0.2', 4000))\nexcept OSError: pass\n"
    subprocess.run(["ip", "netns", "exec", netns, "python3", "-c", send], check=True)
    event = wait_event(client, lambda e: e.kind == "acquire")
    assert (event.data["src"], event.data["dst"], event.data["proto"]) == (
        "10.30.0.1",
        "10.30.0.2",
        "esp",
    )
    assert event.data["policy"]["templates"][0]["reqid"] == REQID
    request = {"proto": "esp", "src": "10.30.0.1", "dst": "10.30.0.2", "reqid": REQID}
    spi = client.call("alloc_spi", request | {"seq": event.data["seq"]})["spi"]
    assert f"spi {spi:#010x}" in ip(netns, "xfrm", "state", "list")
    # The kernel's own placeholder (SPI 0) is not kink's: dumps and flushes skip it.
    assert [sa["spi"] for sa in client.call("dump")["sas"]] == [spi]


def test_events_survive_a_kernel_flush(client: Client, netns: str) -> None:
    client.call("add_policy", POLICY)
    ip(netns, "xfrm", "policy", "flush")
    assert wait_event(client, lambda e: e.kind == "flushed").data == {"what": "policy"}
    assert client.call("hello")["owned_policies"] == 0
    assert socket.AF_INET  # the connection is alive


def _policy(third_octet: int) -> PolicySpec:
    selector = Selector(ip_network(f"10.40.{third_octet}.0/24"), ip_network("10.41.0.0/24"))
    return PolicySpec(PolicyId(DIR_OUT, selector), FOREIGN_PRIORITY)


def test_the_echoes_of_our_own_changes_are_dropped_by_the_kernel(netns: str) -> None:
    """NetlinkSocket.drop_echoes: a change made through our request socket never reaches the
    events socket (no wake-up, no read to throw it away); another sender's still does."""
    with in_namespace(netns):
        sockets = [NetlinkSocket(xfrm.NETLINK_XFRM, xfrm.XFRMGRP_POLICY)]
        sockets += [NetlinkSocket(xfrm.NETLINK_XFRM) for _ in range(2)]
    events, ours, theirs = sockets
    try:
        events.drop_echoes(ours.portid, xfrm.CHANGE_MESSAGES)
        ours.request(xfrm.encode_newpolicy(_policy(1), update=False))
        theirs.request(xfrm.encode_newpolicy(_policy(2), update=True))
        ours.request(xfrm.encode_policy_id(xfrm.XFRM_MSG_DELPOLICY, _policy(1).id))
        theirs.request(xfrm.encode_policy_id(xfrm.XFRM_MSG_DELPOLICY, _policy(2).id))
        seen, lost = events.pending(lambda kind, pid, _: (kind, pid))
        assert not lost
        assert seen == [
            (xfrm.XFRM_MSG_UPDPOLICY, theirs.portid),
            (xfrm.XFRM_MSG_DELPOLICY, theirs.portid),
        ]
    finally:
        for sock in sockets:
            sock.close()
