"""Scale of kinkd (bench.harness processes): RSS of host a with no SA and with each of PAIRS SA
pairs negotiated with host b (bytes per pair; one peer with that many selector pairs), the time
of `kinkctl sas` listing them (as a table and as JSON), and the start-up and reload times of a
kinkd configured with PEERS peers (trap peers: each has its policies installed at start).

The SA pairs of PAIRS are negotiated by the two daemons (an ACQUIRE each: CREATE exchange, RFC
4430 §3.2). ADOPTED pairs are not (two daemons on this machine take many minutes for them):
host a is restarted with them in its helper's tables and its state file, as after a restart of
a kinkd that had negotiated them, and takes them over (Engine.restore) under one wide policy.
RSS is VmRSS once kinkd holds the pairs; hwm_kib (VmHWM) is its peak, start-up included; the
take-over's cpu_s is kinkd's CPU time from exec to READY=1 (immune to the machine's load).
bench/run --quick (BENCH_QUICK=1) measures QUICK_PAIRS and QUICK_ADOPTED only.
"""

import os
import pwd
import subprocess
import sys
import time
from ipaddress import ip_network

from bench.common import emit, quick
from bench.harness import (
    POLICIES,
    POPULATED_IN,
    POPULATED_OUT,
    REPO,
    Host,
    cpu_seconds,
    hosts,
    memory_kib,
    start_kinkd,
    stop_process,
)
from kink.daemon.state import STATE_FILE, SavedChild, StateStore
from kink.engine import ChildRecord
from kink.engine.events import SaLifetimes, SaTransform, Selector
from kink.wire.ipsec_doi import ProtocolId

PAIRS = (1_000, 10_000)
QUICK_PAIRS = (1_000,)
ADOPTED = 100_000
QUICK_ADOPTED = 10_000
PEERS = 10_000
SETTLE = 3.0  # seconds for the old pairs of the warm-up rekeys to go (delete grace)


def _trap_peers(count: int) -> str:
    return "".join(
        f'[peers.p{i}]\naddress = "10.3.{i // 250}.{i % 250 + 1}"\n'
        f'principal = "kink/p{i}.bench.test@KINK.TEST"\nstart_action = "trap"\n'
        for i in range(count)
    )


def _kinkctl_sas(host: Host, sas: int) -> None:
    """`kinkctl sas` as a table and with --json (one JSON document): until it has printed the
    last line of kinkd's paged answer."""
    for json_output in (False, True):
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "kink.ctl", "--socket", host.control_path, "sas"]
            + ["--json"] * json_output,
            cwd=REPO,
            capture_output=True,
            check=False,
        )
        emit(
            "scale.kinkctl_sas",
            (time.monotonic() - began) * 1e3,
            "ms",
            sas=sas,
            json=json_output,
            exit=done.returncode,
            lines=done.stdout.count(b"\n"),
            mb=round(len(done.stdout) / 1e6, 1),
        )


def pairs_rss(pairs: int) -> None:
    """RSS per SA pair of host a holding `pairs` pairs, and kinkctl sas listing them."""
    with hosts(pairs) as (a, _):
        base = memory_kib(a.pids()[0])["VmRSS"]
        began = time.monotonic()
        a.trigger(op="acquire")
        up = a.trigger(op="wait", completed=pairs)["completed"]
        setup = time.monotonic() - began
        a.trigger(op="load", rate=50, seconds=0.5)
        time.sleep(SETTLE)
        memory = memory_kib(a.pids()[0])
        rss = memory["VmRSS"]
        emit(
            "scale.rss_per_pair",
            (rss - base) * 1024 / pairs,
            "bytes/pair",
            pairs=pairs,
            established=up,
            setup_s=round(setup, 2),
            rss_kib_configured=base,
            rss_kib=rss,
            hwm_kib=memory["VmHWM"],
            target_bytes=2048,
        )
        _kinkctl_sas(a, 2 * up)


