"""The helper's protocol and rules on the recording backend: pipelining, events, ownership,
limits, dumps. The kernel-facing behaviour of the same rules is in test_host_kernel/test_uml."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from kink_privsep import protocol, server, service, validate
from kink_privsep.client import Client, PrivsepError
from kink_privsep.model import (
    DIR_IN,
    IPPROTO_ESP,
    MODE_TRANSPORT,
    AddSa,
    Config,
    PolicyId,
    PolicySpec,
    SaId,
    SaInfo,
    Selector,
    Template,
)
from kink_privsep.protocol import Event
from tests.privsep.harness import (
    TEST_CONFIG,
    TEST_PRIORITIES,
    TEST_REQIDS,
    ThreadHelper,
    thread_helper,
    wait_event,
)
from tests.privsep.test_validation import POLICY, SA, SPI_REQUEST

REQID = TEST_REQIDS[0] + 1


@pytest.fixture
def helper() -> Iterator[ThreadHelper]:
    with thread_helper() as h:
        yield h


@pytest.fixture
def client(helper: ThreadHelper) -> Iterator[Client]:
    with helper.client() as c:
        yield c


def sa(spi: int, **changes: Any) -> dict[str, Any]:
    return {**SA, "spi": spi, **changes}


def sa_id(spi: int) -> dict[str, Any]:
    return {"proto": "esp", "dst": SA["dst"], "spi": spi}


def model_sa_id(spi: int) -> SaId:
    return SaId(ipaddress.ip_address(SA["dst"]), spi, IPPROTO_ESP)


def policy_id() -> PolicyId:
    sel = POLICY["selector"]
    return PolicyId(1, Selector(ipaddress.ip_network(sel["src"]), ipaddress.ip_network(sel["dst"])))


def foreign_sa(spi: int, reqid: int) -> SaInfo:
    src = ipaddress.ip_address(SA["src"])
    return SaInfo(model_sa_id(spi), src, MODE_TRANSPORT, reqid, "aes-cbc", "hmac-sha1-96")


def test_pure_encoding_round_trip() -> None:
    req = protocol.decode_request(protocol.encode_request(7, "get_sa", sa_id(0x1234)))
    assert (req.id, req.op, req.args) == (7, "get_sa", sa_id(0x1234))
    with_keys = protocol.decode_request(protocol.encode_request(8, "add_sa", SA))
    assert with_keys.args == SA
    assert repr(with_keys) == "Request(id=8, op='add_sa')"  # no key in a repr
    reply = protocol.decode_message(protocol.encode_reply(7, {"spi": 5}, more=True))
    assert reply == protocol.Reply(7, True, {"spi": 5}, more=True)
    error = protocol.decode_message(protocol.encode_error(8, "kernel", "No such process", 3))
    assert error == protocol.Reply(8, False, {}, "kernel", "No such process", 3)
    event = protocol.decode_message(protocol.encode_event("expire", {"hard": True}))
    assert event == Event("expire", {"hard": True})
    acc: dict[str, Any] = {}
    protocol.extend_result(acc, {"sas": [1], "policies": []})
    protocol.extend_result(acc, {"sas": [2], "policies": [3]})
    assert acc == {"sas": [1, 2], "policies": [3]}
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_message(b"\x93\x01\x02\x03")


def test_hello_reports_the_configuration(client: Client) -> None:
    hello = client.call("hello")
    assert hello["reqid_range"] == list(TEST_REQIDS)
    assert hello["priority_band"] == list(TEST_PRIORITIES)
    assert (hello["max_sas"], hello["max_policies"], hello["backend"]) == (8, 4, "recording")


def test_pipelined_requests_are_answered_by_id(helper: ThreadHelper, client: Client) -> None:
    ids = [client.send("add_sa", sa(0x1000 + i)) for i in range(6)]
    duplicate = client.send("add_sa", sa(0x1000))  # refused, and answered in its place
    ids += [duplicate] + [client.send("delete_sa", sa_id(0x1000 + i)) for i in range(6)]
    replies = {i: client.wait(i) for i in reversed(ids)}  # waited for in any order
    assert all(reply.id == i for i, reply in replies.items())
    assert [i for i, reply in replies.items() if not reply.ok] == [duplicate]
    assert replies[duplicate].error == "exists"
    assert helper.backend.calls.count("add_sa") == 7


def test_replies_come_in_request_order(client: Client) -> None:
    ids = [client.send("hello") for _ in range(50)]
    seen = []
    for _ in ids:
        msg = protocol.decode_message(client.sock.recv(protocol.MAX_MESSAGE))
        assert isinstance(msg, protocol.Reply)
        seen.append(msg.id)
    assert seen == ids


def test_queued_messages_never_read_an_empty_event_source(
    helper: ThreadHelper, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper takes one message per client per wake-up, and the wake-up says whether kernel
    events are pending: messages queued behind each other cost no read of the events socket
    (a system call that finds nothing), while an event is still read, once, and forwarded."""
    reads: list[int] = []
    events = helper.backend.events

    def counted() -> list[Any]:
        got = events()
        reads.append(len(got))
        return got

    monkeypatch.setattr(helper.backend, "events", counted)
    client.call("add_sa", sa(0x1000))
    ids = [client.send("hello") for _ in range(100)]
    assert all(client.wait(i).ok for i in ids)
    assert reads == []
    helper.backend.kernel_expire(model_sa_id(0x1000), hard=False)
    assert wait_event(client, lambda e: e.kind == "expire").data["hard"] is False
    assert reads == [1]


