"""A realm with host principals for a, b and c (once per session) and, per test, a directory,
a recording helper and a configuration for each host (tests.daemon.harness)."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kink.engine import StartAction
from tests.daemon.harness import (
    ADDRESSES,
    Hosts,
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
    realm = Realm.start(tmp_path_factory.mktemp("daemon-realm"))
    yield realm
    realm.remove()


@pytest.fixture(scope="session")
def principals(realm: Realm) -> Principals:
    return {name: realm.add_host(f"{name}.daemon.test") for name in ADDRESSES}


HostsFactory = Callable[..., Hosts]


@pytest.fixture
def make_hosts(realm: Realm, principals: Principals) -> Iterator[HostsFactory]:
    """make_hosts(a={"b": StartAction.START}, b={"a": StartAction.NONE}) -> Hosts: for each
    host named, its peers and their start_action."""
    made: list[Hosts] = []
    with short_dir() as base:

        def make(**nodes: dict[str, StartAction]) -> Hosts:
            port = free_port(tuple(ADDRESSES.values()))
            hosts = Hosts(realm, base, port, {})
            for me, starts in nodes.items():
                directory = base / me
                directory.mkdir()
                helper = ThreadHelper(directory / "privsep.sock")
                config = make_config(directory, helper.path, realm, me, principals, port, starts)
                hosts.nodes[me] = Node(
                    me, ADDRESSES[me], principals[me][0], directory, config, helper
                )
            made.append(hosts)
            return hosts

        yield make
        for hosts in made:
            for node in hosts.nodes.values():
                node.helper.close()
