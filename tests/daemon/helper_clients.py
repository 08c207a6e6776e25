"""A HelperClient connected to kink_privsep's real server on a thread of this process
(tests.privsep.harness.thread_helper), its run() task going: what the helper client tests
start from."""

import contextlib
from collections.abc import AsyncIterator

import trio

from kink.daemon.helper_client import HelperClient
from kink_privsep.protocol import Event
from kink_privsep.service import Service
from tests.privsep.harness import ThreadHelper, thread_helper


def _ignore(_: Event) -> None:
    pass


async def _nothing() -> None:
    pass


@contextlib.asynccontextmanager
async def running_client(
    service_class: type[Service] = Service,
) -> AsyncIterator[tuple[ThreadHelper, HelperClient]]:
    with thread_helper(service_class=service_class) as helper:
        client = HelperClient(helper.path, _ignore, _nothing)
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            yield helper, client
            nursery.cancel_scope.cancel()
