"""kink_privsep attacked by a compromised daemon: a client speaking the helper protocol
directly, against the recording backend and against the host kernel in a throwaway network
namespace (policies only: the host kernel has no ESP). It cannot delete, replace or read
objects kink does not own, cannot go past the configured limits, and cannot make the helper
crash or stop answering: after every attack a new connection still gets its hello."""

import contextlib
import ipaddress
import os
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest

from kink_privsep import protocol, server
from kink_privsep.client import Client, PrivsepError
from kink_privsep.main import listening_socket
from kink_privsep.model import (
    IPPROTO_ESP,
    MODE_TRANSPORT,
    Config,
    PolicyId,
    PolicySpec,
    SaId,
    SaInfo,
    Selector,
)
from kink_privsep.recording import RecordingBackend
from kink_privsep.service import Service
from tests.privsep.harness import (
    TEST_CONFIG,
    TEST_PRIORITIES,
    TEST_RANGES,
    TEST_REQIDS,
    process_helper,
    short_dir,
    thread_helper,
)

REQID, PRIORITY = TEST_REQIDS[0] + 3, TEST_PRIORITIES[0] + 3
FOREIGN_PRIORITY, FOREIGN_REQID = 7, 7
MAX_SAS, MAX_POLICIES = 8, 4
SELECTOR = {"src": "10.40.0.0/24", "dst": "10.41.0.0/24"}
FOREIGN_SELECTOR = {"src": "10.50.0.0/24", "dst": "10.51.0.0/24"}
TEMPLATE = {
    "proto": "esp",
    "mode": "tunnel",
    "reqid": REQID,
    "src": "192.0.2.1",
    "dst": "192.0.2.2",
}


def policy(selector: dict[str, Any] = SELECTOR, **changes: Any) -> dict[str, Any]:
    return {"dir": "out", "selector": selector, "priority": PRIORITY, "templates": [TEMPLATE]} | (
        changes
    )


def sa(spi: int, **changes: Any) -> dict[str, Any]:
    base = {
        "proto": "esp",
        "mode": "transport",
        "src": "192.0.2.1",
        "dst": "192.0.2.2",
        "spi": spi,
        "reqid": REQID,
        "enc": "aes-cbc",
        "enc_key": bytes(16),
        "auth": "hmac-sha1-96",
        "auth_key": bytes(20),
    }
    return base | changes


@dataclass
class Target:
    """A running helper and the other software beside it (what plants foreign objects)."""

    kind: str
    path: str
    plant_policy: Callable[[dict[str, Any]], None]
    foreign_policies: Callable[[], list[str]]  # descriptions, to compare before and after
    alive: Callable[[], bool]  # the helper process (or thread) still runs
    backend: RecordingBackend | None = None

    def client(self) -> Client:
        return Client(self.path)


def _selector(d: dict[str, Any]) -> Selector:
    return Selector(ipaddress.ip_network(d["src"]), ipaddress.ip_network(d["dst"]))


@contextlib.contextmanager
def _recording() -> Iterator[Target]:
    config = Config(TEST_REQIDS, TEST_PRIORITIES, max_sas=MAX_SAS, max_policies=MAX_POLICIES)
    with thread_helper(config) as h:

        def plant(selector: dict[str, Any]) -> None:
            pid = PolicyId(1, _selector(selector))  # dir out
            h.backend.foreign_add_policy(PolicySpec(pid, FOREIGN_PRIORITY))

        def foreign() -> list[str]:
            return sorted(
                repr(p.spec)
                for p in h.backend.dump_policies()
                if p.spec.priority == FOREIGN_PRIORITY
            )

        yield Target("recording", h.path, plant, foreign, lambda: True, h.backend)


def _ip(netns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", netns, *args], check=True, capture_output=True, text=True
    ).stdout


