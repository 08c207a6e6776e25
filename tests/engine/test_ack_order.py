"""The ACK of a 3-way CREATE (RFC 4430 §3.2 steps 4-6) leaves only once the install results of
its REPLY's SAs are in (kink.engine.events: a datagram is emitted only once the SA actions it
depends on have their helper_result), a failed install's included, and is regenerated for a
retransmitted REPLY (§9). The helper answers after the engine went on (World.helper_lag), as
a process does: an ACK emitted with the installs would leave before them."""

import pytest

from kink.engine.events import (
    Action,
    HelperResult,
    Initiate,
    InstallSa,
    NegotiationFailed,
    SendDatagram,
    UpdateSa,
)
from kink.wire import MessageType, decode
from tests.engine.conftest import ADDRESSES, WorldFactory
from tests.engine.harness import Host, InFlight, World, check_consistent

pytestmark = pytest.mark.kdc

A, B = ADDRESSES["a"], ADDRESSES["b"]
THREE_WAY = {"engine_b": {"responder_nonce": True}}  # Nr added: the REPLY asks for an ACK
PFS = {"a": {"pfs_group": 14}, "b": {"pfs_group": 14}}


def _results_seen(host: Host) -> dict[int, int]:
    """token -> how many datagrams `host` had sent when that helper_result reached it."""
    seen: dict[int, int] = {}
    helper_result = host.engine.helper_result

    def recording(result: HelperResult, now: float) -> None:
        seen[result.token] = len(host.sent)
        helper_result(result, now)

    host.engine.helper_result = recording  # type: ignore[method-assign]
    return seen


def _sent(host: Host, kind: MessageType) -> list[int]:
    return [i for i, data in enumerate(host.sent) if decode(data).type == kind]


def _reply_installs(host: Host) -> list[InstallSa | UpdateSa]:
    """The SAs installed on the REPLY (§3.2 step 4): outbound ones, the optimistic inbound SA
    updated, a reserved inbound SPI filled; not the optimistic SA installed before CREATE."""
    return [
        x
        for x in host.kernel.log
        if isinstance(x, UpdateSa) or (isinstance(x, InstallSa) and (not x.spec.inbound or x.fills))
    ]


def _create(make_world: WorldFactory, **kw: object) -> tuple[World, dict[int, int]]:
    world = make_world(**kw)
    world.helper_lag = True
    seen = _results_seen(world.host("a"))
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    return world, seen


@pytest.mark.parametrize("config", [THREE_WAY, PFS], ids=["3-way", "3-way-pfs"])
def test_the_ack_leaves_after_the_install_results(
    make_world: WorldFactory, config: dict[str, object]
) -> None:
    world, seen = _create(make_world, **config)
    assert check_consistent(world) == 2
    a = world.host("a")
    [ack] = _sent(a, MessageType.ACK)
    installs = _reply_installs(a)
    assert len(installs) == 2  # the inbound SA (updated or filled) and the outbound one
    assert all(seen[x.token] <= ack for x in installs), "ACK sent before an install result"


def test_a_failed_install_gets_its_ack_then_its_delete(make_world: WorldFactory) -> None:
    world = make_world(**THREE_WAY)
    world.helper_lag = True
    a = world.host("a")
    seen = _results_seen(a)
    install = a.kernel.install

    def refusing_outbound(action: InstallSa) -> HelperResult:
        if not action.spec.inbound:
            return HelperResult(action.token, error="ENOMEM")
        return install(action)

    a.kernel.install = refusing_outbound  # type: ignore[method-assign]
    a.engine.request(Initiate("b"), world.now)
    world.settle()
    # "The initiator MUST always generate an ACK if the ACKREQ bit is set" (§3.2), once the
    # results are in; the failed pair then goes as any failed install's (a DELETE, §3.3).
    [ack] = _sent(a, MessageType.ACK)
    [delete] = _sent(a, MessageType.DELETE)
    assert all(seen[x.token] <= ack for x in _reply_installs(a))
    assert ack < delete
    failures = [n for n in a.notices if isinstance(n, NegotiationFailed)]
    assert [n.reason for n in failures] == ["install failed: ENOMEM"]
    assert check_consistent(world) == 0


def test_a_3way_rekey_deletes_the_old_pair_after_the_ack(make_world: WorldFactory) -> None:
    lifetime = {"lifetime_seconds": 600}
    world = make_world(a=lifetime, b=lifetime, **THREE_WAY)
    world.host("a").engine.request(Initiate("b"), world.now)
    world.settle()
    world.helper_lag = True
    a = world.host("a")
    seen = _results_seen(a)
    first = len(a.sent)
    world.advance(600)
    assert check_consistent(world) == 2
    [ack] = [i for i in _sent(a, MessageType.ACK) if i >= first]
    [delete] = _sent(a, MessageType.DELETE)
    assert all(seen[x.token] <= ack for x in _reply_installs(a) if x.token in seen)
    # On the DELETE the responder drops its old outbound SA: its new one comes with the ACK.
    assert ack < delete


def _take(host: Host) -> list[Action]:
    out = []
    while (action := host.engine.next_action()) is not None:
        out.append(action)
    return out


def _acks(actions: list[Action]) -> list[SendDatagram]:
    return [
        x for x in actions if isinstance(x, SendDatagram) and decode(x.data).type == MessageType.ACK
    ]


def test_a_reply_retransmitted_before_the_results_gets_one_ack(make_world: WorldFactory) -> None:
    world = make_world(**THREE_WAY)
    replies: list[InFlight] = []

    def hold_the_reply(item: InFlight) -> str:
        if item.src == B and decode(item.data).type == MessageType.REPLY and not replies:
            replies.append(item)
            return "drop"
        return "deliver"

    world.fate = hold_the_reply
    a = world.host("a")
    a.engine.request(Initiate("b"), world.now)
    world.settle(horizon=0)
    [reply] = replies

    def deliver() -> None:
        a.engine.datagram_received(reply.data, (B, 910), world.now)

    deliver()
    installs = _take(a)
    deliver()  # the REPLY again (§9), its SAs still being installed
    assert not _acks(installs + _take(a))
    for action in installs:
        world._act(a, action)  # the helper's results
    assert len(_acks(_take(a))) == 1
    deliver()  # and again once the ACK went: regenerated (§9)
    assert len(_acks(_take(a))) == 1
