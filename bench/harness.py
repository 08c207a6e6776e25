"""Shared setup of the daemon benchmarks: a throwaway realm, two kinkd processes (`python -m
kink.daemon`, dropping to `nobody` as in production) and, for each, a helper process running
kink_privsep's own Server and Service on a TimingBackend (the RecordingBackend with timestamps).

Why processes: each daemon and each helper gets its own interpreter (and GIL), as in production,
and /proc gives each one's CPU time and RSS.

Why the helper times the exchanges: CLOCK_MONOTONIC is per host, but the helper sees both ends of
an exchange it triggers itself: the kernel event that starts it (ACQUIRE, or a soft expire that
makes the initiator rekey, RFC 4430 §3.6) and the outbound SA that ends it (installed once the
REPLY is in, §3.2). `python -m bench.harness helper ...` is that process; it also listens on a
trigger socket (JSON lines, see Trigger) through which the benchmark offers load.

Topology: host a (127.0.0.1, initiator, start_action trap) and host b (127.0.0.2, responder),
one peer each, tunnel mode with `policies` distinct selector pairs (10.1.0.0/24 to one remote
subnet each, remote_subnets): one SA pair per selector pair, POLICIES unless a benchmark asks
for more (a peer takes a block of 64 reqids per 64 policies: kink.daemon.config_peers).
"""

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from kink.daemon.control_protocol import ControlClient
from kink_privsep.main import collect_less, listening_socket
from kink_privsep.model import MODE_TUNNEL, Config, PolicyId, SaId, SaSpec
from kink_privsep.recording import RecordingBackend
from kink_privsep.server import Server
from kink_privsep.service import Service
from tests.support.kdc import Realm

REPO = Path(__file__).resolve().parents[1]
ADDRESS_A, ADDRESS_B = "127.0.0.1", "127.0.0.2"
POLICIES = 64  # SA pairs (selector pairs) of the hosts unless a benchmark asks for more
MAX_OUTSTANDING = 64  # [daemon] max_outstanding: every one of POLICIES may negotiate at once
WAIT = 60.0
PER_PAIR = 0.05  # seconds more a wait for n exchanges may take per exchange (20/s at worst)
# kink_privsep.service remembers the last 4096 ACQUIREs (MAX_ACQUIRES): the alloc_spi of an
# older one is refused, so a larger burst loses its first exchanges.
ACQUIRE_BATCH = 2048
XFRM_POLICY_OUT = 1
ESP = 50
POPULATED_IN, POPULATED_OUT = 0x1000_0000, 0x2000_0000  # SPIs of the populate op's SAs