@contextlib.contextmanager
def _kernel() -> Iterator[Target]:
    if os.geteuid() != 0:
        pytest.skip("needs root (netns, XFRM)")
    netns = f"kink-robust-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        _ip(netns, "link", "set", "lo", "up")
        limits = ["--max-sas", str(MAX_SAS), "--max-policies", str(MAX_POLICIES)]
        with process_helper("--backend", "xfrm", *limits, *TEST_RANGES, netns=netns) as h:

            def plant(selector: dict[str, Any]) -> None:
                _ip(netns, "xfrm", "policy", "add", "src", selector["src"], "dst",
                    selector["dst"], "dir", "out", "priority", str(FOREIGN_PRIORITY))  # fmt: skip

            def foreign() -> list[str]:
                listing = _ip(netns, "xfrm", "policy", "list")
                return sorted(
                    b for b in listing.split("src ") if f"priority {FOREIGN_PRIORITY} " in b
                )

            yield Target("kernel", h.path, plant, foreign, lambda: h.process.poll() is None)
            log = h.log.read_text()
            assert "Traceback" not in log and "internal error" not in log, log
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True)


@pytest.fixture(params=["recording", "kernel"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    with _recording() if request.param == "recording" else _kernel() as t:
        yield t
        assert t.alive(), "the helper died"
        with t.client() as c:
            assert c.call("hello")["version"] == protocol.VERSION


def refused(client: Client, op: str, args: dict[str, Any]) -> str:
    with pytest.raises(PrivsepError) as e:
        client.call(op, args)
    return e.value.code


# --------------------------------------------------------------------- ownership


def test_foreign_policies_cannot_be_deleted_replaced_or_shadowed(target: Target) -> None:
    target.plant_policy(FOREIGN_SELECTOR)
    target.plant_policy(SELECTOR)
    before = target.foreign_policies()
    assert len(before) == 2
    with target.client() as c:
        for selector in (FOREIGN_SELECTOR, SELECTOR):
            pid = {"dir": "out", "selector": selector}
            assert refused(c, "delete_policy", pid) == "not_owned"
            assert refused(c, "update_policy", policy(selector)) == "not_owned"
            assert refused(c, "add_policy", policy(selector)) == "exists"
        # kink's band only: a request in another's priority or reqid is refused outright.
        assert refused(c, "add_policy", policy(priority=FOREIGN_PRIORITY)) == "forbidden"
        assert refused(c, "update_policy", policy(priority=0)) == "forbidden"
        template = TEMPLATE | {"reqid": FOREIGN_REQID}
        assert refused(c, "add_policy", policy(templates=[template])) == "forbidden"
        assert c.call("flush") == {"sas": 0, "policies": 0}
        assert c.call("dump") == {"sas": [], "policies": []}  # foreign objects are not shown
    assert target.foreign_policies() == before


def test_foreign_sas_cannot_be_touched() -> None:
    """The recording backend only: the host kernel has no ESP to hold SAs."""
    with _recording() as target:
        _foreign_sas(target)


def _foreign_sas(target: Target) -> None:
    backend = target.backend
    assert backend is not None
    sa_id = SaId(ipaddress.ip_address("192.0.2.2"), 0x4000, IPPROTO_ESP)
    src = ipaddress.ip_address("192.0.2.1")
    foreign = SaInfo(sa_id, src, MODE_TRANSPORT, FOREIGN_REQID, "aes-cbc", "hmac-sha1-96")
    backend.foreign_add_sa(foreign)
    placeholder = SaInfo(SaId(sa_id.dst, 0, IPPROTO_ESP), src, MODE_TRANSPORT, REQID, None, None)
    backend.foreign_add_sa(placeholder)  # the kernel's own ACQUIRE placeholder (SPI 0)
    ident = {"proto": "esp", "dst": "192.0.2.2", "spi": 0x4000}
    with target.client() as c:
        assert refused(c, "get_sa", ident) == "not_owned"
        assert refused(c, "delete_sa", ident) == "not_owned"
        assert refused(c, "update_sa", sa(0x4000)) == "not_owned"
        assert refused(c, "add_sa", sa(0x4000)) == "exists"
        assert refused(c, "add_sa", sa(0x4001, reqid=FOREIGN_REQID)) == "forbidden"
        assert refused(c, "alloc_spi", {"proto": "esp", "src": "192.0.2.1", "dst": "192.0.2.2",
                                        "reqid": FOREIGN_REQID}) == "forbidden"  # fmt: skip
        assert c.call("flush") == {"sas": 0, "policies": 0}
    assert backend.get_sa(sa_id) == foreign
    assert backend.get_sa(placeholder.id) == placeholder


# ------------------------------------------------------------------------- limits


def test_limits_hold_across_pipelined_connections(target: Target) -> None:
    """Three connections race add_policy (and, on the recording backend, add_sa/alloc_spi):
    exactly the configured number succeed."""
    clients = [target.client() for _ in range(3)]
    try:
        sent = []
        for i in range(3 * MAX_POLICIES):
            selector = {"src": f"10.60.{i}.0/24", "dst": "10.61.0.0/24"}
            c = clients[i % 3]
            sent.append((c, c.send("add_policy", policy(selector))))
        if target.kind == "recording":
            for i in range(2 * MAX_SAS):
                c = clients[i % 3]
                sent.append((c, c.send("add_sa", sa(0x7000 + i))))
        replies = [c.wait(req_id) for c, req_id in sent]
        codes = [r.error or "ok" for r in replies]
        sas = MAX_SAS if target.kind == "recording" else 0
        assert codes.count("ok") == MAX_POLICIES + sas
        assert set(codes) == {"ok", "limit"}
        hello = clients[0].call("hello")
        assert (hello["owned_policies"], hello["owned_sas"]) == (MAX_POLICIES, sas)
        clients[0].call("flush")
    finally:
        for c in clients:
            c.close()


# ------------------------------------------------------------------ crash attempts


def _raw(target: Target) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(target.path)  # blocking: a full listen backlog waits for the helper's accept
    s.settimeout(30)
    return s


def _answers(s: socket.socket, messages: list[bytes]) -> list[protocol.Reply]:
    """Send each message and read its reply (in windows, so the helper never pauses us)."""
    replies: list[protocol.Reply] = []
    for start in range(0, len(messages), 64):
        window = messages[start : start + 64]
        for m in window:
            s.send(m)
        for _ in window:
            reply = protocol.decode_message(s.recv(protocol.MAX_MESSAGE))
            assert isinstance(reply, protocol.Reply)
            replies.append(reply)
    return replies


def _deep(depth: int) -> bytes:
    """A request whose args nest `depth` maps deep, inside the size limit."""
    inner: bytes = msgpack.packb(None)
    for _ in range(depth):
        inner = b"\x81\xa1a" + inner  # fixmap of 1: {"a": <inner>}
    head: bytes = msgpack.packb({"v": 1, "id": 9, "op": "add_policy"})
    args: bytes = msgpack.packb("args")
    return bytes([head[0] + 1]) + head[1:] + args + inner


HOSTILE: list[bytes] = [
    b"\xc1",  # never used in msgpack
    b"\xdf\xff\xff\xff\xff",  # a map claiming 2**32-1 entries
    b"\xdd\x7f\xff\xff\xff",  # an array claiming 2**31-1 entries
    b"\xdb\xff\xff\xff\xff" + b"x" * 16,  # a str claiming 4 GiB
    b"\x91" * 8000 + b"\xc0",  # 8000 nested arrays
    _deep(2700),
    msgpack.packb({"v": 1, "id": 1, "op": "hello", "args": {}, "x": 1}),
    msgpack.packb({"v": 1, "id": 2**40, "op": "hello", "args": {}}),
    msgpack.packb({"v": 1, "id": -1, "op": "hello", "args": {}}),
    msgpack.packb({"v": 1.0, "id": 1, "op": "hello", "args": {}}),
    msgpack.packb({"v": True, "id": 1, "op": "hello", "args": {}}),
    msgpack.packb({1: 1, "id": 1, "op": "hello", "args": {}}),
    msgpack.packb({"v": 1, "id": 1, "op": "hello", "args": {"ext": msgpack.ExtType(5, b"x")}}),
    msgpack.packb({"v": 1, "id": 1, "op": "add_sa", "args": sa(2**64 - 1)}),
    msgpack.packb({"v": 1, "id": 1, "op": "add_sa", "args": sa(0x100, enc_key=b"k" * 4000)}),
    msgpack.packb(
        {"v": 1, "id": 1, "op": "add_policy", "args": policy(templates=[TEMPLATE] * 300)}
    ),
    msgpack.packb({"v": 1, "id": 1, "op": "dump", "args": {"what": "a" * 7000}}),
    msgpack.packb({"v": 1, "id": 1, "op": "x" * 7000, "args": {}}),
    msgpack.packb({"v": 1, "id": 1, "op": "flush", "args": {"what": ["all"] * 100}}),
    b"",  # last: an empty message ends the connection
]


def test_hostile_messages_get_error_replies(target: Target) -> None:
    with _raw(target) as s:
        replies = _answers(s, HOSTILE[:-1])
        assert [r.ok for r in replies] == [False] * len(replies)
        assert {r.error for r in replies} <= {"malformed", "version", "unknown_op", "invalid"}
        s.send(HOSTILE[-1])
        assert s.recv(protocol.MAX_MESSAGE) == b""  # closed by the helper


def test_a_flood_of_random_and_truncated_requests(target: Target) -> None:
    rng = random.Random(10)
    valid = [protocol.encode_request(i, "add_policy", policy()) for i in range(1, 40)]
    flood = [rng.randbytes(rng.randrange(1, 300)) for _ in range(1500)]
    flood += [m[: rng.randrange(1, len(m))] for m in valid]  # half-written requests
    flood += [bytes(b ^ (1 << rng.randrange(8)) if rng.random() < 0.05 else b for b in m)
              for m in valid]  # fmt: skip
    with _raw(target) as s:
        replies = _answers(s, flood)
    assert len(replies) == len(flood)
    assert "internal" not in {r.error for r in replies}


def test_huge_messages(target: Target) -> None:
    with _raw(target) as s:
        for size in (protocol.MAX_REQUEST + 1, 65536, 200_000):
            s.send(msgpack.packb({"v": 1, "id": 1, "op": "hello", "args": {"x": b"x" * size}}))
            reply = protocol.decode_message(s.recv(protocol.MAX_MESSAGE))
            assert isinstance(reply, protocol.Reply) and reply.error == "malformed"
            assert reply.id is None


def test_many_connections(target: Target) -> None:
    opened = []
    try:
        for _ in range(server.MAX_CLIENTS + 8):
            opened.append(_raw(target))
        answered = 0
        for s in opened:
            try:
                s.send(protocol.encode_request(1, "hello", {}))
                if s.recv(protocol.MAX_MESSAGE):
                    answered += 1
            except OSError:
                pass
        # The rest were closed on accept (a connection of an earlier test may still count).
        assert server.MAX_CLIENTS - 1 <= answered <= server.MAX_CLIENTS
    finally:
        for s in opened:
            s.close()


def test_disconnect_mid_request(target: Target) -> None:
    """Requests sent, connection closed before any reply is read; repeatedly."""
    for round_ in range(20):
        s = _raw(target)
        for i in range(30):
            selector = {"src": f"10.70.{i}.0/24", "dst": "10.71.0.0/24"}
            s.send(protocol.encode_request(i + 1, "add_policy", policy(selector)))
            s.send(protocol.encode_request(i + 100, "delete_policy", policy_id(selector)))
        s.send(protocol.encode_request(999, "dump", {})[:-3])
        if round_ % 2:
            s.shutdown(socket.SHUT_WR)
        s.close()
    with target.client() as c:
        # The closed connections' requests may still be being taken, one message a turn each
        # beside ours (kink_privsep/server.py): the helper's count and the kernel's policies
        # agree once they all are (under load, a hello and a dump could straddle one).
        deadline = time.monotonic() + 10
        while True:
            hello = c.call("hello")
            dump = c.call("dump")
            if hello["owned_policies"] == len(dump["policies"]) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert hello["owned_policies"] == len(dump["policies"]) <= MAX_POLICIES
        c.call("flush")


def test_closed_clients_do_not_hold_places() -> None:
    """All places taken by clients that closed with requests still unread, then a new client:
    it is served (a quickly restarted daemon must not be refused). The connections wait in the
    listen backlog before the loop starts, so the helper meets them all in one accept burst."""
    with short_dir() as d:
        path = str(d / "privsep.sock")
        listener, _ = listening_socket(path, os.getuid())
        backend = RecordingBackend()
        helper = server.Server(listener, Service(backend, TEST_CONFIG), os.getuid())
        for _ in range(server.MAX_CLIENTS):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.connect(path)
            s.send(protocol.encode_request(1, "hello", {}))
            s.close()
        late = Client(path)
        thread = threading.Thread(target=helper.run, daemon=True)
        thread.start()
        try:
            assert late.call("hello")["owned_policies"] == 0
        finally:
            late.close()
            helper.stop()
            thread.join()
            listener.close()
            backend.close()


def policy_id(selector: dict[str, Any]) -> dict[str, Any]:
    return {"dir": "out", "selector": selector}
