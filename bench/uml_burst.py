"""Issue 9, run (b): kinkd on a real kernel (user-mode Linux, the end-to-end harness of
tests/support/e2e.py with the xfrm helper as root): a burst of flows with distinct selectors
triggered at once by traffic (each a kernel ACQUIRE, then a CREATE exchange), then lone CREATEs.

Figures: SA pairs per second until every SA is in both kernels (`ip xfrm state`, mirrored),
median lone CREATE -> REPLY latency (a capture on a's wire: CREATE from a to the REPLY of the
same XID from b), CPU per SA pair of both kinkd and both kink-privsep processes (/proc), and
per lone rekey the page faults and context switches of every process in UML (/proc: counts,
which the host's load does not change, where the latency's run-to-run spread is the host's).

FLOWS is the issue's 200: tunnel mode, a's 10.1.0.0/24 to 200 subnets 10.3.N.0/24 routed to
b, one policy each (a peer takes as many reqid blocks as it has policies, config_peers).

`python -m bench.uml_burst` boots UML and prints the figures (JSON lines, bench.common.emit);
inside, `python -m bench.uml_burst --inside` does the work. About 60-90 s with the boot.
`--syscalls` counts instead the system calls of each of the four processes during the burst
(`strace -c -f`; every call costs ~22-35 us in UML, so they are the cost per pair there): per
SA pair, by call. strace slows the burst several times over: its timings are not the figures.
`--capture` records instead the burst on a's wire (tcpdump, which takes CPU from the daemons):
CREATEs sent per pair (1 unless timer T ran out, RFC 4430 §9), the first REPLY's delay after
the first CREATE and the median CREATE -> REPLY within the burst.
`--stages` traces both hosts' kinkd and helper during the lone exchanges (`strace -f -ttt -T`,
which slows each call several times over): the system calls of each of the four between the
CREATE and the REPLY on a's wire, per exchange (UML has one CPU: a's calls in that interval
delay b's as much as b's own), and for the lone exchange of median CREATE -> REPLY each of
them at its time from the CREATE (ms), with its duration: where the time goes (receive,
engine, helper calls, state save, REPLY sent). Its times are strace's, not the figures.

The helpers run at their production log level (INFO), kinkd at info as configured below.
"""

import argparse
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import emit
from bench.harness import cpu_seconds, percentile
from kink.daemon.control_protocol import ControlClient
from kink.wire.constants import MessageType
from kink.wire.header import HEADER
from kink.wire.pcap import read_capture
from kink_privsep import xfrm
from kink_privsep.netlink import NLM_F_REQUEST, NetlinkSocket, attributes, message
from tests.e2e.scenarios import GCM128, mirrored
from tests.support import uml
from tests.support.e2e import Capture, Host, Network, TomlValue, in_namespace, run, wait_until

FLOWS = 200
# Lone exchanges: rekeys of one pair at a time. 32 (about 6 s of the run) rather than 8 narrow
# the sampling error of one run's median; the spread left between runs of one tree (2.1-3.9 ms
# on the 2-core VM of issue 9) is the host's scheduling of UML's processes: compare trees by
# interleaved runs, several each.
LONE = 32
REMOTE = [f"10.3.{i}.0/24" for i in range(FLOWS)]
TRAFFIC_PORT = 9  # discard: nothing needs to answer, the datagram only triggers the ACQUIRE
POLL = 0.005  # seconds between looks at the SA counts during the burst
# <linux/xfrm.h>: the SA count (struct xfrmu_sadhinfo's neighbour XFRMA_SAD_CNT, a u32).
XFRM_MSG_GETSADINFO = 0x23
XFRMA_SAD_CNT = 1


