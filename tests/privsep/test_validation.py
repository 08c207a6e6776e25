"""Every kind of bad request is refused with an error reply, the connection survives, and the
backend never sees the request (RecordingBackend.calls stays empty)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from kink_privsep import protocol
from tests.privsep.harness import TEST_PRIORITIES, TEST_REQIDS, ThreadHelper, thread_helper

REQID = TEST_REQIDS[0] + 1
PRIORITY = TEST_PRIORITIES[0] + 1
DROP = object()  # a field to remove

SA: dict[str, Any] = {
    "proto": "esp",
    "mode": "transport",
    "src": "192.0.2.1",
    "dst": "192.0.2.2",
    "spi": 0x1000,
    "reqid": REQID,
    "enc": "aes-cbc",
    "enc_key": bytes(16),
    "auth": "hmac-sha256-128",
    "auth_key": bytes(32),
}
SPI_REQUEST: dict[str, Any] = {
    "proto": "esp",
    "src": "192.0.2.1",
    "dst": "192.0.2.2",
    "reqid": REQID,
}
TEMPLATE: dict[str, Any] = {
    "proto": "esp",
    "mode": "tunnel",
    "reqid": REQID,
    "src": "192.0.2.1",
    "dst": "192.0.2.2",
}
POLICY: dict[str, Any] = {
    "dir": "out",
    "selector": {"src": "10.0.0.0/24", "dst": "10.0.1.0/24"},
    "priority": PRIORITY,
    "templates": [TEMPLATE],
}


SA_ID: dict[str, Any] = {"proto": "esp", "dst": "192.0.2.2", "spi": 0x1000}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {**base, **changes}
    return {k: v for k, v in out.items() if v is not DROP}


GOOD = [
    ("add_sa", SA),
    ("add_sa", _with(SA, enc="aes-gcm", enc_key=bytes(36), auth=DROP, auth_key=DROP)),
    ("add_sa", _with(SA, enc="null", enc_key=DROP)),
    (
        "add_sa",
        _with(SA, proto="ah", enc=DROP, enc_key=DROP, auth="hmac-sha512-256", auth_key=bytes(64)),
    ),
    ("alloc_spi", SPI_REQUEST),
    ("add_policy", POLICY),
    ("add_policy", _with(POLICY, action="block", templates=[])),
    ("counters", {"sas": [SA_ID, _with(SA_ID, dst="2001:db8::2", mark={"value": 1})]}),
    ("counters", {"sas": [SA_ID] * protocol.MAX_COUNTERS}),
]

# (op, args, error code)
BAD: list[tuple[str, Any, str]] = [
    ("add_sa", _with(SA, spi="4096"), "invalid"),
    ("add_sa", _with(SA, spi=True), "invalid"),
    ("add_sa", _with(SA, spi=255), "invalid"),
    ("add_sa", _with(SA, spi=2**32), "invalid"),
    ("add_sa", _with(SA, spi=-1), "invalid"),
    ("add_sa", _with(SA, reqid=TEST_REQIDS[1] + 1), "forbidden"),
    ("add_sa", _with(SA, reqid=1), "forbidden"),
    ("add_sa", _with(SA, dst="2001:db8::2"), "invalid"),
    ("add_sa", _with(SA, src="192.0.2"), "invalid"),
    ("add_sa", _with(SA, src="0.0.0.0"), "invalid"),
    ("add_sa", _with(SA, src="fe80::1%eth0", dst="fe80::2"), "invalid"),
    ("add_sa", _with(SA, src="192.0.2.1/32"), "invalid"),
    ("add_sa", _with(SA, src=b"\xc0\x00\x02\x01"), "invalid"),
    ("add_sa", _with(SA, enc="des"), "invalid"),
    ("add_sa", _with(SA, enc="cbc(aes)"), "invalid"),
    ("add_sa", _with(SA, auth="hmac-md5-96"), "invalid"),
    ("add_sa", _with(SA, enc_key=bytes(17)), "invalid"),
    ("add_sa", _with(SA, enc_key=bytes(15)), "invalid"),
    ("add_sa", _with(SA, enc_key=bytes(65)), "invalid"),
    ("add_sa", _with(SA, enc_key="0" * 16), "invalid"),
    ("add_sa", _with(SA, auth_key=bytes(20)), "invalid"),
    ("add_sa", _with(SA, auth="hmac-sha1-96", auth_key=bytes(32)), "invalid"),
    ("add_sa", _with(SA, enc="aes-gcm", enc_key=bytes(16), auth=DROP, auth_key=DROP), "invalid"),
    ("add_sa", _with(SA, enc="aes-gcm", enc_key=bytes(28), auth=DROP, auth_key=DROP), "invalid"),
    ("add_sa", _with(SA, enc="aes-gcm", enc_key=bytes(20)), "invalid"),
    ("add_sa", _with(SA, auth=DROP, auth_key=DROP), "invalid"),
    ("add_sa", _with(SA, enc="null", enc_key=DROP, auth=DROP, auth_key=DROP), "invalid"),
    ("add_sa", _with(SA, enc="null", enc_key=bytes(16)), "invalid"),
    ("add_sa", _with(SA, enc=DROP, enc_key=DROP), "invalid"),
    ("add_sa", _with(SA, auth=DROP), "invalid"),
    ("add_sa", _with(SA, proto="ah"), "invalid"),
    ("add_sa", _with(SA, proto="ipcomp"), "invalid"),
    ("add_sa", _with(SA, mode="beet"), "invalid"),
    ("add_sa", _with(SA, dst=DROP), "invalid"),
    ("add_sa", _with(SA, reqid=DROP), "invalid"),
    ("add_sa", _with(SA, color="blue"), "invalid"),
    ("add_sa", _with(SA, replay_window=33), "invalid"),
    ("add_sa", _with(SA, lifetime={"hard_bytes": 0}), "invalid"),
    ("add_sa", _with(SA, lifetime={"hard_bytes": 2**64 - 1}), "invalid"),
    ("add_sa", _with(SA, lifetime={"hard_add_seconds": 2**32}), "invalid"),
    ("add_sa", _with(SA, lifetime={"hard_days": 1}), "invalid"),
    ("add_sa", _with(SA, lifetime=[1, 2]), "invalid"),
    ("add_sa", _with(SA, selector={"src": "10.0.0.1/24", "dst": "10.0.1.0/24"}), "invalid"),
    ("add_sa", _with(SA, selector={"src": "10.0.0.0/24", "dst": "fd00::/64"}), "invalid"),
    ("add_sa", _with(SA, selector={"src": "fd00::/64", "dst": "fd01::/64"}), "invalid"),
    (
        "add_sa",
        _with(SA, selector={"src": "10.0.0.0/8", "dst": "10.0.0.0/8", "dport": 80}),
        "invalid",
    ),
    ("add_sa", _with(SA, mark={"value": -1}), "invalid"),
    ("add_sa", _with(SA, mark={"mask": 1}), "invalid"),
    (
        "add_sa",
        _with(
            SA,
            proto="ah",
            enc=DROP,
            enc_key=DROP,
            encap={"type": "espinudp", "sport": 4500, "dport": 4500},
        ),
        "invalid",
    ),
    ("add_sa", _with(SA, encap={"type": "espinudp", "sport": 0, "dport": 4500}), "invalid"),
    (
        "add_sa",
        _with(SA, encap={"type": "espinudp", "sport": 4500, "dport": 4500, "oa": "2001:db8::1"}),
        "invalid",
    ),
    ("add_sa", _with(SA, seq=77), "forbidden"),  # no ACQUIRE had seq 77
    ("update_sa", _with(SA, reqid=5), "forbidden"),
    ("get_sa", {"proto": "esp", "dst": "192.0.2.2"}, "invalid"),
    (
        "delete_sa",
        {"proto": "esp", "dst": "192.0.2.2", "spi": 0x1000, "src": "192.0.2.1"},
        "invalid",
    ),
    ("alloc_spi", _with(SPI_REQUEST, spi_min=0x2000, spi_max=0x1000), "invalid"),
    ("alloc_spi", _with(SPI_REQUEST, spi_min=1), "invalid"),
    ("alloc_spi", _with(SPI_REQUEST, reqid=0), "forbidden"),
    ("alloc_spi", _with(SPI_REQUEST, seq=3), "forbidden"),
    ("add_policy", _with(POLICY, priority=0), "forbidden"),
    ("add_policy", _with(POLICY, priority=TEST_PRIORITIES[1] + 1), "forbidden"),
    ("add_policy", _with(POLICY, templates=[_with(TEMPLATE, reqid=0)]), "forbidden"),
    ("add_policy", _with(POLICY, templates=[TEMPLATE] * 5), "invalid"),
    ("add_policy", _with(POLICY, templates=[_with(TEMPLATE, dst=DROP)]), "invalid"),
    ("add_policy", _with(POLICY, templates=[_with(TEMPLATE, dst="2001:db8::2")]), "invalid"),
    (
        "add_policy",
        _with(POLICY, templates=[_with(TEMPLATE, mode="transport", src=DROP, dst="2001:db8::2")]),
        "invalid",
    ),
    ("add_policy", _with(POLICY, templates=[_with(TEMPLATE, spi=7)]), "invalid"),
    ("add_policy", _with(POLICY, templates=TEMPLATE), "invalid"),
    ("add_policy", _with(POLICY, action="block"), "invalid"),
    ("add_policy", _with(POLICY, action="deny", templates=[]), "invalid"),
    ("add_policy", _with(POLICY, dir="inbound"), "invalid"),
    ("add_policy", _with(POLICY, selector=DROP), "invalid"),
    ("update_policy", _with(POLICY, priority=1), "forbidden"),
    ("delete_policy", {"dir": "out", "selector": {"src": "10.0.0.0/24"}}, "invalid"),
    ("dump", {"what": "everything"}, "invalid"),
    ("flush", {"what": None}, "invalid"),
    ("hello", {"x": 1}, "invalid"),
    ("counters", {}, "invalid"),
    ("counters", {"sas": SA_ID}, "invalid"),
    ("counters", {"sas": [SA_ID] * (protocol.MAX_COUNTERS + 1)}, "invalid"),
    ("counters", {"sas": [SA_ID], "what": "sa"}, "invalid"),
    ("counters", {"sas": [_with(SA_ID, spi=DROP)]}, "invalid"),
    ("counters", {"sas": [_with(SA_ID, spi=255)]}, "invalid"),
    ("counters", {"sas": [_with(SA_ID, spi=2**32)]}, "invalid"),
    ("counters", {"sas": [_with(SA_ID, proto="ipcomp")]}, "invalid"),
    ("counters", {"sas": [_with(SA_ID, dst="192.0.2.0/24")]}, "invalid"),
    ("counters", {"sas": [_with(SA_ID, src="192.0.2.1")]}, "invalid"),
    ("counters", {"sas": [[50, "192.0.2.2", 0x1000]]}, "invalid"),
]


def _request(req_id: int, op: str, args: object) -> bytes:
    return protocol.encode_request(req_id, op, {"k": args})


def _nested_args(depth: int) -> bytes:
    """A hello whose args hold arrays nested `depth` deep (msgpack's decoder stops at 1024)."""
    head = {"v": 1, "id": 9, "op": "hello"}
    body = b"".join(_pack(k) + _pack(v) for k, v in head.items())
    return b"\x84" + body + _pack("args") + b"\x81\xa1k" + b"\x91" * depth + b"\x00"


def _pack(obj: object) -> bytes:
    data = msgpack.packb(obj)
    assert isinstance(data, bytes)
    return data


# (raw message, error code, whether the reply can carry the request's id 9)
RAW: list[tuple[bytes, str, bool]] = [
    (b"\xc1", "malformed", False),  # never-used msgpack byte
    (_pack([1, 9, "hello", {}]), "malformed", False),
    (_pack({"v": 1, "id": 9, "op": "hello", "args": {}}) + b"\x00", "malformed", False),
    (_pack({"v": 2, "id": 9, "op": "hello", "args": {}}), "version", True),
    (_pack({"v": 1, "id": 9, "op": "reboot", "args": {}}), "unknown_op", True),
    (_pack({"v": 1, "id": 9, "op": "hello"}), "malformed", True),
    (_pack({"v": 1, "id": 9, "op": "hello", "args": [], "x": 0}), "malformed", True),
    (_pack({"v": 1, "id": 9, "op": "hello", "args": []}), "malformed", True),
    (_pack({"v": 1, "id": "9", "op": "hello", "args": {}}), "malformed", False),
    (_pack({"v": 1, "id": -9, "op": "hello", "args": {}}), "malformed", False),
    (_pack({"v": 1, "id": 9, "op": 3, "args": {}}), "malformed", True),
    (_pack({1: 1}), "malformed", False),
    (_request(9, "hello", "x" * protocol.MAX_REQUEST), "malformed", False),
    (_nested_args(5000), "malformed", False),
]


@pytest.fixture(scope="module")
def helper() -> Iterator[ThreadHelper]:
    with thread_helper() as h:
        yield h


def _assert_alive_and_untouched(helper: ThreadHelper, client: Any) -> None:
    assert client.call("hello")["version"] == 1
    assert helper.backend.calls == []


@pytest.mark.parametrize(("op", "args"), GOOD, ids=[f"{op}{i}" for i, (op, _) in enumerate(GOOD)])
def test_the_base_requests_are_valid(helper: ThreadHelper, op: str, args: dict[str, Any]) -> None:
    # The refusals below are single changes to these: each one is what gets refused.
    with helper.client() as c:
        c.call(op, args)
        c.call("flush")
    helper.backend.calls.clear()


@pytest.mark.parametrize(("op", "args", "code"), BAD, ids=[f"{b[0]}{i}" for i, b in enumerate(BAD)])
def test_refused_before_the_backend(
    helper: ThreadHelper, op: str, args: dict[str, Any], code: str
) -> None:
    with helper.client() as c:
        reply = c.wait(c.send(op, args))
        assert (reply.ok, reply.error) == (False, code), reply.reason
        assert reply.reason
        _assert_alive_and_untouched(helper, c)


@pytest.mark.parametrize(("raw", "code", "has_id"), RAW, ids=[f"raw{i}" for i in range(len(RAW))])
def test_malformed_messages(helper: ThreadHelper, raw: bytes, code: str, has_id: bool) -> None:
    with helper.client() as c:
        c.sock.send(raw)
        reply = c.wait(9 if has_id else None)
        assert (reply.ok, reply.error) == (False, code), reply.reason
        _assert_alive_and_untouched(helper, c)


def test_refusal_reasons_never_quote_keys(helper: ThreadHelper) -> None:
    key = b"SECRET-KEY-BYTES!"  # 17 bytes: a wrong length for aes-cbc
    with helper.client() as c:
        reply = c.wait(c.send("add_sa", _with(SA, enc_key=key)))
        assert reply.error == "invalid"
        assert "SECRET" not in reply.reason and "17 bytes" in reply.reason


def test_an_empty_message_ends_the_connection(helper: ThreadHelper) -> None:
    # recv() returns 0 bytes for it as for EOF: the protocol documents it as a goodbye.
    with helper.client() as c:
        c.sock.send(b"")
        assert c.sock.recv(100) == b""
    _assert_alive_and_untouched(helper, helper.client())