def test_sa_life_cycle_and_no_keys_in_replies(client: Client) -> None:
    key, auth_key = b"K" * 16, b"A" * 32
    client.call(
        "add_sa", sa(0x2000, enc_key=key, auth_key=auth_key, lifetime={"hard_bytes": 10**9})
    )
    client.sock.send(protocol.encode_request(99, "get_sa", sa_id(0x2000)))
    raw = client.sock.recv(protocol.MAX_MESSAGE)
    assert key not in raw and auth_key not in raw
    got = protocol.decode_message(raw)
    assert isinstance(got, protocol.Reply)
    info = got.result["sa"]
    assert (info["spi"], info["enc"], info["auth"], info["reqid"]) == (
        0x2000,
        "aes-cbc",
        "hmac-sha256-128",
        REQID,
    )
    assert info["lifetime"] == {"hard_bytes": 10**9}
    assert set(info["counters"]) >= {"bytes", "packets", "replay_errors", "last_used"}
    client.call("delete_sa", sa_id(0x2000))
    with pytest.raises(PrivsepError) as e:
        client.call("get_sa", sa_id(0x2000))
    assert e.value.code == "not_found"


def test_keys_are_zeroed_after_use() -> None:
    with thread_helper() as h:
        cmd = validate.command("add_sa", sa(0x2100), TEST_CONFIG)
        assert isinstance(cmd, AddSa)
        h.service.execute(cmd)
        assert cmd.sa.enc_key == bytes(16) and cmd.sa.auth_key == bytes(32)
        assert "key" not in repr(cmd)


def test_alloc_spi_then_update_fills_the_larval_sa(client: Client) -> None:
    spi = client.call("alloc_spi", {**SPI_REQUEST, "spi_min": 0x3000, "spi_max": 0x30FF})["spi"]
    assert 0x3000 <= spi <= 0x30FF
    assert client.call("get_sa", sa_id(spi))["sa"]["enc"] is None
    client.call("update_sa", sa(spi))
    assert client.call("get_sa", sa_id(spi))["sa"]["enc"] == "aes-cbc"
    with pytest.raises(PrivsepError) as e:
        client.call("update_sa", sa(spi + 0x1000))
    assert e.value.code == "not_found"