def _configure(a: Host, b: Host) -> None:
    common: dict[str, TomlValue] = {"proposals": [GCM128], "mode": "tunnel"}
    daemon: dict[str, TomlValue] = {"log_level": "info", "max_outstanding": FLOWS}
    a.write_config(
        {
            "b": {
                **b.peer_settings(),
                **common,
                "local_subnets": ["10.1.0.0/24"],
                "remote_subnets": REMOTE,
                "start_action": "trap",
            }
        },
        **daemon,
    )
    b.write_config(
        {
            "a": {
                **a.peer_settings(),
                **common,
                "local_subnets": REMOTE,
                "remote_subnets": ["10.1.0.0/24"],
                "start_action": "none",
            }
        },
        **daemon,
    )


def _cpu(hosts: tuple[Host, Host]) -> dict[str, float]:
    """CPU seconds so far of each kinkd and helper, by "kinkd-a" etc."""
    return {
        f"{role}-{h.name}": cpu_seconds(p.pid)
        for h in hosts
        for role, p in (("kinkd", h.kinkd), ("helper", h.helper))
        if p is not None
    }


class _Xfrm:
    """A netlink socket in one host's namespace: its SA count and SAs, read without `ip`.

    Why: the burst's end is watched while it runs, on the one UML CPU the daemons share; a
    fork + exec of `ip` and the parse of its text (twice per look) took that CPU from them
    (and its 50 ms period blurred the end). A count is one request; the SAs are compared
    only once both counts are there."""

    def __init__(self, host: Host) -> None:
        with in_namespace(host.name):
            self._sock = NetlinkSocket(xfrm.NETLINK_XFRM)

    def count(self) -> int:
        """SAs of every kind (larval ones and the kernel's ACQUIRE placeholders too)."""
        request = message(XFRM_MSG_GETSADINFO, NLM_F_REQUEST, [struct.pack("=I", 0)])
        [count] = self._sock.request(request, _sad_count)
        return count

    def sas(self) -> set[tuple[object, ...]]:
        """The complete SAs (with algorithms), as comparable between the two ends."""
        return {
            (sa.id.proto, sa.id.spi, sa.src, sa.id.dst, sa.enc, sa.auth)
            for sa in self._sock.request(xfrm.encode_dump(xfrm.XFRM_MSG_GETSA), xfrm.decode_sa)
            if sa.enc or sa.auth
        }

    def close(self) -> None:
        self._sock.close()


def _sad_count(kind: int, pid: int, body: memoryview) -> int:
    cnt = attributes(body, 4)[XFRMA_SAD_CNT]  # after the u32 flags
    return int(struct.unpack_from("=I", cnt)[0])


def _wait_mirrored(a: _Xfrm, b: _Xfrm, count: int, timeout: float) -> float:
    """Until a and b hold the same `count` complete SAs: when their counts first showed it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = time.monotonic()
        if a.count() >= count and b.count() >= count:
            sas = a.sas()
            if len(sas) == count and sas == b.sas():
                return seen
        time.sleep(POLL)
    raise TimeoutError(f"not {count} mirrored SAs after {timeout} s")


def _create_reply_latencies(path: Path, a: Host) -> list[float]:
    """CREATE (a -> b) to the REPLY of the same XID (b -> a), from a capture."""
    return [reply - create for create, reply in _exchanges(path, a)[0]]


def _exchanges(path: Path, a: Host) -> tuple[list[tuple[float, float]], int, float, float]:
    """From a capture on a's wire: the times of each CREATE (its first copy) and its REPLY,
    the CREATEs a sent (retransmissions too), and when the first CREATE and the first REPLY
    were seen."""
    sent: dict[int, float] = {}
    out = []
    creates = 0
    first_create = first_reply = 0.0
    for d in read_capture(path.read_bytes()):
        if len(d.payload) < HEADER.size:
            continue
        kind, _, _, _, xid = HEADER.unpack_from(d.payload)[:5]
        if kind == MessageType.CREATE and d.src == a.addresses.v4:
            creates += 1
            first_create = first_create or d.time
            sent.setdefault(xid, d.time)
        elif kind == MessageType.REPLY and d.dst == a.addresses.v4 and xid in sent:
            first_reply = first_reply or d.time
            out.append((sent.pop(xid), d.time))
    return out, creates, first_create, first_reply


def _daemons(hosts: tuple[Host, Host]) -> dict[str, int]:
    """The pids of both hosts' kinkd and helper, by role ("kinkd-a", "helper-b", ...)."""
    pids = {}
    for host in hosts:
        for role, process in (("kinkd", host.kinkd), ("helper", host.helper)):
            assert process is not None
            pids[f"{role}-{host.name}"] = process.pid
    return pids


