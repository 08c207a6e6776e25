"""Every kinkctl command against two running kinkd (recording helpers, a real KDC), in its
human and --json forms: status, peers, initiate then sas on both sides, terminate by peer and
by SPI, rekey, reload, log-level, and kinkd's error answers as exit code 1."""

import json
import re
from dataclasses import replace
from typing import Any

import pytest

from kink.daemon import control_protocol as cp
from kink.daemon.config import ConfigError, Problem
from kink.engine import StartAction
from tests.ctl.conftest import Pair, kinkctl
from tests.daemon.harness import Node, peer_config, wait_for, with_peers

pytestmark = pytest.mark.trio

_SPI = r"0x[0-9a-f]{8}"


async def _up(capsys: pytest.CaptureFixture[str], pair: Pair) -> None:
    """a initiates with b and both kernels get the SA pair."""
    run = await kinkctl(capsys, pair.a, "initiate", "b")
    assert (run.code, run.err) == (0, "")
    assert run.out == "initiating b: see `kinkctl monitor` or `kinkctl sas` for the outcome\n"
    await wait_for(lambda: len(pair.a.sas()) == 2 and len(pair.b.sas()) == 2, "an SA pair each")


async def _down(pair: Pair) -> None:
    await wait_for(lambda: pair.a.sas() == [] and pair.b.sas() == [], "the SAs deleted on both")


async def _sas_json(capsys: pytest.CaptureFixture[str], node: Node) -> list[dict[str, Any]]:
    run = await kinkctl(capsys, node, "sas", "--json")
    assert run.code == 0, run.err
    children: list[dict[str, Any]] = json.loads(run.out)["sas"]
    return children


def _kernel_spis(node: Node) -> set[int]:
    return {sa["spi"] for sa in node.sas()}


async def test_status(capsys: pytest.CaptureFixture[str], pair: Pair) -> None:
    run = await kinkctl(capsys, pair.a, "status")
    assert (run.code, run.err) == (0, "")
    lines = run.out.splitlines()
    assert pair.a.daemon is not None
    epoch = pair.a.daemon.engine.epoch
    assert re.fullmatch(r"kinkd      0\.1\.0, pid \d+, uid \d+", lines[0]), lines
    assert f"epoch      {epoch:#010x}" in lines
    assert f"principal  {pair.a.principal}" in lines
    assert f"listening  127.0.0.1:{pair.port}" in lines
    assert any(re.fullmatch(r"log level  (debug|info|notice|warning|error)", x) for x in lines)
    assert "helper     connected (backend recording, 1 connection)" in lines
    assert "peers      0 up, 1 down (1 in all)" in lines
    assert "SAs        0 (0 exchanges in progress)" in lines
    ticket = next(line for line in lines if line.startswith("ticket"))
    assert re.fullmatch(r"ticket     TGT expires in \d+h\d\dm \(\d{4}-\d\d-\d\d [\d:]{8}\)", ticket)

    run = await kinkctl(capsys, pair.a, "status", "--json")
    assert (run.code, run.err) == (0, "")
    status = json.loads(run.out)
    assert status["epoch"] == epoch and status["principal"] == pair.a.principal
    assert status["peers"] == {"total": 1, "up": 0, "down": 1} and status["sas"] == 0
    assert status["helper"] == {"connected": True, "backend": "recording", "connects": 1}


async def test_peers(capsys: pytest.CaptureFixture[str], pair: Pair) -> None:
    run = await kinkctl(capsys, pair.b, "peers")
    assert (run.code, run.err) == (0, "")
    header, row = run.out.splitlines()
    assert header.split() == [
        "PEER", "ADDRESS", "PRINCIPAL", "START", "MODE", "EPOCH", "SAS", "XCHG", "QUEUED", "RTT"
    ]  # fmt: skip
    assert row.split() == ["a", f"127.0.0.1:{pair.port}", pair.a.principal, "none",
                           "transport", "-", "0", "0", "0", "-"]  # fmt: skip
    await _up(capsys, pair)
    run = await kinkctl(capsys, pair.b, "peers", "--json")
    assert run.code == 0
    (peer,) = json.loads(run.out)["peers"]
    assert pair.a.daemon is not None
    assert peer["name"] == "a" and peer["sas"] == 1
    assert peer["epoch"] == pair.a.daemon.engine.epoch  # learnt from a's CREATE (§3.7)