def test_foreign_objects_are_never_touched(helper: ThreadHelper, client: Client) -> None:
    helper.backend.foreign_add_sa(foreign_sa(0x4000, reqid=7))
    foreign_policy = PolicySpec(policy_id(), priority=10)
    helper.backend.foreign_add_policy(foreign_policy)
    for op, args in [
        ("get_sa", sa_id(0x4000)),
        ("delete_sa", sa_id(0x4000)),
        ("update_sa", sa(0x4000)),
        ("delete_policy", {"dir": "out", "selector": POLICY["selector"]}),
        ("update_policy", POLICY),
    ]:
        with pytest.raises(PrivsepError) as e:
            client.call(op, args)
        assert e.value.code == "not_owned", op
    client.call("add_sa", sa(0x4001))
    assert client.call("flush") == {"sas": 1, "policies": 0}
    dump = client.call("dump")
    assert dump == {"sas": [], "policies": []}
    assert helper.backend.get_sa(model_sa_id(0x4000)).reqid == 7
    assert helper.backend.get_policy(policy_id()).spec == foreign_policy
    calls = helper.backend.calls
    assert "delete_sa" in calls and calls.count("delete_sa") == 1
    assert "delete_policy" not in calls and "update_policy" not in calls


def test_kinks_own_sas_change_without_a_kernel_read(helper: ThreadHelper, client: Client) -> None:
    """An SA the helper made (or saw made, in its reqid range) is updated and deleted without
    a GETSA first: the owned set says it is kink's."""
    client.call("add_sa", sa(0x4200))
    client.call("update_sa", sa(0x4200))
    client.call("delete_sa", sa_id(0x4200))
    assert helper.backend.calls.count("get_sa") == 0


def test_an_sa_replaced_by_someone_elses_is_no_longer_kinks(
    helper: ThreadHelper, client: Client
) -> None:
    client.call("add_sa", sa(0x4100))
    helper.backend.foreign_add_sa(foreign_sa(0x4100, reqid=7))  # UPDSA by another process
    for op, args in [("update_sa", sa(0x4100)), ("delete_sa", sa_id(0x4100))]:
        with pytest.raises(PrivsepError) as e:
            client.call(op, args)
        assert e.value.code == "not_owned", op
    assert helper.backend.get_sa(model_sa_id(0x4100)).reqid == 7
    assert helper.backend.calls.count("add_sa") == 1 and "delete_sa" not in helper.backend.calls


def test_kinks_own_policies_change_without_a_kernel_read(
    helper: ThreadHelper, client: Client
) -> None:
    """As for SAs: a policy in the owned set is updated and deleted without a GETPOLICY."""
    client.call("add_policy", POLICY)
    client.call("update_policy", {**POLICY, "priority": TEST_PRIORITIES[1]})
    client.call("delete_policy", {"dir": "out", "selector": POLICY["selector"]})
    assert helper.backend.calls.count("get_policy") == 0


def test_a_policy_replaced_by_someone_elses_is_no_longer_kinks(
    helper: ThreadHelper, client: Client
) -> None:
    client.call("add_policy", POLICY)
    helper.backend.foreign_add_policy(PolicySpec(policy_id(), priority=10))  # UPDPOLICY
    for op, args in [
        ("update_policy", POLICY),
        ("delete_policy", {"dir": "out", "selector": POLICY["selector"]}),
    ]:
        with pytest.raises(PrivsepError) as e:
            client.call(op, args)
        assert e.value.code == "not_owned", op
    assert helper.backend.get_policy(policy_id()).spec.priority == 10
    assert "update_policy" not in helper.backend.calls
    assert "delete_policy" not in helper.backend.calls


def test_update_policy_replaces_or_adds_kinks_own(client: Client) -> None:
    client.call("update_policy", POLICY)  # adds
    client.call("update_policy", {**POLICY, "priority": TEST_PRIORITIES[1]})
    [pol] = client.call("dump", {"what": "policy"})["policies"]
    assert pol["priority"] == TEST_PRIORITIES[1]
    assert pol["templates"][0]["reqid"] == REQID
    client.call("delete_policy", {"dir": "out", "selector": POLICY["selector"]})
    assert client.call("dump")["policies"] == []