# ------------------------------------------------------------------- /proc accounting


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of a process (all its threads), or of its thread `tid`, in seconds."""
    stat = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values; nan when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# -------------------------------------------------------------------- the helper process


@dataclass
class Pacing:
    """How a paced load kept to its schedule. Expiries behind it go out at once, one after
    the other: a burst, which then queues in the daemons whatever made it late (this process
    kept from its CPU, or every policy busy: _paced), and whose latencies share one start."""

    late: float = 0.0  # seconds: the latest an expiry went out after its time
    all_busy: int = 0  # waits for a policy to come free (every one had a rekey under way)


class TimingBackend(RecordingBackend):
    """The RecordingBackend, noting when each policy's (reqid's) exchange started and ended."""

    def __init__(self, local: str) -> None:
        super().__init__()
        self.local = local
        self.started: dict[int, float] = {}  # reqid -> when its exchange was triggered
        self.latencies: list[float] = []
        self.began: list[float] = []  # when each of those exchanges was triggered
        self.completed = 0
        self.inbound: dict[int, SaId] = {}  # reqid -> its newest inbound SA
        self.done = threading.Condition()

    def add_sa(self, sa: SaSpec, *, update: bool) -> None:
        super().add_sa(sa, update=update)
        if sa.enc is None and sa.auth is None:
            return  # larval
        now = time.monotonic()
        with self.done:
            if str(sa.id.dst) == self.local:
                self.inbound[sa.reqid] = sa.id
                return
            began = self.started.pop(sa.reqid, None)
            if began is not None:
                self.latencies.append(now - began)
                self.began.append(began)
            self.completed += 1
            self.done.notify_all()

    def out_policies(self) -> list[tuple[int, PolicyId]]:
        """(reqid, id) of every out policy."""
        return sorted(
            (p.spec.templates[0].reqid, p.spec.id)
            for p in self.dump_policies()
            if p.spec.id.dir == XFRM_POLICY_OUT and p.spec.templates
        )


class Trigger:
    """The helper process's trigger socket: one JSON request per line, one JSON answer.

    {"op": "acquire"}                   an ACQUIRE for every out policy, ACQUIRE_BATCH at a
                                        time (each batch waited for) -> {"policies": n}
    {"op": "wait", "completed": n}      until n outbound SAs went in -> {"completed": n}
    {"op": "load", "rate": r, "seconds": s}
        soft-expire an idle SA r times a second for s seconds (each makes the initiator
        rekey it: a CREATE exchange), then wait for them -> {"offered", "completed",
        "latencies", "began" (when each of those was triggered, seconds into the load),
        "elapsed"}
    {"op": "storm"}                     soft-expire every SA at once -> like load
    {"op": "sas"}                       -> {"mature": SAs with keys}
    {"op": "requests"}                  -> {"requests", "messages"}: what the helper took so far
    {"op": "populate", "count": n, "remote": address}
        n SA pairs with `remote` (inbound SPIs POPULATED_IN + i, outbound POPULATED_OUT + i)
        under the reqid of the first out policy, as a kinkd that negotiated them before a
        restart left them in the kernel -> {"reqid": r}
    """

    def __init__(self, backend: TimingBackend, server: Server) -> None:
        self.backend = backend
        self.server = server

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op, b = request["op"], self.backend
        if op == "acquire":
            policies = b.out_policies()
            for first in range(0, len(policies), ACQUIRE_BATCH):
                batch = policies[first : first + ACQUIRE_BATCH]
                with b.done:
                    done = b.completed + len(batch)
                for reqid, pid in batch:
                    with b.done:
                        b.started[reqid] = time.monotonic()
                    b.kernel_acquire(pid)
                if first + ACQUIRE_BATCH < len(policies):
                    self._until_completed(done, WAIT + len(batch) * PER_PAIR)
            return {"policies": len(policies)}
        if op == "wait":
            n = request["completed"]
            return {"completed": self._until_completed(n, WAIT + n * PER_PAIR)}
        if op == "load":
            return self._load(float(request["rate"]), float(request["seconds"]))
        if op == "storm":
            return self._load(None, 0.0)
        if op == "sas":
            return {"mature": sum(1 for sa in b.dump_sas() if sa.enc or sa.auth)}
        if op == "requests":
            return {"requests": self.server.requests, "messages": self.server.messages}
        if op == "populate":
            return {"reqid": self._populate(int(request["count"]), request["remote"])}
        raise ValueError(f"unknown op {op!r}")

    def _until_completed(self, count: int, timeout: float) -> int:
        """Wait until `count` outbound SAs went in (or `timeout`): how many did."""
        b = self.backend
        with b.done:
            b.done.wait_for(lambda: b.completed >= count, timeout=timeout)
            return b.completed

    def _load(self, rate: float | None, seconds: float) -> dict[str, Any]:
        b = self.backend
        with b.done:
            b.latencies, b.began = [], []
            base = b.completed
            idle = sorted(b.inbound)
        start = time.monotonic()
        pacing = Pacing()
        offered = len(idle) if rate is None else self._paced(rate, seconds, pacing)
        if rate is None:  # the storm: every SA at once, without looking for idle ones
            for reqid in idle:
                self._expire(reqid)
        with b.done:
            timeout = WAIT + offered * PER_PAIR
            b.done.wait_for(lambda: b.completed - base >= offered, timeout=timeout)
            completed = b.completed - base
            latencies = list(b.latencies)
            began = [t - start for t in b.began]
            b.started.clear()
        return {
            "offered": offered,
            "completed": completed,
            "latencies": latencies,
            "began": began,
            "elapsed": time.monotonic() - start,
            "late": pacing.late,
            "all_busy": pacing.all_busy,
        }

    def _paced(self, rate: float, seconds: float, pacing: Pacing) -> int:
        """Soft-expire an idle SA `rate` times a second for `seconds`: how many were. `pacing`
        gets how far the expiries fell behind their schedule."""
        b = self.backend
        offered, total, start = 0, int(rate * seconds), time.monotonic()
        while offered < total:
            delay = start + offered / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with b.done:
                free = [r for r in b.inbound if r not in b.started]
                if not free:
                    # Every policy busy: the offered load is not met. Wait for an exchange to
                    # end (add_sa notifies): a 1 ms poll here woke this thread several times
                    # an exchange, and its CPU counted as the helper's.
                    pacing.all_busy += 1
                    b.done.wait(WAIT)
                    continue
                reqid = free[offered % len(free)]
            pacing.late = max(pacing.late, -delay)
            self._expire(reqid)
            offered += 1
        return offered

    def _expire(self, reqid: int) -> None:
        b = self.backend
        with b.done:
            sa_id = b.inbound[reqid]
            b.started[reqid] = time.monotonic()
        b.kernel_expire(sa_id, hard=False)

    def _populate(self, count: int, remote: str) -> int:
        b = self.backend
        reqid = b.out_policies()[0][0]
        here, there = ip_address(b.local), ip_address(remote)
        for i in range(count):
            for spi, src, dst in (
                (POPULATED_IN + i, there, here),
                (POPULATED_OUT + i, here, there),
            ):
                sa = SaSpec(
                    SaId(dst, spi, ESP),
                    src,
                    MODE_TUNNEL,
                    reqid,
                    "cbc(aes)",
                    bytearray(16),
                    "hmac(sha1)",
                    bytearray(20),
                )
                RecordingBackend.add_sa(b, sa, update=False)  # not timed: no exchange
        return reqid

    def serve(self, path: str) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(4)
        while True:
            conn, _ = listener.accept()
            with conn, conn.makefile("rwb") as stream:
                for line in stream:
                    try:
                        reply = self.answer(json.loads(line))
                    except Exception as exc:  # the benchmark reads it as a failure
                        reply = {"error": repr(exc)}
                    stream.write(json.dumps(reply).encode() + b"\n")
                    stream.flush()


def helper_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="bench.harness helper")
    ap.add_argument("--socket", required=True)
    ap.add_argument("--trigger", required=True)
    ap.add_argument("--daemon-uid", type=int, required=True)
    ap.add_argument("--local", required=True)
    args = ap.parse_args(argv)
    collect_less()  # as kink-privsep does (kink_privsep.main)
    backend = TimingBackend(args.local)
    listener, _ = listening_socket(args.socket, args.daemon_uid)
    server = Server(listener, Service(backend, Config()), args.daemon_uid)
    trigger = Trigger(backend, server)
    threading.Thread(target=trigger.serve, args=(args.trigger,), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    print("ready", flush=True)
    server.run()


# ------------------------------------------------------------------------- the two hosts


def _toml(
    d: Path, me: str, address: str, principal: str, port: int, peers: str, max_outstanding: int
) -> str:
    return f"""\
