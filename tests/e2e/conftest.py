"""The fixtures of the scenarios run inside user-mode Linux (scenarios.py, faults.py): one
network of hosts per module, hosts reset around each scenario, whose daemons' logs are printed
after a failure (the report hook below records each outcome)."""

import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.support.e2e import Host, Network
from tests.support.uml import require_in_uml


@pytest.fixture(scope="module")
def net() -> Iterator[Network]:
    require_in_uml()
    # Not pytest's tmp_path: its parents are private to root, and kinkd runs as nobody.
    network = Network.build(Path(tempfile.mkdtemp(prefix="kink-e2e-")))
    yield network
    network.close()


@pytest.fixture
def hosts(request: pytest.FixtureRequest, net: Network) -> Iterator[tuple[Host, Host]]:
    """Hosts a and b, clean; their logs in the report of a failed scenario (the hook below)."""
    net.reset()
    yield net["a"], net["b"]
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed:
        for host in net.hosts.values():
            print(host.logs())
    net.reset()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
