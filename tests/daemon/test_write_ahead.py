"""Write-ahead per datagram (issue 10, kink.daemon.runner's _write_ahead): a datagram waits only
for the save of the state it commits us to, in the generation its change was noted, never for
another exchange's; and a kinkd killed at any point either replied and takes its pair back after
a restart, or did not reply and deletes the SAs its state file does not account for."""

import threading
from collections.abc import Callable

import pytest
import trio
import trio.testing

from kink.daemon import state_writer
from kink.daemon.outbox import Outbox
from kink.daemon.runner import Daemon
from kink.daemon.state_writer import StateWriter
from kink.engine import StartAction
from kink.engine.events import Address, SaEstablished, SendDatagram
from kink.wire.constants import ACKREQ_FLAG, MessageType
from kink.wire.header import HEADER
from tests.daemon.conftest import HostsFactory
from tests.daemon.harness import matching_pairs, wait_for, wait_for_a_pair, with_pfs

pytestmark = pytest.mark.trio

CREATE, REPLY, DELETE = MessageType.CREATE, MessageType.REPLY, MessageType.DELETE
# How long the initiator's helper holds the fill of its inbound SA back, unless the responder
# got an ACK first: a bound on the test's wait, not a figure any assertion rests on.
FILL_HELD = 1.0


def datagram(kind: MessageType, xid: int, *, ackreq: bool = False) -> bytes:
    flags = ACKREQ_FLAG if ackreq else 0
    return HEADER.pack(kind, 0x10, HEADER.size + 8, 1, xid, 0, flags, 0) + b"payload!"


class Saves:
    """The daemon's state writer with writes that end when the test says (release())."""

    def __init__(self, daemon: Daemon) -> None:
        self.began: list[int] = []  # the generation each write holds, as it begins
        self._gates: list[trio.Event] = []
        daemon.writer = self.writer = StateWriter(self._save, daemon._durable)

    async def _save(self) -> None:
        self.began.append(self.writer.generation)
        gate = trio.Event()
        self._gates.append(gate)
        await gate.wait()

    def release(self) -> None:
        self._gates.pop(0).set()


class Responder:
    """A Daemon not started, fed the actions its executor would carry out (the engine's
    notices and datagrams), its socket a list."""

    def __init__(self, daemon: Daemon, peer: Address) -> None:
        self.daemon, self.peer = daemon, peer
        self.sent: list[bytes] = []

        async def send(data: bytes, to: Address) -> None:
            raise AssertionError("the socket takes every datagram")

        def try_send(data: bytes, to: Address) -> bool:
            self.sent.append(data)
            return True

        daemon.outbox = Outbox(send, try_send)

    async def answer(self, xid: int, child: int) -> bytes:
        """A CREATE received, its child installed in one go (2-way), its REPLY sent."""
        self.daemon.answers.received(datagram(CREATE, xid), self.peer[0])
        await self.notice(child, initiator=False)
        return await self.send(datagram(REPLY, xid))

    async def notice(self, child: int, *, initiator: bool, three_way: bool = False) -> None:
        spis = ((50, 0x1000 + child, 0x2000 + child),)
        established = SaEstablished("peer", child, initiator, spis, three_way, None)
        await self.daemon._carry_out(established)

    async def send(self, data: bytes) -> bytes:
        await self.daemon._carry_out(SendDatagram(data, self.peer))
        return data


def not_started(make_hosts: HostsFactory) -> Daemon:
    hosts = make_hosts(a={"b": StartAction.NONE})
    return Daemon(hosts["a"].config, [])


async def test_a_reply_whose_child_was_saved_leaves_while_another_childs_save_is_pending(
    make_hosts: HostsFactory,
) -> None:
    host = Responder(not_started(make_hosts), ("192.0.2.2", 910))
    saves = Saves(host.daemon)
    async with trio.open_nursery() as nursery:
        first = await host.answer(1, child=1)
        nursery.start_soon(saves.writer.save_now)  # the write of child 1 and its REPLY
        await trio.testing.wait_all_tasks_blocked()
        second = await host.answer(2, child=2)  # noted while that write runs
        again = await host.send(first)  # CREATE 1 retransmitted: the engine's reply cache
        assert host.sent == []
        saves.release()
        await trio.testing.wait_all_tasks_blocked()
        # The REPLY and its repetition leave with the write that held their change; the
        # REPLY noted during it waits for the next one, and holds back nothing else.
        assert host.sent == [first, again]
        nursery.start_soon(saves.writer.save_now)
        await trio.testing.wait_all_tasks_blocked()
        saves.release()
        await trio.testing.wait_all_tasks_blocked()
        assert host.sent == [first, again, second]
        assert saves.began == [2, 4]  # each REPLY's write holds its child before it


