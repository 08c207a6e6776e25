"""kink.toml.example: valid, its values are the defaults, and it documents every key the
loader accepts and no other."""

import re
from dataclasses import fields, replace
from pathlib import Path

from kink.daemon.config import DAEMON_KEYS, DaemonSettings, load
from kink.daemon.config_peers import PEER_KEYS
from kink.daemon.config_proposals import AH_KEYS, DEFAULT_PROPOSALS, ESP_KEYS, PROPOSAL_KEYS
from kink.engine.config import EngineConfig, PeerConfig
from tests.config.support import load_text, peer

EXAMPLE = Path(__file__).resolve().parents[2] / "kink.toml.example"

_HEADER = re.compile(r"^(?:# )?\[\[?\s*([A-Za-z0-9_.]+)\s*\]\]?\s*$")
_KEY = re.compile(r"^(?:# )?([a-z0-9_]+) = (.*)$")
_INLINE_KEY = re.compile(r"([a-z0-9_]+) = ")


def _kind(table: str) -> str:
    parts = table.split(".")
    if parts == ["daemon"]:
        return "daemon"
    if parts[-1] == "proposals":
        return "proposal"
    if parts[-2:-1] == ["proposals"]:
        return parts[-1]  # esp or ah
    return "peer"  # [defaults], [peers.NAME]


def documented_keys(text: str) -> set[tuple[str, str]]:
    """(kind of table, key) for every key in the example, commented out or not: kinds are
    daemon, peer, proposal, esp and ah."""
    found: set[tuple[str, str]] = set()
    kind = ""
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            table = header[1]
            kind = _kind(table)
            if kind == "proposal":
                found.add(("peer", "proposals"))
            elif kind in ("esp", "ah"):
                found.add(("proposal", kind))
            continue
        key = _KEY.match(line)
        if not key:
            continue
        found.add((kind, key[1]))
        if kind == "proposal" and key[2].startswith("{"):
            found |= {(key[1], inner) for inner in _INLINE_KEY.findall(key[2])}
    return found


def accepted_keys() -> set[tuple[str, str]]:
    return (
        {("daemon", key) for key in DAEMON_KEYS}
        | {("peer", key) for key in PEER_KEYS}
        | {("proposal", key) for key in PROPOSAL_KEYS}
        | {("esp", key) for key in ESP_KEYS}
        | {("ah", key) for key in AH_KEYS}
    )


def test_every_key_is_documented_and_every_documented_key_accepted() -> None:
    assert documented_keys(EXAMPLE.read_text()) == accepted_keys()


def test_the_example_loads_with_the_defaults() -> None:
    config = load(EXAMPLE)
    assert config.daemon == DaemonSettings()
    assert replace(config.engine, peers=()) == EngineConfig(address="192.0.2.1", principal="")
    gw = peer(config, "gw")
    assert gw == PeerConfig(
        name="gw",
        address="192.0.2.2",
        principal="kink/gw.example.org@EXAMPLE.ORG",
        policies=gw.policies,
        proposals=DEFAULT_PROPOSALS,
    )
    assert not gw.policies[0].send_ids
    branch = peer(config, "branch")
    assert (branch.mode, len(branch.policies), len(branch.proposals[0].transforms)) == (
        "tunnel",
        2,
        2,
    )


def test_the_defaults_table_restates_the_builtin_defaults(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    without = text[: text.index("[defaults]")] + text[text.index("[peers.gw]") :]
    assert load_text(tmp_path, without) == replace(load(EXAMPLE), source=tmp_path / "kink.toml")


def test_keys_left_commented_out_have_no_default_and_their_example_is_valid(
    tmp_path: Path,
) -> None:
    text = EXAMPLE.read_text()
    commented = [
        key[1] for line in text.splitlines() if (key := _KEY.match(line)) and line[0] == "#"
    ]
    assert commented == [
        "control_group",
        "principal",
        "ccache_dir",
        "krb5_config",
        "delete_grace",
        "integrity",
    ]
    defaults = {f.name: f.default for f in fields(EngineConfig)}
    defaults |= {f.name: f.default for f in fields(DaemonSettings)}  # principal: the daemon's
    assert all(defaults[name] is None for name in commented[:-1])
    uncommented = re.sub(r"^# (\[|[a-z_]+ = )", r"\1", text, flags=re.MULTILINE)
    config = load_text(tmp_path, uncommented)
    assert config.daemon.control_group == "kinkadm"
    assert config.engine.principal == "kink/host.example.org@EXAMPLE.ORG"
    assert config.engine.delete_grace == 2.0
    assert len(peer(config, "gw").proposals[1].transforms) == 2  # ESP + the AH shown