def test_limits(client: Client) -> None:
    for i in range(7):
        client.call("add_sa", sa(0x5000 + i))
    client.call("alloc_spi", SPI_REQUEST)  # the 8th SA
    for op, args in [("add_sa", sa(0x5100)), ("alloc_spi", SPI_REQUEST)]:
        with pytest.raises(PrivsepError) as e:
            client.call(op, args)
        assert e.value.code == "limit"
    client.call("delete_sa", sa_id(0x5000))
    client.call("add_sa", sa(0x5100))
    for i in range(4):
        sel = {"src": f"10.9.{i}.0/24", "dst": "10.8.0.0/16"}
        client.call("add_policy", {**POLICY, "selector": sel})
    with pytest.raises(PrivsepError) as e:
        client.call("update_policy", POLICY)  # would be a 5th
    assert e.value.code == "limit"
    assert client.call("hello")["owned_policies"] == 4


def test_the_limit_follows_kernel_deletions(helper: ThreadHelper, client: Client) -> None:
    for i in range(8):
        client.call("add_sa", sa(0x5200 + i))
    helper.backend.kernel_expire(model_sa_id(0x5200), hard=True)
    wait_event(client, lambda e: e.kind == "expire")
    client.call("add_sa", sa(0x5300))  # room again


def test_events_reach_every_client(helper: ThreadHelper, client: Client) -> None:
    client.call("add_sa", sa(0x6000))
    with helper.client() as other:
        other.call("hello")
        helper.backend.kernel_expire(model_sa_id(0x6000), hard=False)
        for c in (client, other):
            event = wait_event(c, lambda e: True)
            assert event.kind == "expire"
            assert event.data["hard"] is False and event.data["sa"]["spi"] == 0x6000


def test_expire_polexpire_and_deletions_by_others(helper: ThreadHelper, client: Client) -> None:
    client.call("add_sa", sa(0x6100))
    client.call("add_sa", sa(0x6101))
    client.call("add_policy", {**POLICY, "lifetime": {"soft_add_seconds": 60}})
    client.call("delete_sa", sa_id(0x6101))  # our own deletion: no event for it
    helper.backend.foreign_add_sa(foreign_sa(0x6200, reqid=7))
    helper.backend.foreign_delete_sa(model_sa_id(0x6200))  # not kink's: no event either
    helper.backend.kernel_expire(model_sa_id(0x6100), hard=True)
    helper.backend.kernel_expire_policy(policy_id(), hard=False)
    helper.backend.foreign_delete_policy(policy_id())
    kinds = [wait_event(client, lambda e: True) for _ in range(3)]
    assert [(e.kind, e.data.get("hard")) for e in kinds] == [
        ("expire", True),
        ("polexpire", False),
        ("policy_deleted", None),
    ]
    assert kinds[0].data["sa"]["spi"] == 0x6100
    assert kinds[2].data["policy"]["selector"]["src"] == POLICY["selector"]["src"]
    assert client.call("hello")["owned_policies"] == 0
    client.call("add_sa", sa(0x6102))
    helper.backend.foreign_delete_sa(model_sa_id(0x6102))
    assert wait_event(client, lambda e: True).data["sa"]["spi"] == 0x6102


def test_acquire_and_its_seq(helper: ThreadHelper, client: Client) -> None:
    client.call("add_policy", POLICY)
    seq = helper.backend.kernel_acquire(policy_id())
    event = wait_event(client, lambda e: e.kind == "acquire")
    assert event.data["seq"] == seq
    assert (event.data["src"], event.data["dst"]) == ("192.0.2.1", "192.0.2.2")
    assert event.data["policy"]["templates"][0]["reqid"] == REQID
    spi = client.call("alloc_spi", {**SPI_REQUEST, "seq": seq})["spi"]
    client.call("update_sa", sa(spi))
    client.call("add_sa", sa(0x7000, seq=seq))
    with pytest.raises(PrivsepError) as e:
        client.call("add_sa", sa(0x7001, seq=seq + 1))
    assert e.value.code == "forbidden"


