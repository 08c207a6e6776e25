"""Reload, restart with the epoch kept or renewed (RFC 4430 §3.7), helper restarts, sd_notify;
how kinkd puts its SAs in through the helper (inbound SPIs drawn, EEXIST, PFS reservations)."""

import random
import socket
from dataclasses import replace
from ipaddress import ip_address
from typing import Any

import pytest
import trio

from kink.daemon.config import KinkConfig
from kink.daemon.notify import Notifier
from kink.daemon.state import STATE_FILE, StateStore
from kink.engine import StartAction
from kink.engine.core import SPI_END, SPI_MIN
from kink_privsep.client import Client
from kink_privsep.model import IPPROTO_ESP, MODE_TRANSPORT, SaId, SaInfo
from tests.daemon.conftest import HostsFactory
from tests.daemon.harness import (
    HELPER_CONFIG,
    Node,
    matching_pairs,
    rekey_pair,
    sa_pairs,
    wait_for,
    wait_for_a_pair,
    with_peers,
    with_pfs,
)

pytestmark = pytest.mark.trio

START, TRAP, NONE = StartAction.START, StartAction.TRAP, StartAction.NONE


async def test_reload_adds_removes_and_leaves_unchanged_peers(
    make_hosts: HostsFactory,
) -> None:
    hosts = make_hosts(a={"b": START, "c": NONE}, b={"a": NONE})
    a, b = hosts["a"], hosts["b"]
    peer_b, peer_c = a.config.engine.peers
    configs: list[KinkConfig] = []
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        await a.start(nursery, loader=lambda: configs[-1])
        await wait_for_a_pair(a, b)
        before = {sa["spi"] for sa in a.sas()}

        # c removed (it had no SA), b unchanged: b's SAs are untouched.
        configs.append(with_peers(a.config, peer_b))
        result = await a.request("reload")
        assert result == {"added": [], "removed": ["c"], "changed": [], "unchanged": ["b"]}
        assert {sa["spi"] for sa in a.sas()} == before
        await wait_for(lambda: [p["name"] for p in _peers(a)] == ["b"], "c forgotten once deleted")

        # b removed, c (trap) added: b's SAs go on both sides with DELETE; c's policies come.
        peer_c = replace(peer_c, start_action=TRAP)
        configs.append(with_peers(a.config, peer_c))
        result = await a.request("reload")
        assert result == {"added": ["c"], "removed": ["b"], "changed": [], "unchanged": []}
        await wait_for(lambda: a.sas() == [] and b.sas() == [], "b's SAs deleted on both")
        await wait_for(
            lambda: (
                {p["selector"]["dst"] for p in a.policies() if p["dir"] == "out"}
                == {"127.0.0.3/32"}
            ),
            "only c's policies",
        )
        peers = await a.request("peers")
        assert [p["name"] for p in peers["peers"]] == ["c"]
        await a.stop()
        await b.stop()


def _peers(node: Node) -> list[dict[str, Any]]:
    with node.control() as client:
        peers: list[dict[str, Any]] = client.request("peers")["peers"]
        return peers


async def test_restart_keeps_epoch_while_the_kernel_keeps_the_sas(
    make_hosts: HostsFactory,
) -> None:
    hosts = make_hosts(a={"b": START}, b={"a": NONE})
    a, b = hosts["a"], hosts["b"]
    store = StateStore(a.config.daemon.state_dir)
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        await a.start(nursery)
        await wait_for_a_pair(a, b)
        epoch = (await a.request("status"))["epoch"]
        sas = await a.request("sas")
        await a.stop()
        saved = store.load()
        assert saved is not None and saved.epoch == epoch
        assert {spi for _, spi, _ in saved.sas} == {sa["spi"] for sa in a.sas()}

        await a.start(nursery)  # kinkd restarted, the kernel kept its SAs: it takes them over
        assert (await a.request("status"))["epoch"] == epoch
        assert sa_pairs(await a.request("sas")) == sa_pairs(sas)
        await a.stop()

        a.helper.restart(keep_kernel=False)  # a reboot: the SAs are gone
        await a.start(nursery)
        assert (await a.request("status"))["epoch"] != epoch
        await a.stop()
        await b.stop()