async def test_datagrams_of_other_exchanges_do_not_wait_for_a_replys_save(
    make_hosts: HostsFactory,
) -> None:
    host = Responder(not_started(make_hosts), ("192.0.2.2", 910))
    saves = Saves(host.daemon)
    async with trio.open_nursery() as nursery:
        reply = await host.answer(1, child=1)
        await host.notice(7, initiator=True)  # a child of ours, saved promptly: nothing waits
        create = await host.send(datagram(CREATE, 10))
        status = await host.send(datagram(MessageType.STATUS, 11))
        error = await host.send(datagram(REPLY, 12))  # a REPLY that installed nothing
        assert host.sent == [create, status, error]  # at once, though a save is pending
        nursery.start_soon(saves.writer.save_now)
        await trio.testing.wait_all_tasks_blocked()
        saves.release()
        await trio.testing.wait_all_tasks_blocked()
        assert host.sent == [create, status, error, reply]


async def test_an_ack_a_reply_asking_for_one_and_a_delete_wait_for_their_own_save(
    make_hosts: HostsFactory,
) -> None:
    host = Responder(not_started(make_hosts), ("192.0.2.2", 910))
    saves = Saves(host.daemon)
    async with trio.open_nursery() as nursery:
        # A 3-way REPLY (§3.2): its children awaiting the ACK are saved before it leaves.
        host.daemon.answers.received(datagram(CREATE, 1), host.peer[0])
        asking = await host.send(datagram(REPLY, 1, ackreq=True))
        # Our ACK: the responder installs its outbound SA on it, so our child (established
        # with it, RFC 4430 §3.2) is saved first, whether it was noted before or after it.
        ack = await host.send(datagram(MessageType.ACK, 2))
        await host.notice(3, initiator=True, three_way=True)
        # A DELETE of what a child established before it replaces (§3.6) waits for that
        # child's save; the REPLY to a peer's DELETE waits for nothing.
        delete = await host.send(datagram(DELETE, 4))
        deleted = await host.send(datagram(REPLY, 5))
        assert host.sent == [deleted]
        nursery.start_soon(saves.writer.save_now)
        await trio.testing.wait_all_tasks_blocked()
        saves.release()
        await trio.testing.wait_all_tasks_blocked()
        assert host.sent == [deleted, asking, ack, delete]
        again = await host.send(delete)  # nothing established since: leaves at once
        assert host.sent[-1] is again


async def test_a_delete_leaves_with_the_write_running_for_its_replacement(
    make_hosts: HostsFactory,
) -> None:
    host = Responder(not_started(make_hosts), ("192.0.2.2", 910))
    saves = Saves(host.daemon)
    async with trio.open_nursery() as nursery:
        await host.notice(5, initiator=True)  # a rekey's new pair (§3.6)
        nursery.start_soon(saves.writer.save_now)  # its write begins
        await trio.testing.wait_all_tasks_blocked()
        ack = await host.send(datagram(MessageType.ACK, 6))  # another exchange's change
        delete = await host.send(datagram(DELETE, 7))  # the old pair's
        saves.release()
        await trio.testing.wait_all_tasks_blocked()
        assert host.sent == [delete]  # not held for the write the ACK needs
        nursery.start_soon(saves.writer.save_now)
        await trio.testing.wait_all_tasks_blocked()
        saves.release()
        await trio.testing.wait_all_tasks_blocked()
        assert host.sent == [delete, ack]


# --------------------------------------------------------- killed at any point (issue 10)


