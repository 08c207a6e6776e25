"""Loss, duplication and reordering of any message at any step (property-based): for every
schedule both sides end with matching SAs or none — never half-open, never duplicates."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kink.engine.events import Initiate, Terminate
from tests.engine.conftest import WorldFactory
from tests.engine.harness import InFlight, check_consistent, children_per_policy

pytestmark = pytest.mark.kdc

FATES = st.lists(st.sampled_from(["deliver", "drop", "dup", "delay"]), max_size=24).filter(
    lambda fates: fates.count("drop") <= 3  # fewer than the 5 transmissions of a cycle
)


def _run(make_world: WorldFactory, scenario: str, fates: list[str], seed: int) -> None:
    kwargs: dict[str, object] = {"seed": seed}
    if scenario == "three-way":
        kwargs["engine_b"] = {"responder_nonce": True}
    world = make_world(**kwargs)
    queue = list(fates)

    def fate(_: InFlight) -> str:
        return queue.pop(0) if queue else "deliver"

    world.fate = fate
    world.host("a").engine.request(Initiate("b"), world.now)
    if scenario == "simultaneous":
        world.host("b").engine.request(Initiate("a"), world.now)
    world.settle()
    pairs = check_consistent(world)
    if scenario == "delete":
        world.host("a").engine.request(Terminate(peer="b"), world.now)
        world.settle()
        assert check_consistent(world) == 0
        return
    assert pairs == 2
    for name in ("a", "b"):
        assert set(children_per_policy(world.host(name)).values()) == {1}


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    scenario=st.sampled_from(["two-way", "three-way", "delete", "simultaneous"]),
    fates=FATES,
    seed=st.integers(0, 2**16),
)
def test_any_schedule_ends_consistent(
    make_world: WorldFactory, scenario: str, fates: list[str], seed: int
) -> None:
    _run(make_world, scenario, fates, seed)
