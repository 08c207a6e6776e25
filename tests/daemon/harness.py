"""kinkd instances for tests: in-process Daemons (trio tasks) on loopback addresses, each with
a kink_privsep server on a RecordingBackend (in a thread of this process, so that a test can
play the kernel: ACQUIRE, flush), a real KDC, and a control socket."""

import contextlib
import grp
import os
import pwd
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from kink.daemon.config import DaemonSettings, KinkConfig
from kink.daemon.control_protocol import ControlClient
from kink.daemon.notify import Notifier
from kink.daemon.runner import Daemon
from kink.daemon.transport import open_sockets
from kink.engine import EngineConfig, PeerConfig, ProposalSpec, StartAction, TransformSpec
from kink.wire.ipsec_doi import AuthAlgorithm, EspTransform, ProtocolId
from kink_privsep.client import Client
from kink_privsep.main import listening_socket
from kink_privsep.model import Config
from kink_privsep.recording import RecordingBackend
from kink_privsep.server import Server
from kink_privsep.service import Service
from tests.support.kdc import Realm

ESP_AES128_SHA1 = ProposalSpec(
    (TransformSpec(ProtocolId.ESP, EspTransform.AES_CBC, AuthAlgorithm.HMAC_SHA1, 128),)
)
HELPER_CONFIG = Config()  # the helper's defaults: what a packaged kink_privsep runs with
WAIT = 20.0  # seconds any awaited condition may take before the test fails


def free_port(addresses: tuple[str, ...]) -> int:
    """A UDP port free on every one of `addresses`."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind((addresses[0], 0))
            port = int(first.getsockname()[1])
            try:
                for other in addresses[1:]:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                        s.bind((other, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP port")


@contextlib.contextmanager
def short_dir() -> Iterator[Path]:
    """A directory whose path fits in a Unix socket address."""
    d = tempfile.mkdtemp(prefix="kd-")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


class ThreadHelper:
    """kink_privsep's server with a RecordingBackend on a thread; restart() replaces it with a
    fresh one (an empty kernel) on the same socket path."""

    def __init__(self, path: Path, daemon_uid: int | None = None) -> None:
        self.path = path
        self.daemon_uid = os.getuid() if daemon_uid is None else daemon_uid
        self.backend = RecordingBackend()
        self._start()

    def _start(self) -> None:
        self._listener, _ = listening_socket(str(self.path), self.daemon_uid)
        self.service = Service(self.backend, HELPER_CONFIG)
        self._server = Server(self._listener, self.service, self.daemon_uid)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.stop()
        self._thread.join()
        self._listener.close()

    def restart(self, *, keep_kernel: bool) -> None:
        self.stop()
        if not keep_kernel:
            self.backend.close()
            self.backend = RecordingBackend()
        self._start()

    def close(self) -> None:
        self.stop()
        self.backend.close()

    def dump(self) -> dict[str, Any]:
        with Client(str(self.path)) as client:
            return client.call("dump")


@dataclass
class Node:
    """One host: its settings, helper and (while running) Daemon."""

    name: str
    address: str
    principal: str
    directory: Path
    config: KinkConfig
    helper: ThreadHelper
    daemon: Daemon | None = None
    notifier: Notifier | None = None
    finished: trio.Event = field(default_factory=trio.Event)

    def control(self) -> ControlClient:
        return ControlClient(str(self.config.daemon.control_socket), timeout=WAIT)

    async def request(self, command: str, **args: Any) -> dict[str, Any]:
        def call() -> dict[str, Any]:
            with self.control() as client:
                return client.request(command, **args)

        return await trio.to_thread.run_sync(call)

    def sas(self) -> list[dict[str, Any]]:
        """The SAs in this host's (recording) kernel, without the larval ones."""
        return [sa for sa in self.helper.dump()["sas"] if sa["enc"] or sa["auth"]]

    def policies(self) -> list[dict[str, Any]]:
        return list(self.helper.dump()["policies"])

    async def start(
        self,
        nursery: trio.Nursery,
        *,
        loader: Callable[[], KinkConfig] | None = None,
    ) -> Daemon:
        sockets = open_sockets(self.config.daemon.listen, self.config.daemon.port)
        self.daemon = Daemon(self.config, sockets, notifier=self.notifier, loader=loader)
        self.finished = trio.Event()
        await nursery.start(self._run, self.daemon, self.finished)
        return self.daemon

    @staticmethod
    async def _run(
        daemon: Daemon, finished: trio.Event, task_status: trio.TaskStatus[None]
    ) -> None:
        try:
            await daemon.run(task_status=task_status)
        finally:
            finished.set()

    async def stop(self) -> None:
        """Stop the daemon as SIGTERM does and wait until it has."""
        assert self.daemon is not None
        self.daemon.stop()
        with trio.fail_after(WAIT):
            await self.finished.wait()
        self.daemon = None