async def test_initiate_then_sas_on_both_sides(
    capsys: pytest.CaptureFixture[str], pair: Pair
) -> None:
    run = await kinkctl(capsys, pair.a, "sas")
    assert (run.code, run.out) == (0, "no SAs\n")
    await _up(capsys, pair)

    # JSON: a's inbound SPI is b's outbound one and the other way round, as in the kernels.
    (child_a,) = await _sas_json(capsys, pair.a)
    (child_b,) = await _sas_json(capsys, pair.b)
    (sa_a,) = child_a["sas"]
    (sa_b,) = child_b["sas"]
    assert (sa_a["spi_in"], sa_a["spi_out"]) == (sa_b["spi_out"], sa_b["spi_in"])
    assert {sa_a["spi_in"], sa_a["spi_out"]} == _kernel_spis(pair.a) == _kernel_spis(pair.b)
    assert (child_a["peer"], child_a["initiator"], child_a["state"]) == ("b", True, "installed")
    assert (child_b["peer"], child_b["initiator"], child_b["state"]) == ("a", False, "installed")
    algorithms = ("aes-cbc", 128, None, "hmac-sha1", 96)
    for sa in (sa_a, sa_b):
        keys = ("enc", "enc_key_bits", "icv_bits", "auth", "auth_trunc_bits")
        assert tuple(sa[k] for k in keys) == algorithms
    # No configured policies: the host-to-host selectors of the two addresses (RFC 4430 §5.3).
    host_a = {"subnet": "127.0.0.1/32", "protocol": 0, "port": 0}
    host_b = {"subnet": "127.0.0.2/32", "protocol": 0, "port": 0}
    assert (child_a["local"], child_a["remote"]) == (child_b["remote"], child_b["local"])
    assert (child_a["local"], child_a["remote"]) == (host_a, host_b)
    assert child_a["reqid"] == child_b["reqid"]
    assert child_a["pfs_group"] is None and child_a["mode"] == "transport"
    assert child_a["life"]["hard_seconds"] == child_b["life"]["hard_seconds"] > 0
    assert 0 < child_a["rekey_in"] < child_a["expires_in"]

    # Human: the same SPIs, as 8 hex digits, crossed between the two tables.
    rows = {}
    for node in (pair.a, pair.b):
        run = await kinkctl(capsys, node, "sas")
        assert (run.code, run.err) == (0, "")
        header, row = run.out.splitlines()
        assert header.split() == [
            "PEER", "SA", "STATE", "ROLE", "MODE", "PROTO", "SPI-IN", "SPI-OUT", "SELECTORS",
            "ALGORITHMS", "PFS", "AGE", "REKEY-IN", "EXPIRES-IN", "IN", "OUT",
        ]  # fmt: skip
        rows[node.name] = row
    pattern = (
        rf"(?P<peer>[ab])\s+\d+\s+installed\s+(?P<role>initiator|responder)\s+transport\s+esp\s+"
        rf"(?P<spi_in>{_SPI})\s+(?P<spi_out>{_SPI})\s+"
        r"(?P<selectors>127\.0\.0\.[12]/32 <-> 127\.0\.0\.[12]/32)\s+"
        r"aes-cbc-128/hmac-sha1-96\s+-\s+\d+s\s+(?P<rekey>\S+)\s+(?P<expires>\S+)\s+"
        r"0 B, 0 pkts\s+0 B, 0 pkts"
    )
    a_row, b_row = (re.fullmatch(pattern, rows[n]) for n in "ab")
    assert a_row is not None and b_row is not None, rows
    assert (a_row["peer"], a_row["role"], b_row["peer"], b_row["role"]) == (
        "b", "initiator", "a", "responder"
    )  # fmt: skip
    assert a_row["spi_in"] == f"{sa_a['spi_in']:#010x}" == b_row["spi_out"]
    assert a_row["spi_out"] == f"{sa_a['spi_out']:#010x}" == b_row["spi_in"]
    assert re.fullmatch(r"\d+m\d\ds|\d+h\d\dm", a_row["rekey"])  # only the initiator rekeys
    assert b_row["rekey"] == "-"
    assert a_row["selectors"] == "127.0.0.1/32 <-> 127.0.0.2/32"
    assert b_row["selectors"] == "127.0.0.2/32 <-> 127.0.0.1/32"
    assert re.fullmatch(r"\d+m\d\ds|\d+h\d\dm", b_row["expires"])  # both sides' SAs expire


