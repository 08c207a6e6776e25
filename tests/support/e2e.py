"""Two KINK hosts and a KDC on one Ethernet segment, in network namespaces of a kernel with ESP.

Meant to run as root inside user-mode Linux (tests.support.uml), where it is the whole "machine":
- a bridge `kinkbr0` in the root namespace joins the namespaces; krb5kdc runs in the root
  namespace on the bridge's address (KDC4), reachable from every host namespace;
- each host (HOSTS: "a", "b") is a namespace with `eth0` on the bridge (IPv4 and IPv6) and a
  dummy interface `inner` holding an address of a subnet behind it, routed through the host's
  peer, for tunnel mode;
- per host, kink-privsep runs as root in the namespace (XFRM backend) and kinkd is started as
  root there and drops to `nobody` (issue 6: never root after start); both are processes of
  this one, their output in the host's directory.

The caller (a pytest session, or a demo script) reaches the namespaces without a process per
call: sockets are opened inside a namespace with setns(2) (`Host.socket`), kinkd's control
socket is a path (`Host.request`), and `ip -n` reads the kernel's XFRM tables (`Host.states`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kink.daemon import control_protocol as cp
from kink.daemon.control_protocol import ControlClient
from tests.support.kdc import Realm

REPO = Path(__file__).resolve().parents[2]
BRIDGE = "kinkbr0"
KDC4 = "10.0.0.254"
REALM = "E2E.KINK.TEST"
USER, GROUP = "nobody", "nogroup"
WAIT = 30.0  # seconds any awaited condition may take before it counts as failed
TRAFFIC_PORT = 5000
MARKER = b"kink-e2e-plaintext"  # in every test datagram: the capture must never show it
_CLONE_NEWNET = 0x40000000  # <sched.h>


@dataclass(frozen=True)
class Addresses:
    v4: str  # on eth0, /24 of the segment
    v6: str  # on eth0, /64 of the segment
    inner4: str  # on `inner`, /24 behind the host
    inner6: str  # on `inner`, /64 behind the host

    def host(self, family: int) -> str:
        return self.v4 if family == socket.AF_INET else self.v6

    def inner(self, family: int) -> str:
        return self.inner4 if family == socket.AF_INET else self.inner6


HOSTS: dict[str, Addresses] = {
    "a": Addresses("10.0.0.1", "fd00::1", "10.1.0.1", "fd01::1"),
    "b": Addresses("10.0.0.2", "fd00::2", "10.2.0.1", "fd02::1"),
}


def subnet(address: str) -> str:
    """The subnet of an `inner` address, in CIDR."""
    if ":" in address:
        return address.rsplit("::", 1)[0] + "::/64"
    return address.rsplit(".", 1)[0] + ".0/24"


def run(*argv: str, check: bool = True) -> str:
    """A command's stdout; RuntimeError with its stderr when it fails (and `check`)."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _ip_batch(namespace: str | None, commands: Sequence[str]) -> None:
    """Several `ip` commands in one exec (each exec costs tens of ms in UML)."""
    argv = ["ip", *(("-n", namespace) if namespace else ()), "-batch", "-"]
    done = subprocess.run(
        argv, input="\n".join(commands) + "\n", capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"ip -batch in {namespace or 'root'} failed: {done.stderr.strip()}")


def build_network() -> None:
    """The bridge, the host namespaces, their addresses and routes (see the module docstring).
    IPv6 duplicate address detection is off: addresses are usable at once."""
    run("modprobe", "-a", "bridge", "sch_netem")
    for key in ("all", "default"):
        Path(f"/proc/sys/net/ipv6/conf/{key}/accept_dad").write_text("0\n")
    root = [f"link add {BRIDGE} type bridge", f"link set {BRIDGE} up"]
    root += [f"addr add {KDC4}/24 dev {BRIDGE}", f"addr add fd00::fe/64 dev {BRIDGE} nodad"]
    for name in HOSTS:
        run("ip", "netns", "add", name)
        root += [
            f"link add v{name} type veth peer name eth0 netns {name}",
            f"link set v{name} master {BRIDGE} up",
        ]
    _ip_batch(None, root)
    for name, me in HOSTS.items():
        other = next(a for n, a in HOSTS.items() if n != name)
        _ip_batch(
            name,
            [
                "link set lo up",
                f"addr add {me.v4}/24 dev eth0",
                f"addr add {me.v6}/64 dev eth0 nodad",
                "link set eth0 up",
                "link add inner type dummy",
                f"addr add {me.inner4}/24 dev inner",
                f"addr add {me.inner6}/64 dev inner nodad",
                "link set inner up",
                f"route add {subnet(other.inner4)} via {other.v4}",
                f"route add {subnet(other.inner6)} via {other.v6}",
            ],
        )


