"""What makes a kinkd killed mid-CREATE leave both directions or none (issue 10): the state file
with the REPLYs of young responder children, the SAs it does not account for, coalesced
write-ahead saving and the outbox that holds datagrams until what precedes them is done."""

from dataclasses import replace
from ipaddress import ip_network
from pathlib import Path

import pytest
import trio
import trio.testing

from kink.daemon.answers import Answers, asks_ack
from kink.daemon.outbox import Outbox
from kink.daemon.state import SaId, SavedAnswer, SavedChild, StateStore, unaccounted
from kink.daemon.state_writer import LAZY_DELAY, StateWriter
from kink.engine import ChildRecord
from kink.engine.events import Address, SaLifetimes, SaTransform, Selector
from kink.wire.constants import ACKREQ_FLAG, MessageType
from kink.wire.header import HEADER

PEER: Address = ("192.0.2.2", 910)
PAIR: frozenset[SaId] = frozenset({("esp", 0x1001, "192.0.2.1"), ("esp", 0x2002, "192.0.2.2")})
OTHER: frozenset[SaId] = frozenset({("esp", 0x3003, "192.0.2.1"), ("esp", 0x4004, "192.0.2.2")})


def datagram(kind: MessageType, xid: int, *, ackreq: bool = False) -> bytes:
    flags = ACKREQ_FLAG if ackreq else 0
    return HEADER.pack(kind, 0x10, HEADER.size + 8, 1, xid, 0, flags, 0) + b"payload!"


def record(spi_in: int, spi_out: int) -> ChildRecord:
    return ChildRecord(
        peer="b",
        initiator=False,
        spis=((3, spi_in, spi_out),),
        mode="transport",
        reqid=0x10040,
        local=Selector(ip_network("192.0.2.1/32")),
        remote=Selector(ip_network("192.0.2.2/32")),
        send_ids=False,
        transforms=(SaTransform(3, "rfc4106(gcm(aes))", 128, 128, None, None),),
        life=SaLifetimes(0, 3600, 0, 0),
        pfs_group=None,
        peer_epoch=7,
        age=1.5,
        rekey_in=None,
    )


# ----------------------------------------------------------------------------- state file


