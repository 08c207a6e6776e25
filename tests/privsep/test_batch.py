"""Batches (kink_privsep.protocol, "Batches"): several requests in one message, each checked and
answered on its own, in order, in one message back; a malformed batch refused whole."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from kink_privsep import protocol
from kink_privsep.client import Client
from tests.privsep.harness import ThreadHelper, thread_helper
from tests.privsep.test_protocol import model_sa_id, sa, sa_id


@pytest.fixture
def helper() -> Iterator[ThreadHelper]:
    with thread_helper() as h:
        yield h


def _receive(sock: socket.socket) -> list[protocol.Reply | protocol.Event]:
    return protocol.decode_messages(sock.recv(protocol.MAX_MESSAGE))


def _replies(client: Client, count: int) -> list[protocol.Reply | protocol.Event]:
    """Messages (raw: one recv each) until `count` replies have come, in the order they came."""
    seen: list[protocol.Reply | protocol.Event] = []
    while sum(isinstance(m, protocol.Reply) for m in seen) < count:
        seen += _receive(client.sock)
    return seen


def test_hello_offers_batches(helper: ThreadHelper) -> None:
    with helper.client() as c:
        assert c.call("hello")["max_batch"] == protocol.MAX_BATCH


def test_each_request_of_a_batch_is_answered_on_its_own(helper: ThreadHelper) -> None:
    requests: list[tuple[str, dict[str, Any]]] = [
        ("add_sa", sa(0x1000)),
        ("add_sa", sa(0x1001, enc_key=b"short")),  # invalid: refused, never executed
        ("add_sa", sa(0x1000)),  # a duplicate: the kernel says EEXIST
        ("reboot", {}),  # unknown
        ("add_sa", sa(0x1002)),
        ("delete_sa", sa_id(0x1000)),
    ]
    with helper.client() as c:
        c.call("hello")
        helper.backend.calls.clear()
        ids = c.send_batch(requests)
        [message] = [_receive(c.sock)]  # every reply in one message
        assert [m.id for m in message if isinstance(m, protocol.Reply)] == ids
        outcomes = [(m.ok, m.error) for m in message if isinstance(m, protocol.Reply)]
        assert outcomes == [
            (True, ""),
            (False, "invalid"),
            (False, "exists"),
            (False, "unknown_op"),
            (True, ""),
            (True, ""),
        ]
    # No get_sa before the delete: 0x1000 is known as kink's (Service._check_owned_sa).
    assert helper.backend.calls == ["add_sa", "add_sa", "add_sa", "delete_sa"]
    assert [sa.id.spi for sa in helper.backend.dump_sas()] == [0x1002]


def test_a_request_that_breaks_the_envelope_refuses_only_itself(helper: ThreadHelper) -> None:
    good = protocol.encode_request(1, "hello", {})
    bad = msgpack.packb({"v": 1, "id": 2, "op": "hello"})  # no args
    not_a_map = msgpack.packb([3, "hello", {}])
    with helper.client() as c:
        c.sock.send(protocol.encode_batch([good, bad, not_a_map, good]))
        replies = _receive(c.sock)
    assert [(r.id, r.ok, r.error) for r in replies if isinstance(r, protocol.Reply)] == [
        (1, True, ""),
        (2, False, "malformed"),
        (None, False, "malformed"),
        (1, True, ""),
    ]


def _batch(**fields: Any) -> bytes:
    data: bytes = msgpack.packb({"v": 1, **fields})
    return data


@pytest.mark.parametrize(
    "message",
    [
        _batch(batch=[]),
        _batch(batch={"id": 1}),
        _batch(batch=[{"v": 1, "id": 1, "op": "add_sa", "args": sa(0x2000)}] * 65),
        _batch(batch=[{"v": 1, "id": 1, "op": "add_sa", "args": sa(0x2000)}], x=1),
        msgpack.packb({"v": 2, "batch": [{"v": 1, "id": 1, "op": "add_sa", "args": sa(0x2000)}]}),
        msgpack.packb({"batch": [{"v": 1, "id": 1, "op": "add_sa", "args": sa(0x2000)}]}),
    ],
    ids=["empty", "not-a-list", "too-many", "other-keys", "version", "no-version"],
)
def test_a_malformed_batch_is_refused_whole(helper: ThreadHelper, message: bytes) -> None:
    with helper.client() as c:
        c.sock.send(message)
        [reply] = _receive(c.sock)
        assert isinstance(reply, protocol.Reply)
        assert (reply.id, reply.ok, reply.error) == (None, False, "malformed")
        assert c.call("hello")["owned_sas"] == 0
    assert helper.backend.calls == []


def test_a_batch_larger_than_the_limit_is_refused_whole(helper: ThreadHelper) -> None:
    request = protocol.encode_request(1, "add_sa", sa(0x2100))
    count = protocol.MAX_BATCH_BYTES // len(request) + 1
    with helper.client() as c:
        c.sock.send(protocol.encode_batch([request] * count))
        [reply] = _receive(c.sock)
        assert isinstance(reply, protocol.Reply)
        assert (reply.id, reply.error) == (None, "malformed")
    assert helper.backend.calls == []


def test_events_precede_the_replies_they_came_before(helper: ThreadHelper) -> None:
    with helper.client() as c:
        c.call("add_sa", sa(0x3000))
        helper.backend.kernel_expire(model_sa_id(0x3000), hard=False)
        c.send_batch([("hello", {}), ("hello", {})])
        seen = _replies(c, 2)
    kinds = [m.kind if isinstance(m, protocol.Event) else "reply" for m in seen]
    assert kinds == ["expire", "reply", "reply"]


def test_only_a_client_that_batches_gets_batches(helper: ThreadHelper) -> None:
    """Replies and events pending together go out as one batch to a client that has sent one;
    a client that never has reads one reply or event per message (an older daemon)."""
    with helper.client() as batching, helper.client() as single:
        batching.send_batch([("add_sa", sa(0x4000)), ("add_sa", sa(0x4001))])
        _replies(batching, 2)
        single.call("hello")
        for spi in (0x4000, 0x4001):
            helper.backend.kernel_expire(model_sa_id(spi), hard=False)
        batching.send_batch([("hello", {})])
        seen = _replies(batching, 1)
        assert [m.kind for m in seen if isinstance(m, protocol.Event)] == ["expire", "expire"]
        single.sock.send(protocol.encode_request(9, "hello", {}))
        alone = [protocol.decode_message(single.sock.recv(protocol.MAX_MESSAGE)) for _ in range(3)]
        assert [getattr(m, "kind", "reply") for m in alone] == ["expire", "expire", "reply"]