async def test_a_responder_that_cannot_save_never_replies_and_its_restart_deletes_the_sas(
    make_hosts: HostsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = make_hosts(a={"b": StartAction.START}, b={"a": StartAction.NONE})
    a, b = hosts["a"], hosts["b"]
    failed: list[None] = []

    def full() -> None:
        failed.append(None)
        raise OSError(28, "No space left on device")

    async with trio.open_nursery() as nursery:
        async with trio.open_nursery() as doomed:
            daemon = await b.start(doomed)
            _unwritable(monkeypatch, daemon, full)
            await a.start(nursery)
            # b installs the pair and fails to save it, over and over (the writer retries);
            # a's CREATE is retransmitted and b's reply cache answers it: held all the same.
            await wait_for(lambda: len(b.sas()) == 2, "b's pair installed")
            await wait_for(
                lambda: daemon.engine.counters.get("retransmitted-command", 0) >= 1,
                "a retransmitted CREATE answered from b's reply cache",
            )
            assert len(failed) >= 2
            assert [sa for sa in a.sas() if sa["dst"] == b.address] == []  # no REPLY came
            installed = {sa["spi"] for sa in b.sas()}
            doomed.cancel_scope.cancel()  # killed: b never replied

        await b.start(nursery)  # its state file does not account for the pair: deleted
        assert not installed & {sa["spi"] for sa in b.helper.dump()["sas"]}
        await wait_for(lambda: len(a.sas()) == len(b.sas()) == 2, "a pair, answered anew")
        assert matching_pairs(a, b) == 2
        await a.stop()
        await b.stop()


async def test_a_responder_killed_as_its_reply_leaves_takes_its_pair_back(
    make_hosts: HostsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = make_hosts(a={"b": StartAction.START}, b={"a": StartAction.NONE})
    a, b = hosts["a"], hosts["b"]
    try_send = Daemon._try_send
    doomed_daemon: list[Daemon] = []

    def killed() -> None:
        raise OSError(5, "killed")

    def killing_try_send(self: Daemon, data: bytes, peer: Address) -> bool:
        taken = try_send(self, data, peer)
        if doomed_daemon and self is doomed_daemon[0] and data[0] == REPLY:
            # Killed the moment the REPLY is out: nothing more reaches the disk.
            _unwritable(monkeypatch, self, killed)
            doomed.cancel_scope.cancel()
        return taken

    monkeypatch.setattr(Daemon, "_try_send", killing_try_send)
    async with trio.open_nursery() as nursery:
        async with trio.open_nursery() as doomed:
            doomed_daemon.append(await b.start(doomed))
            await a.start(nursery)
        epoch = doomed_daemon[0].engine.epoch
        await wait_for(lambda: len(a.sas()) == 2, "a's pair, installed on b's REPLY")

        await b.start(nursery)  # the pair was saved before the REPLY left: taken back
        assert (await b.request("status"))["epoch"] == epoch
        assert matching_pairs(a, b) == 2
        await a.stop()
        await b.stop()


# ------------------------------------------------------------------ the engine's order


async def test_the_ack_reaches_the_responder_only_once_the_replys_sas_are_in(
    make_hosts: HostsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon holds no datagram behind helper calls: the engine emits the ACK of a 3-way
    REPLY only once that REPLY's SAs are in (kink.engine.events; RFC 4430 §3.2: on the ACK the
    responder sends with its outbound SA, to our inbound one)."""
    hosts = make_hosts(a={"b": StartAction.START}, b={"a": StartAction.NONE})
    a, b = hosts["a"], hosts["b"]
    with_pfs(14, a, b)  # KE: 3-way
    acked = threading.Event()
    when_acked: list[list[str]] = []  # a's helper calls done when b got the ACK
    add_sa = a.helper.backend.add_sa
    received = Daemon._datagram

    def slow_fill(sa: object, *, update: bool) -> None:
        if update:  # the inbound SA reserved for the CREATE, filled on the REPLY
            acked.wait(FILL_HELD)
        add_sa(sa, update=update)  # type: ignore[arg-type]

    def watching(self: Daemon, data: bytes, peer: Address) -> None:
        if self is b.daemon and data[:1] == bytes((MessageType.ACK,)):
            when_acked.append(list(a.helper.backend.calls))
            acked.set()
        received(self, data, peer)

    monkeypatch.setattr(a.helper.backend, "add_sa", slow_fill)
    monkeypatch.setattr(Daemon, "_datagram", watching)
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        await a.start(nursery)
        await wait_for_a_pair(a, b)
        await a.stop()
        await b.stop()
    assert when_acked, "no ACK: the exchange was not 3-way"
    assert "update_sa" in when_acked[0] and when_acked[0].count("add_sa") == 1


async def test_a_reply_leaves_as_the_loop_learns_that_its_write_in_the_thread_ended(
    make_hosts: HostsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The datagrams held for a save written in the write thread leave in the turn of the loop
    that learns the write ended (StateWriter.written), not once the save's task runs again, a
    turn later (issue 9)."""
    # Every write in the thread: none inline, by the daemon's step or by the writer task.
    monkeypatch.setattr(state_writer, "INLINE_CHILDREN", -1)
    hosts = make_hosts(a={"b": StartAction.START}, b={"a": StartAction.NONE})
    a, b = hosts["a"], hosts["b"]
    events: list[tuple[str, int]] = []  # b's: (what, which of its saves)
    saves = [0]  # b's saves begun
    save, durable = Daemon._save, Daemon._durable

    async def saving(self: Daemon) -> None:
        if self is not b.daemon:
            await save(self)
            return
        saves[0] += 1
        this = saves[0]
        await save(self)
        events.append(("resumed", this))

    def released(self: Daemon, generation: int) -> None:
        if self is b.daemon:
            events.append(("durable", saves[0]))  # saves run one at a time
        durable(self, generation)

    monkeypatch.setattr(Daemon, "_save", saving)
    monkeypatch.setattr(Daemon, "_durable", released)
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        await a.start(nursery)
        await wait_for_a_pair(a, b)
        await a.stop()
        await b.stop()
    held = [number for what, number in events if what == "durable"]
    assert held, "b's REPLY waited for no save"
    for save_number in held:
        assert events.index(("durable", save_number)) < events.index(("resumed", save_number))


def _unwritable(monkeypatch: pytest.MonkeyPatch, daemon: Daemon, fail: Callable[[], None]) -> None:
    """Every save of `daemon` from now on calls `fail` (which raises) instead of writing."""

    def write(*args: object, **kwargs: object) -> None:
        fail()

    for name in ("update", "snapshot"):
        monkeypatch.setattr(daemon.store, name, write)
