"""The cycle collector as a running kinkd sets it (kink.daemon.runner GC_*): objects that live on
(the responder's reply cache under load keeps ~100,000) never pile up in the middle generation,
so no pass goes over more than two young passes' worth of them (issue 9: a middle pass over
ten, 60 ms with the loop standing still, set the p99 of bench_exchange)."""

import gc
from typing import Any

import pytest
import trio

from kink.daemon.runner import GC_YOUNG_THRESHOLD
from kink.engine import StartAction
from tests.daemon.conftest import HostsFactory

pytestmark = pytest.mark.trio

# Containers a test may have made besides its own between two passes (the loop's, pytest's).
SLACK = 2_000


async def test_no_pass_goes_over_more_than_two_young_passes_of_survivors(
    make_hosts: HostsFactory,
) -> None:
    node = make_hosts(a={"b": StartAction.NONE})["a"]
    passes: list[tuple[int, int]] = []  # (generation, objects it goes over)

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            over = range(info["generation"] + 1)
            passes.append((info["generation"], sum(len(gc.get_objects(g)) for g in over)))

    async with trio.open_nursery() as nursery:
        await node.start(nursery)
        kept: list[list[int]] = []
        gc.callbacks.append(note)
        try:
            # Containers that live on, as a loaded responder's answers do: 30 young passes'.
            for _ in range(30 * GC_YOUNG_THRESHOLD):
                kept.append([])
        finally:
            gc.callbacks.remove(note)
        await node.stop()
    middle = [over for generation, over in passes if generation == 1]
    assert middle, passes  # there were middle passes while they piled up
    assert max(over for _, over in passes) <= 2 * GC_YOUNG_THRESHOLD + SLACK, passes
