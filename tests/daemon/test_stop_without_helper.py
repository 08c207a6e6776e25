"""kinkd stops promptly and cleanly on SIGTERM (Daemon.stop) while kink-privsep is away: killed
after start-up, or not reachable yet. Nothing may wait for a helper that may never come back."""

from pathlib import Path

import pytest
import trio
import trio.testing

from kink.daemon.helper_client import HelperClient, HelperGone
from kink.daemon.runner import Daemon
from kink.daemon.transport import open_sockets
from kink.engine import StartAction
from kink_privsep.protocol import Event
from tests.daemon.conftest import HostsFactory
from tests.daemon.harness import WAIT, short_dir, wait_for

pytestmark = pytest.mark.trio


def _ignore(_: Event) -> None:
    pass


async def _nothing() -> None:
    pass


async def test_give_up_fails_the_calls_waiting_for_an_absent_helper() -> None:
    with short_dir() as directory:
        client = HelperClient(str(directory / "nobody-listens.sock"), _ignore, _nothing)
        outcomes: list[object] = []

        async def call() -> None:
            try:
                outcomes.append(await client.call("hello"))
            except HelperGone as exc:
                outcomes.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run)
            nursery.start_soon(call)
            await trio.testing.wait_all_tasks_blocked()
            assert outcomes == []  # waiting for the helper, as a call does while it is away
            client.give_up()
            await trio.testing.wait_all_tasks_blocked()
            assert [type(o) for o in outcomes] == [HelperGone]
            with pytest.raises(HelperGone):  # and a call made now does not wait either
                await client.call("hello")
            nursery.cancel_scope.cancel()


async def test_give_up_leaves_a_connected_helper_serving(make_hosts: HostsFactory) -> None:
    node = make_hosts(a={})["a"]
    client = HelperClient(str(node.helper.path), _ignore, _nothing)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        client.give_up()
        assert "reqid_range" in await client.call("hello")
        nursery.cancel_scope.cancel()


async def test_stop_after_the_helper_went_away(make_hosts: HostsFactory) -> None:
    # A trap peer: its policies are installed, and stopping removes them through the helper.
    node = make_hosts(a={"b": StartAction.TRAP})["a"]
    async with trio.open_nursery() as nursery:
        daemon = await node.start(nursery)
        node.helper.stop()
        await wait_for(lambda: not daemon.helper.connected, "kinkd to see the helper gone")
        await node.stop()  # trio.TooSlowError after WAIT seconds if it hangs


async def test_stop_before_the_helper_was_ever_reached(make_hosts: HostsFactory) -> None:
    node = make_hosts(a={"b": StartAction.TRAP})["a"]
    node.helper.stop()
    Path(node.helper.path).unlink(missing_ok=True)
    config = node.config
    daemon = Daemon(config, open_sockets(config.daemon.listen, config.daemon.port))
    finished = trio.Event()

    async def run() -> None:
        try:
            await daemon.run()
        finally:
            finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()  # retrying the helper's socket
        daemon.stop()
        with trio.fail_after(WAIT):
            await finished.wait()
