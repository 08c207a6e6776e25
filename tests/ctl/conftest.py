"""Two running kinkd (a and b, peers of each other, start_action none) for the kinkctl tests,
built with tests.daemon.harness: in-process Daemons, recording helpers, a real KDC. `kinkctl`
runs the CLI in this process, on a worker thread (the daemons run on this thread's trio loop).
"""

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from kink.ctl.cli import main
from kink.daemon.config import ConfigError, KinkConfig
from kink.engine import StartAction
from tests.ctl.helpers import Run
from tests.daemon.harness import (
    ADDRESSES,
    Node,
    ThreadHelper,
    free_port,
    make_config,
    short_dir,
)
from tests.support.kdc import Realm

Principals = dict[str, tuple[str, Path]]


@pytest.fixture(scope="session")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realm]:
    realm = Realm.start(tmp_path_factory.mktemp("ctl-realm"))
    yield realm
    realm.remove()


@pytest.fixture(scope="session")
def principals(realm: Realm) -> Principals:
    return {name: realm.add_host(f"{name}.ctl.test") for name in ADDRESSES}


@dataclass
class Pair:
    """a and b running; a reloads to `a_next` (a KinkConfig, or a ConfigError to raise)."""

    a: Node
    b: Node
    port: int
    principals: Principals
    directory: Path
    a_next: KinkConfig | ConfigError | None = None
    nodes: list[Node] = field(default_factory=list)

    def load_a(self) -> KinkConfig:
        config = self.a_next
        if isinstance(config, ConfigError):
            raise config
        assert config is not None, "the test set no configuration to reload"
        return config


def socket_of(node: Node) -> str:
    return os.fspath(node.config.daemon.control_socket)


async def kinkctl(capsys: pytest.CaptureFixture[str], node: Node | str, *argv: str) -> Run:
    """`kinkctl --socket <node's socket> argv...`, run in this process."""
    path = node if isinstance(node, str) else socket_of(node)
    code = await trio.to_thread.run_sync(main, ["--socket", path, *argv])
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


@pytest.fixture
async def pair(realm: Realm, principals: Principals, nursery: trio.Nursery) -> AsyncIterator[Pair]:
    none = StartAction.NONE
    with short_dir() as base:
        port = free_port(tuple(ADDRESSES.values()))
        nodes = {}
        for me, other in (("a", "b"), ("b", "a")):
            directory = base / me
            directory.mkdir()
            helper = ThreadHelper(directory / "privsep.sock")
            config = make_config(directory, helper.path, realm, me, principals, port, {other: none})
            nodes[me] = Node(me, ADDRESSES[me], principals[me][0], directory, config, helper)
        pair = Pair(nodes["a"], nodes["b"], port, principals, base)
        try:
            await pair.a.start(nursery, loader=pair.load_a)
            await pair.b.start(nursery)
            yield pair
        finally:
            for node in nodes.values():
                if node.daemon is not None:
                    await node.stop()
                node.helper.close()
