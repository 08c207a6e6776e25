"""HelperClient.arrived: the replies of one message from the helper share one clock read (again
every CLOCK_EVERY of them), which the daemon hands to the engine as their time (issue 9: a
clock read is a system call in user-mode Linux); outside a delivery it is None, and the daemon
reads the clock itself."""

import pytest
import trio

from kink.daemon.helper_client import CLOCK_EVERY, Outcome
from tests.daemon.helper_clients import running_client

pytestmark = pytest.mark.trio


async def test_the_replies_of_one_message_share_a_clock_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running_client() as (helper, client):
        messages = helper.server.messages
        reads: list[float] = []
        real = trio.current_time

        def counted() -> float:
            reads.append(real())
            return reads[-1]

        monkeypatch.setattr(trio, "current_time", counted)
        seen: list[float | None] = []
        all_in = trio.Event()

        def done(_: Outcome) -> None:
            seen.append(client.arrived)
            if len(seen) == count:
                all_in.set()

        count = CLOCK_EVERY + 2
        for _ in range(count):
            await client.submit("hello", {}, done, wake=False)
        client.flush()  # one batch: its replies come in one message (kink_privsep.server)
        await all_in.wait()  # (no other clock read meanwhile)
        monkeypatch.undo()
        assert helper.server.messages == messages + 1
        assert len(reads) == 2  # the first reply's, and the one after CLOCK_EVERY
        assert seen == [reads[0]] * CLOCK_EVERY + [reads[1]] * 2
        assert client.arrived is None  # outside a delivery