def test_state_file_keeps_answers_with_their_children(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    answer = SavedAnswer(PEER, 0xABCD, b"\x03reply bytes", 1234.5)
    children = [
        SavedChild(record(0x1001, 0x2002), PAIR, answer),
        SavedChild(record(0x3003, 0x4004), OTHER),
    ]
    store.save(9, 1000.0, children)
    saved = store.load()
    assert saved is not None
    assert saved.epoch == 9 and saved.children == tuple(children)


def test_a_child_saved_again_keeps_its_times_right(tmp_path: Path) -> None:
    # The second save reuses the first one's entry (encoded as of 1000.0) for the same child,
    # now 30 s older; the record comes back as of the second save all the same.
    store = StateStore(tmp_path)
    first = replace(record(0x1001, 0x2002), age=1.5, rekey_in=100.0)
    store.save(9, 1000.0, [SavedChild(first, PAIR)])
    later = replace(first, age=31.5, rekey_in=70.0)
    store.save(9, 1030.0, [SavedChild(later, PAIR), SavedChild(record(0x3003, 0x4004), OTHER)])
    text = (tmp_path / "state.json").read_text()
    assert '"at":1000.0' in text and '"at":1030.0' in text
    saved = store.load()
    assert saved is not None and saved.saved_at == 1030.0
    assert saved.children == (SavedChild(later, PAIR), SavedChild(record(0x3003, 0x4004), OTHER))
    rekeyed_later = replace(later, rekey_in=75.0)  # rescheduled: encoded anew
    store.save(9, 1030.0, [SavedChild(rekeyed_later, PAIR)])
    saved = store.load()
    assert saved is not None and saved.children == (SavedChild(rekeyed_later, PAIR),)


def test_a_child_that_got_its_ack_is_saved_anew(tmp_path: Path) -> None:
    # A responder child awaiting the ACK is saved with its inbound SA only (RFC 4430 §3.2);
    # once the ACK came, the same SPIs make another entry, not the first one's again.
    store = StateStore(tmp_path)
    waiting = replace(record(0x1001, 0x2002), awaiting_ack=True)
    inbound = frozenset({("esp", 0x1001, "192.0.2.1")})
    store.save(9, 1000.0, [SavedChild(waiting, inbound)])
    saved = store.load()
    assert saved is not None and saved.children == (SavedChild(waiting, inbound),)
    acked = replace(waiting, awaiting_ack=False)
    store.save(9, 1000.0, [SavedChild(acked, PAIR)])
    saved = store.load()
    assert saved is not None and saved.children == (SavedChild(acked, PAIR),)


def test_unaccounted_sas_are_ours_and_not_kept() -> None:
    kernel = {
        ("esp", 0x1001, "192.0.2.1"): 0x10040,  # kept: a child taken over
        ("esp", 0x5005, "192.0.2.1"): 0x10040,  # optimistic inbound of a dead exchange
        ("esp", 0x6006, "192.0.2.1"): 0x10000,  # larval (alloc_spi)
        ("esp", 0x7007, "192.0.2.1"): 0x90000,  # another owner's reqid
    }
    ours = lambda reqid: 0x10000 <= reqid < 0x20000  # noqa: E731
    assert unaccounted(kernel, {("esp", 0x1001, "192.0.2.1")}, ours) == [
        ("esp", 0x5005, "192.0.2.1"),
        ("esp", 0x6006, "192.0.2.1"),
    ]


# -------------------------------------------------------------------------------- answers


def test_a_two_way_reply_is_kept_with_its_child_and_replayed_after_a_restart() -> None:
    answers = Answers(lifetime=60.0)
    answers.received(datagram(MessageType.CREATE, 5), PEER[0])
    answers.established(PAIR)
    reply = datagram(MessageType.REPLY, 5)
    assert answers.sent(reply, PEER, now=100.0)
    kept = answers.for_child(PAIR, now=101.0)
    assert kept == SavedAnswer(PEER, 5, reply, 160.0)

    restarted = Answers(lifetime=60.0)
    restarted.restore([SavedChild(record(0x1001, 0x2002), PAIR, kept)], {PAIR})
    assert restarted.replay(datagram(MessageType.CREATE, 5), PEER[0], now=102.0) == kept
    assert restarted.replay(datagram(MessageType.CREATE, 6), PEER[0], now=102.0) is None
    assert restarted.replay(datagram(MessageType.DELETE, 5), PEER[0], now=102.0) is None
    assert restarted.replay(datagram(MessageType.CREATE, 5), "192.0.2.9", now=102.0) is None
    assert restarted.for_child(PAIR, now=102.0) == kept  # saved again by the next kinkd
    assert restarted.replay(datagram(MessageType.CREATE, 5), PEER[0], now=161.0) is None


def test_no_answer_is_kept_for_three_way_refusals_or_strangers() -> None:
    answers = Answers(lifetime=60.0)
    answers.received(datagram(MessageType.CREATE, 1), PEER[0])
    answers.established(PAIR)
    assert not answers.sent(datagram(MessageType.REPLY, 1, ackreq=True), PEER, now=0.0)
    answers.received(datagram(MessageType.CREATE, 2), PEER[0])
    assert not answers.sent(datagram(MessageType.REPLY, 2), PEER, now=0.0)  # nothing installed
    answers.established(PAIR)
    assert not answers.sent(datagram(MessageType.REPLY, 3), PEER, now=0.0)  # no such CREATE
    answers.received(b"\x01short", PEER[0])
    assert not answers.sent(b"\x03", PEER, now=0.0)
    assert answers.for_child(PAIR, now=0.0) is None


def test_only_a_reply_with_ackreq_asks_for_an_ack() -> None:
    assert asks_ack(datagram(MessageType.REPLY, 1, ackreq=True))
    assert not asks_ack(datagram(MessageType.REPLY, 1))
    assert not asks_ack(datagram(MessageType.CREATE, 1))
    assert not asks_ack(b"\x03")


def test_an_answer_is_replayed_only_if_every_child_it_made_was_taken_over() -> None:
    answer = SavedAnswer(PEER, 5, b"reply", 100.0)
    children = [
        SavedChild(record(0x1001, 0x2002), PAIR, answer),
        SavedChild(record(0x3003, 0x4004), OTHER, answer),
    ]
    answers = Answers(lifetime=60.0)
    answers.restore(children, {PAIR})
    assert answers.replay(datagram(MessageType.CREATE, 5), PEER[0], now=0.0) is None
    assert answers.for_child(PAIR, now=0.0) is None


# ------------------------------------------------------------------------- state writer


@pytest.mark.trio
async def test_changes_made_during_a_write_share_the_next_write() -> None:
    gate = trio.Event()
    writes: list[int] = []
    durable: list[int] = []

    async def save() -> None:
        writes.append(writer.generation)
        await gate.wait()

    writer = StateWriter(save, durable.append)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        writer.changed()
        await trio.testing.wait_all_tasks_blocked()
        assert writes == [1]  # the first write is running
        for _ in range(50):
            writer.changed()
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert writes == [1, 51] and durable == [1, 51] and writer.durable == 51
        nursery.cancel_scope.cancel()


# -------------------------------------------------------------------------------- outbox


@pytest.mark.trio
async def test_a_datagram_waits_for_earlier_helper_calls_and_the_save() -> None:
    sent: list[bytes] = []

    async def send(data: bytes, peer: Address) -> None:
        sent.append(data)

    outbox = Outbox(send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.run)
        await outbox.post(b"free", PEER, 0)
        install = outbox.begin()
        await outbox.post(b"after-install", PEER, 0)
        await outbox.post(b"after-change", PEER, 1)
        later = outbox.begin()
        outbox.end(later)  # answered out of order: the earlier call still holds both
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [b"free"]
        outbox.end(install)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [b"free", b"after-install"]
        outbox.durable(1)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [b"free", b"after-install", b"after-change"]
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_lazy_change_is_saved_within_the_delay_or_with_the_next_change() -> None:
    saved_at: list[float] = []

    async def save() -> None:
        saved_at.append(trio.current_time())

    writer = StateWriter(save, lambda generation: None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        began = trio.current_time()
        writer.changed_lazily()
        with trio.fail_after(LAZY_DELAY * 3):
            while not saved_at:
                await trio.sleep(LAZY_DELAY / 10)
        assert saved_at[0] - began >= LAZY_DELAY
        writer.changed_lazily()
        writer.changed()  # a change a datagram waits for takes the lazy one along at once
        await trio.testing.wait_all_tasks_blocked()
        assert len(saved_at) == 2 and saved_at[1] - saved_at[0] < LAZY_DELAY
        nursery.cancel_scope.cancel()
