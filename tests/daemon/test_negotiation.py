"""Two kinkd on loopback with recording helpers and a real KDC: SAs negotiated at start and on
a kernel ACQUIRE end up mirrored in both helpers; the control socket drives and reports them."""

import pytest
import trio

from kink.daemon import control_protocol as cp
from kink.engine import StartAction
from kink_privsep.model import PolicyId
from tests.daemon.conftest import HostsFactory
from tests.daemon.harness import matching_pairs, wait_for, wait_for_a_pair

pytestmark = pytest.mark.trio

START, TRAP, NONE = StartAction.START, StartAction.TRAP, StartAction.NONE


async def test_start_action_start_negotiates_and_both_helpers_match(
    make_hosts: HostsFactory,
) -> None:
    hosts = make_hosts(a={"b": START}, b={"a": NONE})
    a, b = hosts["a"], hosts["b"]
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        await a.start(nursery)
        await wait_for_a_pair(a, b)
        assert matching_pairs(a, b) == 2
        # Policies: a's at start (start_action start); b's once it has the SA (respond only).
        assert {p["dir"] for p in a.policies()} == {"in", "out"}
        await wait_for(lambda: len(b.policies()) == 2, "b's policies")
        sas = await a.request("sas")
        assert len(sas["sas"]) == 1 and sas["sas"][0]["peer"] == "b"
        child = sas["sas"][0]
        assert child["initiator"] is True and child["state"] == "installed"
        sa = child["sas"][0]
        assert (sa["enc"], sa["enc_key_bits"], sa["auth"], sa["auth_trunc_bits"]) == (
            "aes-cbc",
            128,
            "hmac-sha1",
            96,
        )
        spis = {sa["spi"] for sa in a.sas()}
        assert {child["sas"][0]["spi_in"], child["sas"][0]["spi_out"]} == spis
        status = await a.request("status")
        assert status["sas"] == 1 and status["peers"] == {"total": 1, "up": 1, "down": 0}
        assert status["helper"]["connected"] is True
        assert status["helper"]["backend"] == "recording"
        assert status["tgt_expiry"] is not None
        peers = (await b.request("peers"))["peers"]
        assert [(p["name"], p["sas"], p["start_action"]) for p in peers] == [("a", 1, "none")]
        await a.stop()
        await b.stop()
        # SIGTERM deletes nothing by default; the trap policies go.
        assert len(a.sas()) == 2 and a.policies() == []


async def test_trap_negotiates_on_acquire(make_hosts: HostsFactory) -> None:
    hosts = make_hosts(a={"b": TRAP}, b={"a": TRAP})
    a, b = hosts["a"], hosts["b"]
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        await b.start(nursery)
        assert a.sas() == [] and b.sas() == []
        out = next(p for p in a.policies() if p["dir"] == "out")
        policy_id = next(
            info.spec.id
            for info in a.helper.backend.dump_policies()
            if info.spec.priority == out["priority"]
            and isinstance(info.spec.id, PolicyId)
            and info.spec.id.dir == 1
        )
        for _ in range(3):  # a burst of ACQUIREs for one flow: one exchange
            a.helper.backend.kernel_acquire(policy_id)
        await wait_for_a_pair(a, b)
        assert matching_pairs(a, b) == 2
        status = await a.request("status")
        assert status["sas"] == 1
        await a.stop()
        await b.stop()


async def test_control_initiate_terminate_rekey_log_level(make_hosts: HostsFactory) -> None:
    hosts = make_hosts(a={"b": NONE}, b={"a": NONE})
    a, b = hosts["a"], hosts["b"]
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        await b.start(nursery)
        with pytest.raises(cp.ControlError) as info:
            await a.request("initiate", peer="nobody")
        assert info.value.code == cp.ERR_UNKNOWN_PEER
        with pytest.raises(cp.ControlError) as info:
            await a.request("terminate", peer="b")
        assert info.value.code == cp.ERR_NOT_FOUND
        assert await a.request("initiate", peer="b") == {}
        await wait_for_a_pair(a, b)
        old = {sa["spi"] for sa in a.sas()}
        assert (await a.request("rekey", peer="b")) == {"children": 1}
        await wait_for(
            lambda: len(a.sas()) == len(b.sas()) == 2 and not old & {sa["spi"] for sa in a.sas()},
            "the rekeyed pair replacing the old one",
        )
        assert matching_pairs(a, b) == 2
        spi = next(iter({sa["spi"] for sa in b.sas()}))
        assert (await b.request("terminate", spi=spi)) == {"children": 1}
        await wait_for(lambda: a.sas() == [] and b.sas() == [], "the SAs deleted on both")
        assert (await a.request("log-level", level="warning")) == {"level": "warning"}
        assert (await a.request("log-level")) == {"level": "warning"}
        with pytest.raises(cp.ControlError) as info:
            await a.request("log-level", level="loud")
        assert info.value.code == cp.ERR_INVALID
        await a.request("log-level", level="debug")
        await a.stop()
        await b.stop()


async def test_monitor_streams_events(make_hosts: HostsFactory) -> None:
    hosts = make_hosts(a={"b": NONE}, b={"a": NONE})
    a, b = hosts["a"], hosts["b"]
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        await b.start(nursery)
        client = a.control()
        # Subscribed once subscribe() returns: the SA that comes up after is in the stream.
        events = await trio.to_thread.run_sync(client.subscribe)
        await a.request("initiate", peer="b")
        first = await trio.to_thread.run_sync(next, events)
        assert first.kind == cp.EVENT_SA_UP and first.data["peer"] == "b"
        assert first.data["initiator"] is True
        (child,) = (await a.request("sas"))["sas"]
        sa = child["sas"][0]
        # Protocols by name in events as in `sas` (not the IPsec DOI number, RFC 2407 §4.4.1).
        assert first.data["spis"] == [["esp", sa["spi_in"], sa["spi_out"]]]
        client.close()
        await a.stop()
        await b.stop()
