"""Kernel tests of the helper with real ESP and AH, run INSIDE user-mode Linux.

Not collected on the host (the name does not match test_*.py): tests/privsep/test_uml.py boots
UML once and runs this whole module there. Two network namespaces joined by a veth pair
exchange real ESP/AH packets: "a" is programmed through the helper, "b" with `ip xfrm` (it
plays the peer, and the other software whose SAs kink must leave alone).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from kink_privsep.client import Client, PrivsepError
from tests.privsep.harness import (
    TEST_PRIORITIES,
    TEST_RANGES,
    TEST_REQIDS,
    ProcessHelper,
    process_helper,
    wait_event,
)
from tests.support import uml

REQID = TEST_REQIDS[0] + 3
PRIORITY = TEST_PRIORITIES[0] + 3
ADDR = {4: ("10.77.0.1", "10.77.0.2"), 6: ("fd77::1", "fd77::2")}
PREFIX = {4: 32, 6: 128}


@dataclass(frozen=True)
class Alg:
    proto: str
    enc: str | None
    enc_key_len: int
    auth: str | None

    @property
    def id(self) -> str:
        return f"{self.proto}-{self.enc}{self.enc_key_len}-{self.auth}"


ALGS = [
    Alg("esp", "aes-cbc", 16, "hmac-sha1-96"),
    Alg("esp", "aes-cbc", 24, "hmac-sha256-128"),
    Alg("esp", "aes-cbc", 32, "hmac-sha384-192"),
    Alg("esp", "aes-cbc", 32, "hmac-sha512-256"),
    Alg("esp", "aes-gcm", 20, None),
    Alg("esp", "aes-gcm", 36, None),
    Alg("esp", "null", 0, "hmac-sha256-128"),
    Alg("ah", None, 0, "hmac-sha1-96"),
    Alg("ah", None, 0, "hmac-sha256-128"),
]
KERNEL_ENC = {"aes-cbc": "cbc(aes)", "aes-gcm": "rfc4106(gcm(aes))", "null": "ecb(cipher_null)"}
KERNEL_AUTH = {
    "hmac-sha1-96": ("hmac(sha1)", 96),
    "hmac-sha256-128": ("hmac(sha256)", 128),
    "hmac-sha384-192": ("hmac(sha384)", 192),
    "hmac-sha512-256": ("hmac(sha512)", 256),
}
AUTH_LEN = {"hmac-sha1-96": 20, "hmac-sha256-128": 32, "hmac-sha384-192": 48, "hmac-sha512-256": 64}


def ip(ns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", ns, *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def net() -> Iterator[None]:
    uml.require_in_uml()
    for ns in ("a", "b"):
        subprocess.run(["ip", "netns", "add", ns], check=True)
        ip(ns, "link", "set", "lo", "up")
    ip("a", "link", "add", "va", "type", "veth", "peer", "vb", "netns", "b")
    for ns, dev, i in (("a", "va", 0), ("b", "vb", 1)):
        ip(ns, "addr", "add", f"{ADDR[4][i]}/24", "dev", dev)
        ip(ns, "addr", "add", f"{ADDR[6][i]}/64", "dev", dev, "nodad")
        ip(ns, "link", "set", dev, "up")
    yield


@pytest.fixture(scope="module")
def helper(net: None) -> Iterator[ProcessHelper]:
    with process_helper("--backend", "xfrm", *TEST_RANGES, netns="a") as h:
        yield h


@pytest.fixture
def client(helper: ProcessHelper) -> Iterator[Client]:
    with helper.client() as c:
        yield c
        c.call("flush")
    for ns in ("a", "b"):
        ip(ns, "xfrm", "state", "flush")
        ip(ns, "xfrm", "policy", "flush")


def keys(alg: Alg) -> dict[str, bytes]:
    out = {}
    if alg.enc is not None:
        out["enc_key"] = os.urandom(alg.enc_key_len)
    if alg.auth is not None:
        out["auth_key"] = os.urandom(AUTH_LEN[alg.auth])
    return out


def sa_args(
    alg: Alg, family: int, mode: str, spi: int, outbound: bool, k: dict[str, bytes]
) -> dict[str, Any]:
    local, remote = ADDR[family]
    src, dst = (local, remote) if outbound else (remote, local)
    args: dict[str, Any] = {"proto": alg.proto, "mode": mode, "src": src, "dst": dst}
    args |= {"spi": spi, "reqid": REQID, **k}
    if alg.enc is not None:
        args["enc"] = alg.enc
    if alg.auth is not None:
        args["auth"] = alg.auth
    return args


def ip_state_args(alg: Alg, k: dict[str, bytes]) -> list[str]:
    """The same algorithms and keys, as `ip xfrm state add` takes them."""
    out: list[str] = []
    if alg.enc == "aes-gcm":
        out += ["aead", "rfc4106(gcm(aes))", "0x" + k["enc_key"].hex(), "128"]
    elif alg.enc is not None:
        out += ["enc", KERNEL_ENC[alg.enc], "0x" + k["enc_key"].hex() if k["enc_key"] else ""]
    if alg.auth is not None:
        auth_name, trunc = KERNEL_AUTH[alg.auth]
        out += ["auth-trunc", auth_name, "0x" + k["auth_key"].hex(), str(trunc)]
    return out


@pytest.mark.parametrize("mode", ["transport", "tunnel"])
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("alg", ALGS, ids=lambda a: a.id)
def test_every_algorithm_is_installed(client: Client, alg: Alg, family: int, mode: str) -> None:
    spi = 0x1000 + ALGS.index(alg)
    args = sa_args(alg, family, mode, spi, outbound=True, k=keys(alg))
    client.call("add_sa", args)
    sa_id = {"proto": alg.proto, "dst": args["dst"], "spi": spi}
    sa = client.call("get_sa", sa_id)["sa"]
    assert (sa["enc"], sa["auth"], sa["mode"], sa["reqid"]) == (alg.enc, alg.auth, mode, REQID)
    kernel = ip("a", "xfrm", "state", "list")
    assert f"spi {spi:#010x} reqid {REQID} mode {mode}" in kernel
    if alg.enc is not None:
        assert KERNEL_ENC[alg.enc] in kernel
    if alg.auth is not None:
        assert KERNEL_AUTH[alg.auth][0] in kernel
    client.call("delete_sa", sa_id)
    assert ip("a", "xfrm", "state", "list") == ""


def _policy(family: int, direction: str, mode: str, proto: str) -> dict[str, Any]:
    local, remote = ADDR[family]
    src, dst = (local, remote) if direction == "out" else (remote, local)
    template: dict[str, Any] = {"proto": proto, "mode": mode, "reqid": REQID}
    if mode == "tunnel":
        template |= {"src": src, "dst": dst}
    # UDP only: IPv6 neighbour discovery between the same hosts must not count on the SAs.
    selector = {"src": f"{src}/{PREFIX[family]}", "dst": f"{dst}/{PREFIX[family]}", "proto": 17}
    return {"dir": direction, "selector": selector, "priority": PRIORITY, "templates": [template]}


def _peer_side(
    alg: Alg, family: int, mode: str, k_out: dict[str, bytes], k_in: dict[str, bytes]
) -> None:
    """Namespace b: the mirror image of a's SAs and policies, with `ip xfrm`."""
    a, b = ADDR[family]
    for src, dst, spi, k in ((a, b, 0x2001, k_out), (b, a, 0x2002, k_in)):
        sa = ["src", src, "dst", dst, "proto", alg.proto, "spi", str(spi), "mode", mode]
        ip("b", "xfrm", "state", "add", *sa, "reqid", "9", *ip_state_args(alg, k))
    for direction, src, dst in (("out", b, a), ("in", a, b)):
        tmpl = ["tmpl", "proto", alg.proto, "mode", mode, "reqid", "9"]
        if mode == "tunnel":
            tmpl[1:1] = ["src", src, "dst", dst]
        flow = ["src", src, "dst", dst, "proto", "udp"]
        ip("b", "xfrm", "policy", "add", *flow, "dir", direction, *tmpl)