[daemon]
address = "{address}"
listen = ["{address}"]
port = {port}
user = "nobody"
group = "nogroup"
state_dir = "{d}/state"
runtime_dir = "{d}/run"
control_socket = "{d}/run/kinkd.sock"
helper_socket = "{d}/privsep.sock"
keytab = "{d}/kink.keytab"
principal = "{principal}"
krb5_config = "{d}/krb5.conf"
log_level = "info"
max_outstanding = {max_outstanding}
{_dpd_delay()}
[defaults]
port = {port}
[[defaults.proposals]]
[defaults.proposals.esp]
encryption = "aes-cbc"
key_length = 128
integrity = "sha1"

{peers}"""


def _dpd_delay() -> str:
    """BENCH_DPD_DELAY=seconds: kinkd's dpd_delay, whose third (0.5 s at least) is how often it
    reads the kernel's SA counters (kink.daemon.traffic): a poll inside each run of a load."""
    delay = os.environ.get("BENCH_DPD_DELAY")
    return "" if delay is None else f"dpd_delay = {float(delay)}\n"


def _strings(items: list[str]) -> str:
    return ", ".join(f'"{item}"' for item in items)


def tunnel_peer(
    name: str, address: str, principal: str, ours: list[str], theirs: list[str], start: str
) -> str:
    return f"""\
[peers.{name}]
address = "{address}"
principal = "{principal}"
mode = "tunnel"
local_subnets = [{_strings(ours)}]
remote_subnets = [{_strings(theirs)}]
start_action = "{start}"
"""


