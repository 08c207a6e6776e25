"""The initiator asks for a peer's service ticket once while it has none: the transactions
that need it meanwhile (a burst of ACQUIREs, one per flow) wait for that one fetch."""

from ipaddress import ip_network

from kink.engine.config import Policy
from kink.engine.events import Acquire, FetchTicket, Selector
from tests.engine.conftest import WorldFactory
from tests.engine.harness import check_consistent

A, B = "192.0.2.1", "192.0.2.2"


def _host(address: str, protocol: int) -> Selector:
    return Selector(ip_network(address), protocol)


def test_transactions_needing_one_ticket_share_its_fetch(make_world: WorldFactory) -> None:
    ours = tuple(
        Policy(_host(A, p), _host(B, p), reqid=0x4B490100 + 0x100 * i)
        for i, p in enumerate((6, 17, 132))
    )
    theirs = (Policy(_host(B, 0), _host(A, 0), reqid=0x4B490100),)  # b grants each (§10)
    world = make_world(a={"policies": ours}, b={"policies": theirs})
    a = world.host("a")
    a.credentials.forget_ticket(a.engine.peers["b"].config.principal)  # other tests fetched it
    for policy in ours:  # a kernel ACQUIRE per flow, each a CREATE of its own
        a.engine.kernel_event(Acquire(policy.reqid), world.now)
    # Before any ticket comes: one fetch for the three CREATEs that need it.
    actions = []
    while (action := a.engine.next_action()) is not None:
        actions.append(action)
    fetches = [x for x in actions if isinstance(x, FetchTicket)]
    assert len(fetches) == 1
    for action in actions:
        a.engine.actions.append(action)
    world.settle()
    assert check_consistent(world) == 6  # three pairs, each on its ticket
    assert sum(isinstance(x, FetchTicket) for x in a.kernel.log) == 1