class _Stages:
    """`strace -f -ttt -T` attached to both hosts' kinkd and helper, and to this script (its
    waits for the rekeys run beside them), each call timed."""

    def __init__(self, hosts: tuple[Host, Host], directory: Path) -> None:
        self._tracers: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        processes = _daemons(hosts)
        # Last: -f follows the children forked from then on, and the other tracers are some.
        processes["bench"] = os.getpid()
        for name, pid in processes.items():
            out = directory / f"{name}.calls"
            argv = ["strace", "-f", "-ttt", "-T", "-q", "-s", "0", "-o", str(out)]
            tracer = subprocess.Popen([*argv, "-p", str(pid)])
            self._tracers.append((name, tracer, out))
        wait_until(
            lambda: all(
                _tracer_of(pid) for _, tracer, _ in self._tracers for pid in _traced(tracer)
            ),
            "strace attached",
        )

    def stop(self, exchanges: list[tuple[float, float]]) -> None:
        calls: list[tuple[float, str, str, float]] = []  # time, process, call, duration
        for role, tracer, out in self._tracers:
            tracer.send_signal(signal.SIGINT)
            tracer.wait()
            for line in out.read_text().splitlines():
                # "TID SECONDS.USEC call(args) = result <DURATION>"; a call another thread's
                # interrupted shows as "call(args <unfinished ...>" and, at its end (when its
                # duration is known), "<... call resumed>...".
                fields = line.split(maxsplit=2)
                if len(fields) < 3 or line.endswith("<unfinished ...>") or "<" not in line:
                    continue
                try:
                    duration = float(line.rsplit("<", 1)[1].rstrip(">"))
                except ValueError:
                    continue  # no duration: a signal, an exit
                at, text = float(fields[1]), fields[2]
                if text.startswith("<... "):
                    name, at = text[5:].split(maxsplit=1)[0], at - duration
                else:
                    name = text.split("(", 1)[0]
                calls.append((at, f"{role}/{fields[0]}", name, duration))
        calls.sort()
        if not exchanges:
            return
        # Every exchange's calls from its CREATE to its REPLY on a's wire, by process.
        by_process: Counter[str] = Counter()
        by_call: Counter[tuple[str, str]] = Counter()
        for create, reply in exchanges:
            for t, who, name, _ in calls:
                if create <= t <= reply:
                    process = who.split("/", 1)[0]
                    by_process[process] += 1
                    by_call[process, name] += 1
        n = len(exchanges)
        emit(
            "uml.lone_calls",
            sum(by_process.values()) / n,
            "calls/exchange",
            exchanges=n,
            by_process={k: round(v / n, 2) for k, v in sorted(by_process.items())},
            by_call={
                f"{process}/{name}": round(v / n, 2)
                for (process, name), v in sorted(by_call.items())
                if v / n >= 0.1
            },
            note="system calls from the CREATE to the REPLY on a's wire (strace -f)",
        )
        delays = sorted(exchanges, key=lambda e: e[1] - e[0])
        create, reply = delays[len(delays) // 2]
        emit(
            "uml.lone_stages",
            (reply - create) * 1e3,
            "ms",
            exchanges=n,
            calls=[
                [round((t - create) * 1e3, 3), who, name, round(duration * 1e3, 3)]
                for t, who, name, duration in calls
                if create - 0.001 <= t <= reply
            ],
            note="the calls of both hosts (strace: slowed) from the CREATE on a's wire to the"
            " REPLY, in the exchange of median duration",
        )


def _datagrams(host: Host) -> tuple[int, int]:
    """kinkd's datagrams received and sent so far (`kinkctl status`)."""
    transport = host.request("status")["transport"]
    return int(transport["received"]), int(transport["sent"])


class _Syscalls:
    """`strace -c -f -p` attached to each of the four processes (summaries at stop())."""

    def __init__(self, hosts: tuple[Host, Host], directory: Path) -> None:
        self._tracers: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        for host in hosts:
            for role, process in (("kinkd", host.kinkd), ("helper", host.helper)):
                assert process is not None
                name = f"{role}-{host.name}"
                out = directory / f"{name}.strace"
                argv = ["strace", "-c", "-f", "-q", "-o", str(out), "-p", str(process.pid)]
                self._tracers[name] = (subprocess.Popen(argv), out)
        # strace says nothing once attached; every thread of a traced process shows it.
        wait_until(self._attached, "strace attached")

    def _attached(self) -> bool:
        return all(
            _tracer_of(pid) for tracer, _ in self._tracers.values() for pid in _traced(tracer)
        )

    def stop(self, pairs: int) -> None:
        for name, (tracer, out) in self._tracers.items():
            tracer.send_signal(signal.SIGINT)
            tracer.wait()
            calls = _strace_summary(out.read_text())
            total = calls.pop("total", 0)
            top = sorted(calls.items(), key=lambda kv: -kv[1])
            emit(
                "uml.syscalls",
                total / pairs,
                "calls/pair",
                process=name,
                by_call={k: round(v / pairs, 2) for k, v in top if v / pairs >= 0.05},
            )


def _traced(tracer: subprocess.Popen[bytes]) -> list[int]:
    """The threads of the process `tracer` was given (-p PID)."""
    assert isinstance(tracer.args, list)
    pid = tracer.args[-1]
    return [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]


def _tracer_of(tid: int) -> bool:
    for line in Path(f"/proc/{tid}/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return line.split()[1] != "0"
    return False


def _strace_summary(text: str) -> dict[str, int]:
    """calls by syscall (and "total") from `strace -c` output."""
    calls: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[3].isdigit():
            continue
        calls[fields[-1]] = int(fields[3])
    return calls


Counts = tuple[int, ...]


def _process_counts() -> dict[str, Counts]:
    """Minor and major page faults and voluntary and involuntary context switches (summed over
    the threads alive now) of every process in UML, by "command[pid]".

    Why: in UML a page fault is trapped like a system call (22-35 us) and a process switch
    costs more; unlike times, these counts do not depend on the host's load."""
    counts: dict[str, Counts] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            switches = [0, 0]
            for task in (entry / "task").iterdir():
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        switches[0] += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        switches[1] += int(line.split()[1])

        except (FileNotFoundError, ProcessLookupError):
            continue  # gone meanwhile
        command, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1]
        minflt, majflt = int(fields.split()[7]), int(fields.split()[9])
        counts[f"{command}[{entry.name}]"] = (minflt, majflt, *switches)
    return counts


def _emit_counts(
    before: dict[str, Counts],
    after: dict[str, Counts],
    names: dict[str, str],
    exchanges: int,
) -> None:
    """Per lone exchange: each process's page faults and context switches, the four daemons
    by role (`names`: "command[pid]" -> role), the others (tcpdump, this script, kernel
    threads) by command; processes that came and went in between are not seen."""
    by_process: dict[str, list[int]] = {}
    for key, end in after.items():
        start = before.get(key)
        if start is None:
            continue
        delta = [b - a for a, b in zip(start, end, strict=True)]
        if any(delta):
            label = names.get(key) or key.rsplit("[", 1)[0]
            old = by_process.get(label, [0] * 4)
            by_process[label] = [o + d for o, d in zip(old, delta, strict=True)]
    emit(
        "uml.lone_counts",
        sum(v[0] for v in by_process.values()) / exchanges,
        "minor faults/exchange",
        exchanges=exchanges,
        by_process={
            label: {
                "minflt": round(v[0] / exchanges, 2),
                "majflt": round(v[1] / exchanges, 2),
                "voluntary_switches": round(v[2] / exchanges, 2),
                "involuntary_switches": round(v[3] / exchanges, 2),
            }
            for label, v in sorted(by_process.items())
        },
        note="whole rekeys (control request, CREATE, REPLY, DELETE, installs), /proc counts",
    )


class _SaEvents:
    """The SA changes of one host's kernel, as they happen (XFRM's SA multicast group).

    Why: a lone exchange's end is waited for without using the CPU it runs on: a blocking
    read, where polling `ip xfrm state` (a fork + exec per look) ran beside the exchange on
    the one UML CPU and lengthened it."""

    def __init__(self, host: Host) -> None:
        with in_namespace(host.name):
            self._sock = NetlinkSocket(xfrm.NETLINK_XFRM, xfrm.XFRMGRP_SA)

    def wait(self, added: int, deleted: int, timeout: float) -> None:
        """Until `added` SAs were added (XFRM_MSG_NEWSA) and `deleted` deleted since the last
        call: a rekey adds the new outbound SA (its inbound one fills a larval SA) and then
        deletes the old pair."""
        seen = {xfrm.XFRM_MSG_NEWSA: 0, xfrm.XFRM_MSG_DELSA: 0}
        deadline = time.monotonic() + timeout
        while seen[xfrm.XFRM_MSG_NEWSA] < added or seen[xfrm.XFRM_MSG_DELSA] < deleted:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"SA changes: {seen}, waiting for {added} and {deleted}")
            select.select([self._sock], [], [], left)
            kinds, _ = self._sock.pending(lambda kind, pid, body: kind)
            for kind in kinds:
                if kind in seen:
                    seen[kind] += 1

    def close(self) -> None:
        self._sock.close()