@contextlib.contextmanager
def in_namespace(name: str) -> Iterator[None]:
    """The calling thread in network namespace `name` (sockets made now stay in it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{name}") as target:
        if libc.setns(target.fileno(), _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns to {name}")
        try:
            yield
        finally:
            if libc.setns(home.fileno(), _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")


# ----------------------------------------------------------------------------- the realm


def start_realm(directory: Path) -> Realm:
    """The KDC on the bridge, with the principals kink/<host>.e2e.test (keytabs in the realm's
    directory; `Host.install_keytab` gives one to a host)."""
    realm = Realm.start(directory, REALM, address=KDC4)
    realm.krb5_conf.chmod(0o644)
    for name in HOSTS:
        realm.add_principal(principal_of(name))
    return realm


def principal_of(name: str) -> str:
    return f"kink/{name}.e2e.test@{REALM}"


# ---------------------------------------------------------------------------- kink.toml

# str, int, float, bool, or arrays and inline tables of them (what kink.toml holds).
TomlValue = Any


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def kink_toml(
    daemon: Mapping[str, TomlValue],
    peers: Mapping[str, Mapping[str, TomlValue]],
) -> str:
    """kink.toml text: `daemon` keys, and per peer its keys; a peer's "proposals" is a list of
    {"esp": {...}, "ah": {...}} tables, as in kink.toml.example."""
    lines = ["[daemon]", *(f"{k} = {_toml(v)}" for k, v in daemon.items())]
    for name, keys in peers.items():
        lines += ["", f"[peers.{name}]"]
        lines += [f"{k} = {_toml(v)}" for k, v in keys.items() if k != "proposals"]
        for proposal in keys.get("proposals", ()):
            lines += [f"[[peers.{name}.proposals]]"]
            lines += [f"{k} = {_toml(v)}" for k, v in proposal.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------- hosts


class StartError(RuntimeError):
    """A process did not come up; the message holds its log."""


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class Host:
    """One host namespace: its files under `directory`, its helper and kinkd processes."""

    name: str
    addresses: Addresses
    directory: Path
    realm: Realm
    helper: subprocess.Popen[bytes] | None = None
    kinkd: subprocess.Popen[bytes] | None = None
    _logs: list[Path] = field(default_factory=list)

    @property
    def principal(self) -> str:
        return principal_of(self.name)

    @property
    def helper_socket(self) -> Path:
        return self.directory / "privsep.sock"

    @property
    def control_socket(self) -> Path:
        return self.directory / "run" / "kinkd.sock"

    @property
    def config_path(self) -> Path:
        return self.directory / "kink.toml"

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    @property
    def kinkd_log(self) -> Path:
        return self.directory / "kinkd.log"

    @property
    def helper_log(self) -> Path:
        return self.directory / "privsep.log"

    def install_keytab(self) -> None:
        """This host's key in its keytab, readable by kinkd's user only."""
        keytab = self.directory / "kink.keytab"
        keytab.unlink(missing_ok=True)
        self.realm.keytab(self.principal, keytab)
        user = pwd.getpwnam(USER)
        os.chown(keytab, user.pw_uid, user.pw_gid)
        keytab.chmod(0o600)

    def daemon_settings(self, family: int = socket.AF_INET) -> dict[str, TomlValue]:
        """[daemon] for kinkd in this host: its address of `family`, files under `directory`."""
        d = self.directory
        return {
            "address": self.addresses.host(family),
            "listen": [self.addresses.v4, self.addresses.v6],
            "user": USER,
            "group": GROUP,
            "state_dir": str(self.state_dir),
            "runtime_dir": str(d / "run"),
            "control_socket": str(self.control_socket),
            "helper_socket": str(self.helper_socket),
            "keytab": str(d / "kink.keytab"),
            "principal": self.principal,
            "krb5_config": str(self.realm.krb5_conf),
            "log_level": "debug",
        }

    def peer_settings(self, family: int = socket.AF_INET) -> dict[str, TomlValue]:
        """The [peers.NAME] keys naming this host, as its peer writes them."""
        return {"address": self.addresses.host(family), "principal": self.principal}

    def write_config(
        self,
        peers: Mapping[str, Mapping[str, TomlValue]],
        *,
        family: int = socket.AF_INET,
        **daemon: TomlValue,
    ) -> None:
        settings = {**self.daemon_settings(family), **daemon}
        self.config_path.write_text(kink_toml(settings, peers))

    # ------------------------------------------------------------------ processes

    def _spawn(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [*_in(self.name), sys.executable, *argv],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def start_helper(self, log_level: str = "DEBUG") -> None:
        """kink-privsep as root in the namespace, serving kinkd's user; at DEBUG by default (a
        failed scenario's report shows every request), benchmarks at the production INFO."""
        assert self.helper is None, "helper already running"
        self.helper_socket.unlink(missing_ok=True)
        self.helper = self._spawn(
            [
                "-m",
                "kink_privsep",
                "--socket",
                str(self.helper_socket),
                "--daemon-uid",
                USER,
                "--backend",
                "xfrm",
                "--log-level",
                log_level,
            ],
            self.helper_log,
        )
        process = self.helper
        _wait(
            lambda: self.helper_socket.exists() or process.poll() is not None,
            f"{self.name}: kink-privsep socket",
        )
        if process.poll() is not None:
            self.helper = None
            raise StartError(f"{self.name}: kink-privsep exited:\n{_tail(self.helper_log)}")

    def start_kinkd(self) -> None:
        """kinkd, started as root in the namespace (it drops to USER); returns once its control
        socket answers."""
        self.spawn_kinkd()
        self.wait_kinkd()

    def spawn_kinkd(self) -> None:
        assert self.kinkd is None, "kinkd already running"
        self.control_socket.unlink(missing_ok=True)
        self.kinkd = self._spawn(
            ["-m", "kink.daemon", "--config", str(self.config_path)], self.kinkd_log
        )

    def wait_kinkd(self) -> None:
        """Until the spawned kinkd answers on its control socket; StartError if it exited."""
        process = self.kinkd
        assert process is not None, "kinkd not spawned"

        def answering() -> bool:
            if process.poll() is not None:
                return True
            try:
                with ControlClient(str(self.control_socket), timeout=2.0) as client:
                    client.request("status")
            except OSError:
                return False
            return True

        _wait(answering, f"{self.name}: kinkd control socket")
        if process.poll() is not None:
            self.kinkd = None
            raise StartError(f"{self.name}: kinkd exited:\n{_tail(self.kinkd_log)}")

    def stop_kinkd(self, sig: int = signal.SIGTERM) -> int:
        """Signal kinkd and wait for it; its exit status."""
        process, self.kinkd = self.kinkd, None
        return _stop(process, sig)

    def stop_helper(self, sig: int = signal.SIGTERM) -> int:
        process, self.helper = self.helper, None
        return _stop(process, sig)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.stop_kinkd(sig)
        self.stop_helper(sig)

    def logs(self) -> str:
        """The tails of kinkd's and the helper's logs, for failure messages."""
        return (
            f"--- {self.name} kinkd ---\n{_tail(self.kinkd_log)}\n"
            f"--- {self.name} kink-privsep ---\n{_tail(self.helper_log, 20)}"
        )

    # ------------------------------------------------------------------- control

    def request(self, command: str, **args: Any) -> dict[str, Any]:
        """One kinkctl request over the control socket (what `kinkctl COMMAND` sends)."""
        with ControlClient(str(self.control_socket), timeout=WAIT) as client:
            return client.request(command, **args)

    def sas(self) -> list[dict[str, Any]]:
        """`kinkctl sas`: kinkd's children, each with its SAs and their kernel counters."""
        return list(self.request("sas")["sas"])

    def epoch(self) -> int:
        return int(self.request("status")["epoch"])

    def monitor(self) -> Monitor:
        """`kinkctl monitor`: kinkd's events from now on, collected on a thread."""
        return Monitor(self.control_socket)

    # -------------------------------------------------------------------- kernel

    def ip(self, *args: str) -> str:
        return run("ip", "-n", self.name, *args)

    def states(self) -> list[XfrmState]:
        """`ip -s xfrm state` of the namespace, parsed; larval SAs (no algorithms) left out."""
        return [s for s in parse_states(self.ip("-s", "xfrm", "state")) if s.algorithms]

    def policies(self) -> list[XfrmPolicy]:
        return parse_policies(self.ip("xfrm", "policy"))

    def flush_xfrm(self) -> None:
        _ip_batch(self.name, ["xfrm state flush", "xfrm policy flush"])

    def socket(self, family: int, kind: int = socket.SOCK_DGRAM) -> socket.socket:
        """A socket in this host's namespace."""
        with in_namespace(self.name):
            return socket.socket(family, kind)

    def netem(self, spec: str | None) -> None:
        """`tc qdisc ... netem SPEC` on eth0's egress, or none (None)."""
        run(*_in(self.name), "tc", "qdisc", "del", "dev", "eth0", "root", check=False)
        if spec is not None:
            run(
                *_in(self.name), "tc", "qdisc", "add", "dev", "eth0", "root", "netem", *spec.split()
            )