ECHO = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.settimeout(20)
if sys.argv[2] == "serve":
    s.bind((sys.argv[1], 9000))
    print("ready", flush=True)
    for _ in range(3):
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)
else:
    for _ in range(3):
        s.sendto(b"x" * 100, (sys.argv[1], 9000))
        s.recvfrom(2048)
    print("echoed", flush=True)
"""


def udp_echo(family: int) -> None:
    """Three UDP datagrams a -> b, each echoed b -> a (no ping in the test image)."""
    remote = ADDR[family][1]
    command = ["ip", "netns", "exec", "b", "python3", "-c", ECHO, remote, "serve"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        command = ["ip", "netns", "exec", "a", "python3", "-c", ECHO, remote, "send"]
        sender = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert sender.stdout == "echoed\n", sender.stderr + ip("b", "-s", "xfrm", "state")
        assert server.wait(timeout=30) == 0


TRAFFIC = [
    (Alg("esp", "aes-gcm", 36, None), 4, "transport"),
    (Alg("esp", "aes-cbc", 16, "hmac-sha256-128"), 6, "tunnel"),
    (Alg("esp", "null", 0, "hmac-sha1-96"), 6, "transport"),
    (Alg("ah", None, 0, "hmac-sha512-256"), 4, "tunnel"),
]


@pytest.mark.parametrize(("alg", "family", "mode"), TRAFFIC, ids=lambda x: str(getattr(x, "id", x)))
def test_traffic_and_counters(client: Client, alg: Alg, family: int, mode: str) -> None:
    k_out, k_in = keys(alg), keys(alg)
    client.call("add_sa", sa_args(alg, family, mode, 0x2001, outbound=True, k=k_out))
    client.call("add_sa", sa_args(alg, family, mode, 0x2002, outbound=False, k=k_in))
    for direction in ("out", "in"):
        client.call("add_policy", _policy(family, direction, mode, alg.proto))
    _peer_side(alg, family, mode, k_out, k_in)
    udp_echo(family)
    local, remote = ADDR[family]
    out_id = {"proto": alg.proto, "dst": remote, "spi": 0x2001}
    in_id = {"proto": alg.proto, "dst": local, "spi": 0x2002}
    out_sa, in_sa = (client.call("get_sa", sa_id)["sa"] for sa_id in (out_id, in_id))
    for sa in (out_sa, in_sa):
        c = sa["counters"]
        assert c["packets"] == 3 and c["bytes"] >= 3 * 108, sa  # UDP header + 100 bytes
        assert c["use_time"] > 0 and c["replay_errors"] == c["integrity_errors"] == 0
    assert out_sa["counters"]["oseq"] == 3 and in_sa["counters"]["seq"] == 3
    # XFRM_MSG_GETAE reads the same byte counters (kinkd's traffic poll, RFC 4430 §3.7).
    octets = [sa["counters"]["bytes"] for sa in (out_sa, in_sa)]
    assert client.call("counters", {"sas": [out_id, in_id]}) == {"bytes": octets}


def test_allocspi_then_update_fills_it(client: Client) -> None:
    a, b = ADDR[4]
    request = {"proto": "esp", "src": b, "dst": a, "reqid": REQID}
    spi = client.call("alloc_spi", request | {"spi_min": 0x3000, "spi_max": 0x3FFF})["spi"]
    assert client.call("get_sa", {"proto": "esp", "dst": a, "spi": spi})["sa"]["enc"] is None
    alg = Alg("esp", "aes-gcm", 20, None)
    client.call("update_sa", sa_args(alg, 4, "transport", spi, outbound=False, k=keys(alg)))
    sa = client.call("get_sa", {"proto": "esp", "dst": a, "spi": spi})["sa"]
    assert sa["enc"] == "aes-gcm"
    assert "rfc4106(gcm(aes))" in ip("a", "xfrm", "state", "list")


def test_foreign_sas_are_never_touched(client: Client) -> None:
    a, b = ADDR[4]
    alg = Alg("esp", "aes-cbc", 16, "hmac-sha1-96")
    foreign = ["src", b, "dst", a, "proto", "esp", "spi", "0x4000"]
    ip("a", "xfrm", "state", "add", *foreign, "reqid", "5", *ip_state_args(alg, keys(alg)))
    sa_id = {"proto": "esp", "dst": a, "spi": 0x4000}
    for op, args in (
        ("get_sa", sa_id),
        ("delete_sa", sa_id),
        ("update_sa", sa_args(alg, 4, "transport", 0x4000, outbound=False, k=keys(alg))),
    ):
        with pytest.raises(PrivsepError) as e:
            client.call(op, args)
        assert e.value.code == "not_owned", op
    client.call("add_sa", sa_args(alg, 4, "transport", 0x4001, outbound=False, k=keys(alg)))
    assert client.call("flush") == {"sas": 1, "policies": 0}
    assert "reqid 5" in ip("a", "xfrm", "state", "get", *foreign)


def test_expire_events(client: Client) -> None:
    alg = Alg("esp", "aes-gcm", 20, None)
    args = sa_args(alg, 4, "transport", 0x5000, outbound=True, k=keys(alg))
    client.call("add_sa", args | {"lifetime": {"soft_add_seconds": 1, "hard_add_seconds": 3}})
    mine = 0x5000
    soft = wait_event(client, lambda e: e.kind == "expire" and e.data["sa"]["spi"] == mine)
    hard = wait_event(client, lambda e: e.kind == "expire" and e.data["sa"]["spi"] == mine)
    assert (soft.data["hard"], hard.data["hard"]) == (False, True)
    assert client.call("dump")["sas"] == []


def test_expire_on_bytes(client: Client) -> None:
    alg = Alg("esp", "aes-gcm", 20, None)
    k_out, k_in = keys(alg), keys(alg)
    limits = {"soft_bytes": 200, "hard_bytes": 10000}
    out_args = sa_args(alg, 4, "transport", 0x2001, outbound=True, k=k_out)
    client.call("add_sa", out_args | {"lifetime": limits})
    client.call("add_sa", sa_args(alg, 4, "transport", 0x2002, outbound=False, k=k_in))
    for direction in ("out", "in"):
        client.call("add_policy", _policy(4, direction, "transport", "esp"))
    _peer_side(alg, 4, "transport", k_out, k_in)
    udp_echo(4)  # 324 bytes out: past the soft limit
    event = wait_event(client, lambda e: e.kind == "expire" and e.data["sa"]["spi"] == 0x2001)
    assert event.data["hard"] is False
    assert event.data["sa"]["lifetime"] == limits


def test_acquire_event(client: Client) -> None:
    a, b = ADDR[4]
    policy = _policy(4, "out", "transport", "esp")
    policy["selector"] |= {"dport": 7000}
    client.call("add_policy", policy)
    send = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    send += f"try: s.sendto(b'x', ('{b}', 7000))\nexcept OSError: pass\n"
    subprocess.run(["ip", "netns", "exec", "a", "python3", "-c", send], check=True)
    event = wait_event(client, lambda e: e.kind == "acquire")
    assert (event.data["src"], event.data["dst"], event.data["proto"]) == (a, b, "esp")
    alg = Alg("esp", "aes-gcm", 20, None)
    args = sa_args(alg, 4, "transport", 0x6000, outbound=True, k=keys(alg))
    client.call("add_sa", args | {"seq": event.data["seq"]})
    assert [sa["spi"] for sa in client.call("dump")["sas"]] == [0x6000]


def test_deletion_by_someone_else_is_an_event(client: Client) -> None:
    alg = Alg("esp", "aes-cbc", 16, "hmac-sha1-96")
    args = sa_args(alg, 6, "tunnel", 0x7000, outbound=True, k=keys(alg))
    client.call("add_sa", args)
    ip(
        "a",
        "xfrm",
        "state",
        "delete",
        "src",
        args["src"],
        "dst",
        args["dst"],
        "proto",
        "esp",
        "spi",
        "0x7000",
    )
    event = wait_event(client, lambda e: e.kind == "sa_deleted")
    assert (event.data["sa"]["spi"], event.data["sa"]["dst"]) == (0x7000, args["dst"])