def remote_subnets(count: int) -> list[str]:
    """`count` distinct remote selectors: 10.2.x.0/24 for the first 256, then single hosts."""
    if count <= 256:
        return [f"10.2.{i}.0/24" for i in range(count)]
    return [f"10.{16 + i // 65536}.{i // 256 % 256}.{i % 256}/32" for i in range(count)]


@dataclass
class Host:
    """One kinkd process with its helper process."""

    name: str
    address: str
    directory: Path
    helper: subprocess.Popen[bytes]
    kinkd: subprocess.Popen[bytes] | None = None
    started_in: float = 0.0  # seconds from exec to READY=1

    @property
    def control_path(self) -> str:
        return str(self.directory / "run" / "kinkd.sock")

    def control(self, timeout: float = WAIT) -> ControlClient:
        return ControlClient(self.control_path, timeout=timeout)

    def request(self, command: str, **args: Any) -> dict[str, Any]:
        with self.control() as client:
            return client.request(command, **args)

    def trigger(self, **request: Any) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(None)  # each op has its own time limit
            sock.connect(str(self.directory / "trigger.sock"))
            with sock.makefile("rwb") as stream:
                stream.write(json.dumps(request).encode() + b"\n")
                stream.flush()
                reply: dict[str, Any] = json.loads(stream.readline())
                return reply

    def pids(self) -> list[int]:
        assert self.kinkd is not None
        return [self.kinkd.pid, self.helper.pid]


def _wait_ready(notify: socket.socket) -> None:
    seen: list[str] = []
    while "READY=1" not in seen:
        seen.extend(notify.recv(4096).decode().split("\n"))