async def test_a_kinkd_killed_after_rekeys_takes_its_pair_back_from_the_journal(
    make_hosts: HostsFactory,
) -> None:
    """Issue 9: each save appends a batch to the state file; a kinkd killed (no save at the
    stop) after two rekeys finds the pair of the last one in snapshot + batches, takes it over
    with its epoch, and deletes whatever else of its own is left in the kernel."""
    hosts = make_hosts(a={"b": START}, b={"a": NONE})
    a, b = hosts["a"], hosts["b"]
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        async with trio.open_nursery() as doomed:
            await a.start(doomed)
            await wait_for_a_pair(a, b)
            epoch = (await a.request("status"))["epoch"]
            for _ in range(2):
                await rekey_pair(a, b)
            sas = await a.request("sas")
            doomed.cancel_scope.cancel()  # killed: nothing saved at the stop
        lines = (a.config.daemon.state_dir / STATE_FILE).read_bytes().count(b"\n")
        assert lines > 1  # a snapshot and batches

        await a.start(nursery)
        assert (await a.request("status"))["epoch"] == epoch
        assert sa_pairs(await a.request("sas")) == sa_pairs(sas)
        assert {sa["spi"] for sa in a.sas()} == {spi for pair in sa_pairs(sas) for spi in pair}
        assert matching_pairs(a, b) == 2
        await a.stop()
        await b.stop()


async def test_restart_deletes_the_sas_the_state_file_does_not_account_for(
    make_hosts: HostsFactory,
) -> None:
    """Issue 10: an SA installed by a kinkd killed before it saved (or committed with a
    datagram) the exchange it belonged to is deleted by the next kinkd; the saved pair stays."""
    hosts = make_hosts(a={"b": START}, b={"a": NONE})
    a, b = hosts["a"], hosts["b"]
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        await a.start(nursery)
        await wait_for_a_pair(a, b)
        pair = {sa["spi"] for sa in a.sas()}
        (inbound,) = [sa for sa in a.sas() if sa["dst"] == a.address]
        await a.stop()
        args = {"proto": "esp", "src": b.address, "dst": a.address}
        with Client(str(a.helper.path)) as client:
            # What a CREATE's inbound SA starts as: with KE, a larval SA (its keys come with
            # the REPLY); else the optimistic SA itself, added under its policy's reqid.
            larval = client.call("alloc_spi", {**args, "reqid": HELPER_CONFIG.reqid_range[0]})
            optimistic = {
                **args,
                "mode": inbound["mode"],
                "spi": next(spi for spi in range(0x4B1D_0000, 0x4B1E_0000) if spi not in pair),
                "reqid": inbound["reqid"],
                "enc": "aes-cbc",
                "enc_key": bytes(16),
                "auth": "hmac-sha1-96",
                "auth_key": bytes(20),
            }
            client.call("add_sa", optimistic)
        orphans = {larval["spi"], optimistic["spi"]}
        assert orphans <= {sa["spi"] for sa in a.helper.dump()["sas"]}

        await a.start(nursery)
        assert {sa["spi"] for sa in a.helper.dump()["sas"]} == pair
        await a.stop()
        await b.stop()


async def test_helper_restart_reconnects_and_resyncs(make_hosts: HostsFactory) -> None:
    hosts = make_hosts(a={"b": START}, b={"a": NONE})
    a, b = hosts["a"], hosts["b"]
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        await a.start(nursery)
        await wait_for_a_pair(a, b)
        old = {sa["spi"] for sa in a.sas()}
        await trio.to_thread.run_sync(lambda: a.helper.restart(keep_kernel=False))
        await wait_for(lambda: _status(a)["helper"]["connects"] == 2, "a reconnection")
        # The dump showed the SAs gone: the engine dropped them, told b (DELETE) and, b being
        # a start peer, negotiated a new pair by itself; the policies are back in the new helper.
        await wait_for(lambda: len(a.policies()) == 2, "the policies reinstalled")
        await wait_for(
            lambda: len(a.sas()) == len(b.sas()) == 2 and not old & {s["spi"] for s in b.sas()},
            "a new SA pair",
        )
        assert matching_pairs(a, b) == 2
        await a.stop()
        await b.stop()