async def test_terminate_by_peer_and_by_spi(capsys: pytest.CaptureFixture[str], pair: Pair) -> None:
    await _up(capsys, pair)
    run = await kinkctl(capsys, pair.a, "terminate", "b")
    assert (run.code, run.out, run.err) == (0, "deleting 1 SA bundle of peer b\n", "")
    await _down(pair)

    # Nothing left: kinkd's not-found answer is exit 1, in both forms.
    run = await kinkctl(capsys, pair.a, "terminate", "b")
    assert (run.code, run.out) == (1, "")
    assert run.err == "kinkctl: kinkd refused terminate: no SA of peer b\n"
    run = await kinkctl(capsys, pair.a, "terminate", "--json", "b")
    assert run.code == 1
    assert json.loads(run.out) == {
        "error": cp.ERR_NOT_FOUND,
        "message": "kinkd refused terminate: no SA of peer b",
    }

    # By SPI in hex, from the responder's side: b's inbound SPI.
    await _up(capsys, pair)
    (child,) = await _sas_json(capsys, pair.b)
    spi_in = child["sas"][0]["spi_in"]
    run = await kinkctl(capsys, pair.b, "terminate", f"{spi_in:#010x}")
    assert (run.code, run.out) == (0, f"deleting 1 SA bundle of SPI {spi_in:#010x}\n")
    await _down(pair)

    # By SPI in decimal, the outbound one, with --json; and --peer.
    await _up(capsys, pair)
    (child,) = await _sas_json(capsys, pair.a)
    run = await kinkctl(capsys, pair.a, "terminate", "--json", str(child["sas"][0]["spi_out"]))
    assert (run.code, json.loads(run.out)) == (0, {"children": 1})
    await _down(pair)
    await _up(capsys, pair)
    run = await kinkctl(capsys, pair.a, "terminate", "--peer", "b")
    assert (run.code, run.out) == (0, "deleting 1 SA bundle of peer b\n")
    await _down(pair)

    run = await kinkctl(capsys, pair.a, "terminate", "0x00000000")
    assert run.code == 2 and "0x00000000 is not an SPI (1 to 0xffffffff)" in run.err
    run = await kinkctl(capsys, pair.a, "terminate", "b", "--peer", "b")
    assert run.code == 2 and "not allowed with argument" in run.err


async def test_rekey_by_peer_and_by_spi(capsys: pytest.CaptureFixture[str], pair: Pair) -> None:
    await _up(capsys, pair)
    first = _kernel_spis(pair.a)
    run = await kinkctl(capsys, pair.a, "rekey", "b")
    assert (run.code, run.out, run.err) == (0, "rekeying 1 SA bundle of peer b\n", "")
    await wait_for(
        lambda: len(pair.a.sas()) == len(pair.b.sas()) == 2 and not first & _kernel_spis(pair.a),
        "the rekeyed pair replacing the first",
    )
    (child,) = await _sas_json(capsys, pair.a)
    second = {child["sas"][0]["spi_in"], child["sas"][0]["spi_out"]}
    assert second == _kernel_spis(pair.a) == _kernel_spis(pair.b)

    run = await kinkctl(capsys, pair.a, "rekey", "--json", f"{child['sas'][0]['spi_in']:#x}")
    assert (run.code, json.loads(run.out)) == (0, {"children": 1})
    await wait_for(
        lambda: len(pair.a.sas()) == 2 and not second & _kernel_spis(pair.a),
        "the second rekey replacing the second pair",
    )
    run = await kinkctl(capsys, pair.a, "rekey", "0xdeadbeef")
    assert (run.code, run.err) == (1, "kinkctl: kinkd refused rekey: no SA of SPI 0xdeadbeef\n")