@dataclass
class Hosts:
    realm: Realm
    directory: Path
    port: int
    nodes: dict[str, Node]

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]


ADDRESSES = {"a": "127.0.0.1", "b": "127.0.0.2", "c": "127.0.0.3"}


def settings(
    directory: Path, helper: Path, keytab: Path, realm: Realm, address: str, port: int
) -> DaemonSettings:
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    state = directory / "state"
    state.mkdir(exist_ok=True)
    return DaemonSettings(
        user=user,
        group=group,
        state_dir=state,
        runtime_dir=directory,
        control_socket=directory / "ctl.sock",
        control_group=None,
        helper_socket=helper,
        keytab=keytab,
        krb5_config=realm.krb5_conf,
        listen=(address,),
        port=port,
        log_level="debug",
    )


def peer_config(name: str, principal: str, port: int, start: StartAction) -> PeerConfig:
    return PeerConfig(
        name=name,
        address=ADDRESSES[name],
        principal=principal,
        policies=(),
        proposals=(ESP_AES128_SHA1,),
        start_action=start,
        port=port,
    )


def with_peers(config: KinkConfig, *peers: PeerConfig) -> KinkConfig:
    return replace(config, engine=replace(config.engine, peers=peers))


def with_pfs(group: int | None, *nodes: Node) -> None:
    """Each node's one peer negotiated with `group` (KE: a 3-way exchange), or without KE."""
    for node in nodes:
        (peer,) = node.config.engine.peers
        node.config = with_peers(node.config, replace(peer, pfs_group=group))


def make_config(
    node_dir: Path,
    helper: Path,
    realm: Realm,
    me: str,
    principals: dict[str, tuple[str, Path]],
    port: int,
    starts: dict[str, StartAction],
) -> KinkConfig:
    principal, keytab = principals[me]
    peers = tuple(
        peer_config(other, principals[other][0], port, start) for other, start in starts.items()
    )
    engine = EngineConfig(ADDRESSES[me], principal, peers, port=port)
    daemon = settings(node_dir, helper, keytab, realm, ADDRESSES[me], port)
    return KinkConfig(daemon=daemon, engine=engine, source=node_dir / "kink.toml")


def matching_pairs(a: Node, b: Node) -> int:
    """The SAs of a and b mirror each other (a's outbound is b's inbound, same SPI and
    algorithms): the number of SAs on each side."""
    sas_a = {(sa["spi"], sa["dst"]): sa for sa in a.sas()}
    sas_b = {(sa["spi"], sa["dst"]): sa for sa in b.sas()}
    assert sas_a.keys() == sas_b.keys(), (sas_a.keys(), sas_b.keys())
    for key, sa in sas_a.items():
        twin = sas_b[key]
        assert (sa["src"], sa["enc"], sa["auth"], sa["mode"]) == (
            twin["src"],
            twin["enc"],
            twin["auth"],
            twin["mode"],
        )
    return len(sas_a)


async def rekey_pair(a: Node, b: Node) -> None:
    """a rekeys its one pair with b (kinkctl rekey), until the new pair replaced the old."""
    old = {sa["spi"] for sa in a.sas()}
    assert (await a.request("rekey", peer="b")) == {"children": 1}
    await wait_for(
        lambda: len(a.sas()) == len(b.sas()) == 2 and not old & {sa["spi"] for sa in a.sas()},
        "the rekeyed pair replacing the old one",
    )


def sa_pairs(sas: dict[str, Any]) -> set[tuple[int, int]]:
    """The (inbound, outbound) SPIs of each pair in a `sas` control reply."""
    return {(sa["spi_in"], sa["spi_out"]) for child in sas["sas"] for sa in child["sas"]}


async def wait_for_a_pair(a: Node, b: Node) -> None:
    """Until a and b each hold one SA pair (the outcome most scenarios start from)."""
    await wait_for(lambda: len(a.sas()) == 2 and len(b.sas()) == 2, "an SA pair each")


async def wait_for(predicate: Callable[[], bool], what: str) -> None:
    with trio.move_on_after(WAIT) as scope:
        while True:
            if await trio.to_thread.run_sync(predicate):
                return
            await trio.sleep(0.02)
    if scope.cancelled_caught:
        raise AssertionError(f"timed out waiting for {what}")