def inside(syscalls: bool, capture: bool, stages: bool = False) -> None:
    uml.require_in_uml()
    net = Network.build(Path(tempfile.mkdtemp(prefix="kink-burst-")))
    try:
        a, b = net["a"], net["b"]
        _configure(a, b)
        run("ip", "-n", "a", "route", "add", "10.3.0.0/16", "via", b.addresses.v4)
        for host in (a, b):
            host.start_helper(log_level="INFO")
        net.start()
        # b installs its policies with its first SA (a respond-only peer): one flow first, so
        # that the burst measures exchanges, not that one-off.
        sock = a.socket(socket.AF_INET)
        sock.bind((a.addresses.inner4, 0))
        sock.sendto(b"go", ("10.3.0.1", TRAFFIC_PORT))
        try:
            wait_until(lambda: mirrored(a, b, 2), "the first pair")
        except TimeoutError:
            print(a.logs(), b.logs(), file=sys.stderr)
            raise

        kernels = _Xfrm(a), _Xfrm(b)
        tracing = _Syscalls((a, b), net.directory) if syscalls else None
        wire = Capture(a, "burst") if capture else None
        sent_a, received_b = _datagrams(a)[1], _datagrams(b)[0]
        cpu = _cpu((a, b))
        began = time.monotonic()
        for i in range(1, FLOWS):
            sock.sendto(b"go", (f"10.3.{i}.1", TRAFFIC_PORT))
        took = _wait_mirrored(*kernels, 2 * FLOWS, timeout=120) - began
        spent = {name: seconds - cpu[name] for name, seconds in _cpu((a, b)).items()}
        sent_a, received_b = _datagrams(a)[1] - sent_a, _datagrams(b)[0] - received_b
        for kernel in kernels:
            kernel.close()
        assert mirrored(a, b, 2 * FLOWS)  # as `ip xfrm state` shows them too
        if tracing is not None:
            tracing.stop(FLOWS - 1)
            return
        if wire is not None:
            wire.stop()
            pairs, creates, first_create, first_reply = _exchanges(wire.path, a)
            delays = [reply - create for create, reply in pairs]
            emit(
                "uml.burst_wire",
                creates / (FLOWS - 1),
                "CREATEs/pair",
                first_reply_ms=round((first_reply - first_create) * 1e3, 1),
                median_create_reply_ms=round(percentile(delays, 50) * 1e3, 1),
                seconds=round(took, 3),
                note="a's wire during the burst (tcpdump: slower than without)",
            )
            return
        emit(
            "uml.burst",
            (FLOWS - 1) / took,
            "pairs/s",
            flows=FLOWS - 1,
            seconds=round(took, 3),
            cpu_ms_per_pair=round(sum(spent.values()) / (FLOWS - 1) * 1e3, 2),
            cpu_ms_per_pair_by_process={
                name: round(seconds / (FLOWS - 1) * 1e3, 2) for name, seconds in spent.items()
            },
            # Datagrams per pair: 1 each unless timer T ran out and CREATEs were sent again.
            sent_by_a_per_pair=round(sent_a / (FLOWS - 1), 2),
            received_by_b_per_pair=round(received_b / (FLOWS - 1), 2),
            note="every SA in both kernels (XFRM dumps, then ip xfrm state)",
        )

        lone_wire = Capture(a, "lone")
        staged = _Stages((a, b), net.directory) if stages else None
        changes = _SaEvents(a)
        children = a.sas()[:LONE]
        # One control connection for all the rekeys, its answer read once the rekey is over:
        # kinkd a answers a rekey request before its CREATE leaves, so a connection per
        # request had a take it down (2 epoll_ctl, a close, a task's end), and the read of
        # the answer had this script run, inside the CREATE -> REPLY measured, on UML's one
        # CPU. A rekey of production (a timer, the kernel's soft expire) has neither.
        with ControlClient(str(a.control_socket), timeout=30) as control:
            before = _process_counts()
            for child in children:
                answer = control.parts("rekey", spi=child["sas"][0]["spi_in"])
                changes.wait(added=1, deleted=2, timeout=30)
                next(answer)  # ControlError if refused (then the wait ran out first)
            after = _process_counts()
        changes.close()
        lone_wire.stop()
        if staged is not None:
            staged.stop(_exchanges(lone_wire.path, a)[0])
            return
        names = {f"python[{os.getpid()}]": "bench"}
        for role, pid in _daemons((a, b)).items():
            names.update({key: role for key in after if key.endswith(f"[{pid}]")})
        _emit_counts(before, after, names, len(children))
        lone = _create_reply_latencies(lone_wire.path, a)
        emit(
            "uml.lone_create_reply",
            percentile(lone, 50) * 1e3,
            "ms",
            exchanges=len(lone),
            p25_ms=round(percentile(lone, 25) * 1e3, 2),
            p75_ms=round(percentile(lone, 75) * 1e3, 2),
            p90_ms=round(percentile(lone, 90) * 1e3, 2),
            note="CREATE -> REPLY on a's wire, one exchange at a time (rekeys)",
        )
        sock.close()
    finally:
        net.close()


def main(syscalls: bool = False, capture: bool = False, stages: bool = False) -> None:
    reason = uml.available()
    if reason is not None:
        print(f"uml_burst: {reason}", file=sys.stderr)
        return
    script = "exec python -m bench.uml_burst --inside"
    script += " --syscalls" * syscalls + " --capture" * capture + " --stages" * stages
    result = uml.run_in_uml(script + "\n", timeout=600, mem="1024M")
    lines = [line for line in result.output.splitlines() if line.startswith("{")]
    for line in lines:
        print(line)
    if result.returncode != 0 or not lines:
        print(result.output, file=sys.stderr)
        raise SystemExit(result.returncode or 1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inside", action="store_true", help="the part run inside UML")
    parser.add_argument("--syscalls", action="store_true", help="count system calls per pair")
    parser.add_argument("--capture", action="store_true", help="the burst on a's wire")
    parser.add_argument("--stages", action="store_true", help="b's calls in a lone exchange")
    args = parser.parse_args()
    if args.inside:
        inside(args.syscalls, args.capture, args.stages)
    else:
        main(args.syscalls, args.capture, args.stages)