def start_kinkd(host: Host) -> None:
    """Start (or restart) the host's kinkd; returns once it has sent READY=1."""
    d = host.directory
    with contextlib.suppress(FileNotFoundError):
        (d / "notify.sock").unlink()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(d / "notify.sock"))
    (d / "notify.sock").chmod(0o666)  # kinkd writes to it as nobody
    notify.settimeout(WAIT * 4)
    env = {**os.environ, "NOTIFY_SOCKET": str(d / "notify.sock")}
    log = (d / "kinkd.log").open("ab")
    began = time.monotonic()
    host.kinkd = subprocess.Popen(
        [
            sys.executable,
            *_profiler(host.name),
            "-m",
            "kink.daemon",
            "--config",
            str(d / "kink.toml"),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        _wait_ready(notify)
    except TimeoutError:
        raise RuntimeError(
            f"kinkd {host.name} not ready: {(d / 'kinkd.log').read_text()}"
        ) from None
    finally:
        notify.close()
    host.started_in = time.monotonic() - began


def _profiler(name: str) -> list[str]:
    """`-m cProfile -o DIR/kinkd-NAME.prof` when BENCH_PROFILE=DIR (written at kinkd's exit,
    as `nobody`: DIR must be writable by it): where a daemon's time goes under bench load."""
    directory = os.environ.get("BENCH_PROFILE")
    if not directory:
        return []
    return ["-m", "cProfile", "-o", str(Path(directory) / f"kinkd-{name}.prof")]


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _start_helper(name: str, d: Path, address: str) -> Host:
    nobody = pwd.getpwnam("nobody").pw_uid
    helper = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.harness",
            "helper",
            "--socket",
            str(d / "privsep.sock"),
            "--trigger",
            str(d / "trigger.sock"),
            "--daemon-uid",
            str(nobody),
            "--local",
            address,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=(d / "helper.log").open("wb"),
    )
    assert helper.stdout is not None
    if helper.stdout.readline() != b"ready\n":
        raise RuntimeError(f"helper {name}: {(d / 'helper.log').read_text()}")
    return Host(name, address, d, helper)


@dataclass
class Realmed:
    """A realm with the principals of hosts a and b."""

    realm: Realm
    principals: dict[str, tuple[str, Path]] = field(default_factory=dict)


@contextlib.contextmanager
def realm() -> Iterator[Realmed]:
    with tempfile.TemporaryDirectory(prefix="kb-") as tmp:
        r = Realm.start(Path(tmp) / "realm")
        try:
            out = Realmed(r)
            for name in ("a", "b"):
                out.principals[name] = r.add_host(f"{name}.bench.test")
            yield out
        finally:
            r.remove()


def prepare_host(k: Realmed, base: Path, name: str, toml: str) -> Path:
    """The host's directory, readable by `nobody`, with its keytab, krb5.conf and kink.toml."""
    nobody = pwd.getpwnam("nobody")
    d = base / name
    d.mkdir()
    d.chmod(0o755)
    shutil.copy(k.principals[name][1], d / "kink.keytab")
    os.chown(d / "kink.keytab", nobody.pw_uid, nobody.pw_gid)
    shutil.copy(k.realm.krb5_conf, d / "krb5.conf")
    (d / "krb5.conf").chmod(0o644)
    (d / "kink.toml").write_text(toml)
    return d


def free_port() -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind((ADDRESS_A, 0))
            port = int(first.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                    other.bind((ADDRESS_B, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP port")


@contextlib.contextmanager
def hosts(
    policies: int = POLICIES, max_outstanding: int = MAX_OUTSTANDING
) -> Iterator[tuple[Host, Host]]:
    """Hosts a (initiator: trap policies towards b) and b (responder), running."""
    if os.geteuid() != 0:
        raise RuntimeError("the daemon benchmarks run as root (kinkd drops to nobody)")
    with realm() as k, tempfile.TemporaryDirectory(prefix="kb-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        port = free_port()
        pa, pb = k.principals["a"][0], k.principals["b"][0]
        subnets = remote_subnets(policies)
        peer_b = tunnel_peer("b", ADDRESS_B, pb, ["10.1.0.0/24"], subnets, "trap")
        peer_a = tunnel_peer("a", ADDRESS_A, pa, subnets, ["10.1.0.0/24"], "none")
        da = prepare_host(
            k, base, "a", _toml(base / "a", "a", ADDRESS_A, pa, port, peer_b, max_outstanding)
        )
        db = prepare_host(
            k, base, "b", _toml(base / "b", "b", ADDRESS_B, pb, port, peer_a, max_outstanding)
        )
        made: list[Host] = []
        try:
            for name, d, address in (("b", db, ADDRESS_B), ("a", da, ADDRESS_A)):
                host = _start_helper(name, d, address)
                made.append(host)
                start_kinkd(host)
            b, a = made
            yield a, b
        finally:
            for host in made:
                stop_process(host.kinkd)
                stop_process(host.helper)


def processes_cpu(hosts_: tuple[Host, ...]) -> float:
    return sum(cpu_seconds(pid) for h in hosts_ for pid in h.pids())


if __name__ == "__main__":
    if sys.argv[1:2] == ["helper"]:
        helper_main(sys.argv[2:])
    else:
        sys.exit("usage: python -m bench.harness helper --socket P --trigger P --daemon-uid N")