async def test_initiate_unknown_peer(capsys: pytest.CaptureFixture[str], pair: Pair) -> None:
    run = await kinkctl(capsys, pair.a, "initiate", "nobody")
    assert (run.code, run.out) == (1, "")
    assert run.err == "kinkctl: kinkd refused initiate: no peer 'nobody'\n"
    run = await kinkctl(capsys, pair.a, "initiate", "--json", "nobody")
    assert run.code == 1 and json.loads(run.out)["error"] == cp.ERR_UNKNOWN_PEER
    run = await kinkctl(capsys, pair.a, "initiate", "--json", "b")
    assert (run.code, json.loads(run.out)) == (0, {})


async def test_reload(capsys: pytest.CaptureFixture[str], pair: Pair) -> None:
    (peer_b,) = pair.a.config.engine.peers
    peer_c = peer_config("c", pair.principals["c"][0], pair.port, StartAction.NONE)
    pair.a_next = with_peers(pair.a.config, peer_b, peer_c)
    run = await kinkctl(capsys, pair.a, "reload")
    assert (run.code, run.err) == (0, "")
    assert run.out.splitlines() == [
        "configuration reloaded",
        "added      c",
        "removed    none",
        "changed    none",
        "unchanged  b",
    ]
    run = await kinkctl(capsys, pair.a, "peers")
    assert [line.split()[0] for line in run.out.splitlines()[1:]] == ["b", "c"]

    pair.a_next = with_peers(pair.a.config, replace(peer_b, start_action=StartAction.TRAP))
    run = await kinkctl(capsys, pair.a, "reload", "--json")
    assert run.code == 0
    assert json.loads(run.out) == {"added": [], "removed": ["c"], "changed": ["b"], "unchanged": []}

    problem = Problem(pair.a.config.source, 7, "peers.b.mode", "must be transport or tunnel")
    pair.a_next = ConfigError([problem])
    run = await kinkctl(capsys, pair.a, "reload")
    assert (run.code, run.out) == (1, "")
    assert run.err == (
        f"kinkctl: kinkd refused reload: {pair.a.config.source}:7: peers.b.mode: "
        "must be transport or tunnel\n"
    )
    run = await kinkctl(capsys, pair.a, "reload", "--json")
    assert run.code == 1 and json.loads(run.out)["error"] == cp.ERR_CONFIG


async def test_log_level(capsys: pytest.CaptureFixture[str], pair: Pair) -> None:
    run = await kinkctl(capsys, pair.a, "log-level", "--json")
    assert run.code == 0
    before = json.loads(run.out)["level"]  # the test process's: logging is process-wide
    run = await kinkctl(capsys, pair.a, "log-level")
    assert (run.code, run.out) == (0, f"log level {before}\n")
    run = await kinkctl(capsys, pair.a, "log-level", "warning")
    assert (run.code, run.out) == (0, "log level now warning\n")
    run = await kinkctl(capsys, pair.a, "log-level", "--json")
    assert (run.code, json.loads(run.out)) == (0, {"level": "warning"})
    run = await kinkctl(capsys, pair.a, "log-level", "--json", "debug")
    assert (run.code, json.loads(run.out)) == (0, {"level": "debug"})
    assert (await kinkctl(capsys, pair.a, "log-level", before)).code == 0
    run = await kinkctl(capsys, pair.a, "log-level", "loud")
    assert run.code == 2 and "invalid choice: 'loud'" in run.err