def test_acquire_for_foreign_policies_is_not_forwarded(
    helper: ThreadHelper, client: Client
) -> None:
    foreign = Template(IPPROTO_ESP, MODE_TRANSPORT, 7, None, None)
    helper.backend.foreign_add_policy(PolicySpec(policy_id(), priority=10, templates=(foreign,)))
    client.call("add_policy", {**POLICY, "dir": "in"})
    helper.backend.kernel_acquire(policy_id())
    ours = helper.backend.kernel_acquire(PolicyId(DIR_IN, policy_id().selector))
    event = wait_event(client, lambda e: True)
    assert (event.kind, event.data["seq"], event.data["policy"]["dir"]) == ("acquire", ours, "in")


def test_flush_and_lost_events_resync(helper: ThreadHelper, client: Client) -> None:
    client.call("add_sa", sa(0x8000))
    helper.backend.foreign_flush_sas()
    assert wait_event(client, lambda e: True) == Event("flushed", {"what": "sa"})
    assert client.call("hello")["owned_sas"] == 0
    helper.backend.foreign_add_sa(foreign_sa(0x8001, reqid=REQID))  # ours by its reqid
    helper.backend.kernel_lose_events()
    assert wait_event(client, lambda e: True).kind == "events_lost"
    assert client.call("hello")["owned_sas"] == 1


def test_large_dumps_are_split() -> None:
    config = Config(TEST_REQIDS, TEST_PRIORITIES, max_sas=1000, max_policies=10)
    with thread_helper(config) as h, h.client() as c:
        n = service.DUMP_CHUNK * 2 + 5
        ids = [c.send("add_sa", sa(0x10000 + i)) for i in range(n)]
        assert all(c.wait(i).ok for i in ids)
        c.call("add_policy", POLICY)
        c.sock.send(protocol.encode_request(1234, "dump", {}))
        parts: list[protocol.Reply] = []
        while not parts or parts[-1].more:
            msg = protocol.decode_message(c.sock.recv(protocol.MAX_MESSAGE))
            assert isinstance(msg, protocol.Reply) and msg.id == 1234
            parts.append(msg)
        assert len(parts) == 3
        whole = c.call("dump")
        assert sorted(s["spi"] for s in whole["sas"]) == [0x10000 + i for i in range(n)]
        assert len(whole["policies"]) == 1
        assert c.call("flush", {"what": "sa"}) == {"sas": n, "policies": 0}
        assert len(c.call("dump")["policies"]) == 1


def test_a_client_that_stops_reading_does_not_stop_the_helper(helper: ThreadHelper) -> None:
    with helper.client() as lazy, helper.client() as busy:
        lazy.sock.setblocking(False)
        sent = 0
        with contextlib.suppress(BlockingIOError):
            while True:  # never reading: the helper stops reading it once its queue is long
                lazy.sock.send(protocol.encode_request(sent, "hello", {}))
                sent += 1
        assert sent > server.PAUSE_QUEUE
        assert busy.call("hello")["version"] == 1
        lazy.sock.settimeout(10)
        assert all(lazy.wait(i).ok for i in range(sent))


@pytest.mark.parametrize("req_id", [0, 1, 127, 128, 0xFFFF, 0x1_0000, 0xFFFF_FFFF])
@pytest.mark.parametrize("result", [{}, {"spi": 0x1234}, {"sas": [{"spi": 1}], "policies": []}])
@pytest.mark.parametrize("more", [False, True])
def test_a_reply_is_the_envelope_of_the_protocol(
    req_id: int, result: dict[str, Any], more: bool
) -> None:
    """encode_reply builds its bytes without a dict: they must read as the documented map."""
    envelope: dict[str, Any] = {"v": protocol.VERSION, "id": req_id, "ok": True, "result": result}
    if more:
        envelope["more"] = True
    raw = protocol.encode_reply(req_id, result, more=more)
    assert msgpack.unpackb(raw, raw=False) == envelope
    assert protocol.decode_message(raw) == protocol.Reply(req_id, True, result, more=more)