def _saved(host: Host, peer: Host, pairs: int, reqid: int) -> None:
    """Host's state file with the `pairs` children of the helper's populate op."""
    store = StateStore(host.directory / "state")
    old = store.load()
    assert old is not None  # written at the host's start
    transform = SaTransform(ProtocolId.ESP, "cbc(aes)", 128, None, "hmac(sha1)", 96)
    local, remote = Selector(ip_network("10.1.0.0/24")), Selector(ip_network("10.2.0.0/24"))
    children = (
        SavedChild(
            ChildRecord(
                peer="b",
                initiator=True,
                spis=((ProtocolId.ESP, POPULATED_IN + i, POPULATED_OUT + i),),
                mode="tunnel",
                reqid=reqid,
                local=local,
                remote=remote,
                send_ids=True,
                transforms=(transform,),
                life=SaLifetimes(0, 7200, 0, 0),
                pfs_group=None,
                peer_epoch=None,
                age=60.0,
                rekey_in=3000.0,
            ),
            frozenset(
                {("esp", POPULATED_IN + i, host.address), ("esp", POPULATED_OUT + i, peer.address)}
            ),
        )
        for i in range(pairs)
    )
    store.snapshot(old.epoch, time.time(), enumerate(children))
    nobody = pwd.getpwnam("nobody")
    os.chown(host.directory / "state" / STATE_FILE, nobody.pw_uid, nobody.pw_gid)


def adopted(pairs: int) -> None:
    """Host a restarted with `pairs` SA pairs to take over (see the module's text)."""
    with hosts(1) as (a, b):
        base = memory_kib(a.pids()[0])["VmRSS"]
        reqid = a.trigger(op="populate", count=pairs, remote=b.address)["reqid"]
        stop_process(a.kinkd)  # leaves SAs in the kernel (not delete_on_stop)
        _saved(a, b, pairs, reqid)
        size = (a.directory / "state" / STATE_FILE).stat().st_size
        start_kinkd(a)
        cpu = cpu_seconds(a.pids()[0])
        taken = a.request("status")["sas"]
        emit(
            "scale.startup_adopting",
            a.started_in,
            "s",
            pairs=pairs,
            taken_over=taken,
            cpu_s=round(cpu, 2),
        )
        time.sleep(SETTLE)
        memory = memory_kib(a.pids()[0])
        rss = memory["VmRSS"]
        emit(
            "scale.rss_per_pair",
            (rss - base) * 1024 / pairs,
            "bytes/pair",
            pairs=pairs,
            adopted=True,
            rss_kib_configured=base,
            rss_kib=rss,
            hwm_kib=memory["VmHWM"],
            state_file_bytes=size,
            target_bytes=2048,
        )
        _kinkctl_sas(a, 2 * pairs)


def peers_startup(peers: int) -> None:
    """Host b restarted with `peers` trap peers: start-up, then a reload that changes one."""
    with hosts(POLICIES) as (_, b):
        toml = b.directory / "kink.toml"
        toml.write_text(toml.read_text() + _trap_peers(peers - 1))
        stop_process(b.kinkd)
        start_kinkd(b)
        emit(
            "scale.startup",
            b.started_in,
            "s",
            peers=peers,
            rss_kib=memory_kib(b.pids()[0])["VmRSS"],
            target_s=2.0,
        )
        toml.write_text(toml.read_text().replace('"kink/p1.bench', '"kink/q1.bench'))
        began = time.monotonic()
        result = b.request("reload")
        emit(
            "scale.reload",
            time.monotonic() - began,
            "s",
            peers=peers,
            changed=len(result["changed"]),
            target_s=1.0,
        )


def run(peers: int = 4, pairs: tuple[int, ...] = (POLICIES,), adopt: int = POLICIES) -> None:
    for count in pairs:
        pairs_rss(count)
    adopted(adopt)
    peers_startup(peers)


def main() -> None:
    if quick():
        run(PEERS, QUICK_PAIRS, QUICK_ADOPTED)
    else:
        run(PEERS, PAIRS, ADOPTED)


if __name__ == "__main__":
    main()