def _status(node: Node) -> dict[str, Any]:
    with node.control() as client:
        return client.request("status")


async def test_sd_notify_ready_watchdog_stopping(make_hosts: HostsFactory) -> None:
    hosts = make_hosts(a={"b": NONE})
    a = hosts["a"]
    path = a.directory / "notify.sock"
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind(str(path))
    a.notifier = Notifier(str(path), watchdog_usec=100_000)
    got: list[str] = []

    async def until(field: str) -> None:
        with trio.fail_after(20):
            while field not in got:
                got.extend((await sock.recv(4096)).decode().split("\n"))

    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        await until("READY=1")
        await until("WATCHDOG=1")
        await a.stop()
        await until("STOPPING=1")
    assert got.index("READY=1") < got.index("STOPPING=1")
    sock.close()


async def test_delete_on_stop_deletes_every_sa_on_both_sides(make_hosts: HostsFactory) -> None:
    hosts = make_hosts(a={"b": START}, b={"a": NONE})
    a, b = hosts["a"], hosts["b"]
    a.config = replace(a.config, daemon=replace(a.config.daemon, delete_on_stop=True))
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        await a.start(nursery)
        await wait_for_a_pair(a, b)
        assert matching_pairs(a, b) == 2
        await a.stop()
        # SIGTERM waited for the DELETE exchange (RFC 4430 §3.3): a's SAs are gone when it
        # exits, and b deleted its own on the DELETE (its inbound one after the grace time).
        assert a.sas() == [] and a.policies() == []
        await wait_for(lambda: b.sas() == [], "b's SAs deleted")
        assert [p["sas"] for p in (await b.request("peers"))["peers"]] == [0]
        await b.stop()


async def test_an_inbound_spi_the_kernel_holds_is_drawn_again(make_hosts: HostsFactory) -> None:
    """kinkd draws its inbound SPIs and adds the SAs (add_sa); the helper's "exists" reaches
    the engine as EEXIST, which draws another SPI: the pair comes up with that one, and the SA
    that held the first (another owner's) is left alone."""
    hosts = make_hosts(a={"b": START}, b={"a": NONE})
    a, b = hosts["a"], hosts["b"]
    async with trio.open_nursery() as nursery:
        daemon = await b.start(nursery)
        daemon.engine.spi_rng = random.Random(7)
        taken = random.Random(7).randrange(SPI_MIN, SPI_END)  # the first SPI b will draw
        sa_id = SaId(ip_address(b.address), taken, IPPROTO_ESP)
        foreign = SaInfo(sa_id, ip_address(a.address), MODE_TRANSPORT, 7, "aes-cbc", "hmac-sha1-96")
        b.helper.backend.foreign_add_sa(foreign)
        await a.start(nursery)
        await wait_for_a_pair(a, b)
        (inbound,) = [sa["spi"] for sa in b.sas() if sa["dst"] == b.address]
        assert inbound != taken
        assert foreign in b.helper.backend.dump_sas()
        assert b.helper.backend.calls.count("add_sa") == 3  # the first one refused
        await a.stop()
        await b.stop()


@pytest.mark.parametrize("pfs", [None, 14])
async def test_only_a_create_with_ke_reserves_an_spi(
    make_hosts: HostsFactory, pfs: int | None
) -> None:
    """Without KE every inbound SA is added at once (add_sa); with KE the initiator's inbound
    SPI is reserved (alloc_spi) and filled on the REPLY (update_sa), RFC 4430 §3.2."""
    hosts = make_hosts(a={"b": START}, b={"a": NONE})
    a, b = hosts["a"], hosts["b"]
    with_pfs(pfs, a, b)
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        await a.start(nursery)
        await wait_for_a_pair(a, b)
        await a.stop()
        await b.stop()
    calls_a, calls_b = a.helper.backend.calls, b.helper.backend.calls
    reserved = ["alloc_spi", "update_sa"] if pfs else []
    assert [c for c in calls_a if c in ("alloc_spi", "update_sa")] == reserved
    assert not [c for c in calls_b if c in ("alloc_spi", "update_sa")]
    assert calls_b.count("add_sa") == 2
    assert calls_a.count("add_sa") == (1 if pfs else 2)  # with KE, the outbound SA only