class Monitor:
    """A subscription to kinkd's event stream (control_protocol's "monitor"); `events` fills
    as they come. Subscribed once the constructor returns."""

    def __init__(self, path: Path) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(WAIT)
        self._sock.connect(str(path))
        self._file = self._sock.makefile("rb")
        self._sock.sendall(cp.encode_request(1, "monitor"))
        while json.loads(self._file.readline()).get("id") != 1:
            pass
        self._sock.settimeout(None)
        self.events: list[cp.Event] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in self._file:
                msg = json.loads(line)
                if "event" in msg:
                    self.events.append(cp.Event(msg["event"], msg["time"], msg["data"]))

    def wait_for(self, kind: str) -> cp.Event:
        """The first event of `kind`; TimeoutError after WAIT seconds."""
        found: list[cp.Event] = []

        def seen() -> bool:
            found[:] = [e for e in self.events if e.kind == kind]
            return bool(found)

        _wait(seen, f"a {kind} event")
        return found[0]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join()
        self._file.close()
        self._sock.close()


def _in(namespace: str) -> list[str]:
    return ["ip", "netns", "exec", namespace]


def _stop(process: subprocess.Popen[bytes] | None, sig: int) -> int:
    if process is None:
        return 0
    if process.poll() is None:
        # `ip netns exec` execs the program: the pid is the program's.
        process.send_signal(sig)
    try:
        return process.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def _wait(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll `predicate` until true; TimeoutError naming `what` after `timeout` seconds."""
    _wait(predicate, what, timeout)


@dataclass
class Network:
    """The built topology: the realm and the hosts (build once, then start/stop daemons)."""

    directory: Path
    realm: Realm
    hosts: dict[str, Host]

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    @classmethod
    def build(cls, directory: Path) -> Network:
        """Namespaces, bridge, KDC and per-host directories under `directory` (traversable by
        kinkd's user: its sockets and keytab are there)."""
        build_network()
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
        realm = start_realm(directory / "realm")
        hosts = {}
        for name, addresses in HOSTS.items():
            d = directory / name
            d.mkdir(exist_ok=True)
            d.chmod(0o755)
            hosts[name] = Host(name, addresses, d, realm)
            hosts[name].install_keytab()
        return cls(directory, realm, hosts)

    def start(self, *names: str) -> None:
        """Helpers and kinkd of the hosts named (all by default) that are not running, the
        slow Python start-ups of the kinkd processes overlapping."""
        hosts = [self.hosts[n] for n in names or self.hosts if self.hosts[n].kinkd is None]
        for host in hosts:
            if host.helper is None:
                host.start_helper()
        for host in hosts:
            host.spawn_kinkd()
        for host in hosts:
            host.wait_kinkd()

    def reset(self) -> None:
        """Between scenarios: daemons stopped, kernels' XFRM tables and links cleared, kinkd's
        state and logs removed (a fresh epoch), keytabs as built."""
        for host in self.hosts.values():
            host.stop(signal.SIGKILL)
            host.flush_xfrm()
            host.netem(None)
            shutil.rmtree(host.state_dir, ignore_errors=True)
            for log in (host.kinkd_log, host.helper_log):
                log.unlink(missing_ok=True)
            host.install_keytab()

    def close(self) -> None:
        for host in self.hosts.values():
            host.stop(signal.SIGKILL)
        self.realm.stop()


# ------------------------------------------------------------------------- ip xfrm text


@dataclass(frozen=True)
class XfrmState:
    src: str
    dst: str
    proto: str  # "esp" | "ah"
    spi: int
    mode: str
    algorithms: tuple[str, ...]  # kernel names: "rfc4106(gcm(aes))", "hmac(sha256)", ...
    bytes: int
    packets: int


@dataclass(frozen=True)
class XfrmPolicy:
    src: str
    dst: str
    dir: str
    templates: tuple[tuple[str, str], ...]  # (proto, mode)


_HEAD = re.compile(r"^src (\S+) dst (\S+).*$", re.M)
_PROTO = re.compile(r"proto (\w+) spi (0x[0-9a-f]+).*? mode (\w+)")
_ALGO = re.compile(r"^\s+(?:aead|enc|auth|auth-trunc|comp) (\S+)", re.M)
_CURRENT = re.compile(r"(\d+)\(bytes\), (\d+)\(packets\)")


def _blocks(text: str) -> Iterator[tuple[re.Match[str], str]]:
    heads = list(_HEAD.finditer(text))
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        yield head, text[head.end() : end]


def parse_states(text: str) -> list[XfrmState]:
    out = []
    for head, body in _blocks(text):
        proto = _PROTO.search(body)
        if proto is None:
            continue
        current = _CURRENT.search(body)
        out.append(
            XfrmState(
                src=head[1],
                dst=head[2],
                proto=proto[1],
                spi=int(proto[2], 16),
                mode=proto[3],
                algorithms=tuple(_ALGO.findall(body)),
                bytes=int(current[1]) if current else 0,
                packets=int(current[2]) if current else 0,
            )
        )
    return out


_DIR = re.compile(r"dir (\w+)")
_TMPL = re.compile(r"proto (\w+) reqid \d+ mode (\w+)")


def parse_policies(text: str) -> list[XfrmPolicy]:
    out = []
    for head, body in _blocks(text):
        direction = _DIR.search(body)
        if direction is None:
            continue
        templates = tuple((m[1], m[2]) for m in _TMPL.finditer(body))
        out.append(XfrmPolicy(head[1], head[2], direction[1], templates))
    return out


# ------------------------------------------------------------------------------ traffic


def datagram(seq: int) -> bytes:
    return MARKER + struct.pack("!I", seq)


class Receiver:
    """A UDP socket in a host's namespace on (address, TRAFFIC_PORT); `received` collects the
    sequence numbers of test datagrams as a background thread reads them."""

    def __init__(self, host: Host, address: str, port: int = TRAFFIC_PORT) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = host.socket(family)
        self.sock.bind((address, port))
        self.received: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            data = self.sock.recv(2048)
            if data.startswith(MARKER) and len(data) == len(MARKER) + 4:
                self.received.append(struct.unpack("!I", data[len(MARKER) :])[0])

    def wait_for(self, seqs: Sequence[int], timeout: float = WAIT) -> bool:
        """True once every one of `seqs` arrived; False after `timeout`."""
        wanted = set(seqs)
        deadline = time.monotonic() + timeout
        while not wanted <= set(self.received):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def missing(self, last: int) -> list[int]:
        """Which of 1..last have not arrived (after waiting up to WAIT for them)."""
        self.wait_for(range(1, last + 1))
        return sorted(set(range(1, last + 1)) - set(self.received))


class Sender:
    """A UDP socket in a host's namespace, from `source`, numbering its datagrams."""

    def __init__(self, host: Host, source: str, destination: str, port: int = TRAFFIC_PORT):
        family = socket.AF_INET6 if ":" in source else socket.AF_INET
        self.sock = host.socket(family)
        self.sock.bind((source, 0))
        self.destination = (destination, port)
        self.seq = 0
        self.errors = 0  # sends the kernel refused (no SA yet: larval policy drops)

    def send(self) -> int:
        """Send the next datagram; its sequence number."""
        self.seq += 1
        try:
            self.sock.sendto(datagram(self.seq), self.destination)
        except OSError:
            self.errors += 1
        return self.seq

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Stream:
    """Datagrams from `sender` at `rate` per second on a thread until stop(): continuous
    traffic for rekey and restart scenarios."""

    def __init__(self, sender: Sender, rate: float = 20.0) -> None:
        self.sender = sender
        self.interval = 1.0 / rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sender.send()

    def stop(self) -> int:
        """Stop sending (and close the sender); the last sequence number sent."""
        self._stop.set()
        self._thread.join()
        self.sender.close()
        return self.sender.seq

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------ capture


@dataclass(frozen=True)
class Packet:
    protocol: int  # IP protocol (IPv6: the first next header)
    data: bytes  # the whole frame


class Capture:
    """tcpdump on the wire of a host (its veth's end on the bridge, in the root namespace)
    from start to stop(); the frames it saw. Not on eth0 in the host: there the kernel hands
    packets to capture taps again after tunnel-mode decapsulation, in the clear."""

    def __init__(self, host: Host, name: str = "capture") -> None:
        self.path = host.directory / f"{name}.pcap"
        self.path.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            [
                "tcpdump",
                "-i",
                f"v{host.name}",
                "-nU",
                "-s0",
                "-Zroot",
                "-w",
                str(self.path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self._process.stderr is not None
        line = self._process.stderr.readline()  # "listening on eth0, ...": capturing now
        if b"listening" not in line:
            self._process.kill()
            raise StartError(f"tcpdump: {line.decode(errors='replace')}")

    def stop(self, frames: int = 1) -> list[Packet]:
        """The frames, once tcpdump has caught up (in UML it lags behind the traffic, and
        SIGINT drops what it has not read yet): the file holds at least `frames` frames (what
        the caller knows was sent; every capture here is of traffic that was sent) and then
        stays the same size for a while. On a loaded machine tcpdump may stall for longer than
        that while: the count is what tells it has caught up."""
        sizes = [-1]
        deadline = time.monotonic() + WAIT
        while len(sizes) < 4 or len(set(sizes[-4:])) > 1 or self._frames() < frames:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
            sizes.append(self.path.stat().st_size if self.path.exists() else 0)
        self._process.send_signal(signal.SIGINT)
        self._process.communicate(timeout=WAIT)
        return read_pcap(self.path.read_bytes())

    def _frames(self) -> int:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        return len(read_pcap(data)) if len(data) > _PCAP_HEADER else 0


_PCAP_HEADER = 24  # bytes before the first frame record


def read_pcap(data: bytes) -> list[Packet]:
    """The IPv4/IPv6 frames of a little-endian Ethernet pcap file (what tcpdump -w writes)."""
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data)
    if magic != 0xA1B2C3D4 or linktype != 1:
        raise ValueError(f"not an Ethernet pcap (magic {magic:#x}, linktype {linktype})")
    out = []
    offset = _PCAP_HEADER
    while offset + 16 <= len(data):
        _, _, length, _ = struct.unpack_from("<IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + length]
        offset += 16 + length
        if len(frame) < 14:
            continue
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        if ethertype == 0x0800 and len(frame) >= 34:
            out.append(Packet(frame[23], frame))
        elif ethertype == 0x86DD and len(frame) >= 54:
            out.append(Packet(frame[20], frame))
    return out


IPPROTO_ESP, IPPROTO_AH = 50, 51
