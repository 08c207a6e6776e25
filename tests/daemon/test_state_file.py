"""The state file (kink.daemon.state): a journal of a snapshot, a child per line, and batches;
read a line at a time; a torn tail ignored; files of versions 2 to 5 read for the upgrade; the
epoch kept while the saved SAs are in the kernel (RFC 4430 §3.7)."""

import contextlib
import gc
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from kink.daemon import state
from kink.daemon.state import (
    STATE_FILE,
    Saved,
    SavedAnswer,
    SavedChild,
    SavedEntry,
    StateError,
    StateStore,
    choose_epoch,
    unaccounted,
)
from kink.engine.events import Address
from tests.daemon.saved import OTHER, PAIR, record

PEER: Address = ("192.0.2.2", 910)


def child(n: int) -> SavedChild:
    sas = frozenset({("esp", 0x1000 + n, "192.0.2.1"), ("esp", 0x2000 + n, "192.0.2.2")})
    return SavedChild(record(0x1000 + n, 0x2000 + n), sas)


def lines(path: Path) -> list[bytes]:
    return (path / STATE_FILE).read_bytes().split(b"\n")


def as_of(saved: Saved, when: float) -> tuple[SavedChild, ...]:
    """The children of `saved` with their records as of `when`."""
    aged = when - saved.saved_at
    return tuple(
        replace(
            c,
            record=replace(
                c.record,
                age=c.record.age + aged,
                rekey_in=None if c.record.rekey_in is None else c.record.rekey_in - aged,
            ),
        )
        for c in saved.children
    )


def test_a_snapshot_is_a_child_per_line_between_its_head_and_its_end(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    answer = SavedAnswer(PEER, 0xABCD, b"\x03reply bytes", 1234.5)
    children = [(4, replace(child(1), answer=answer)), (9, child(2))]
    store.snapshot(9, 1000.0, iter(children))  # an iterator: taken a child at a time
    head, first, second, end, last = lines(tmp_path)
    assert json.loads(head) == {"version": 6, "epoch": 9, "saved_at": 1000.0}
    assert [json.loads(first)["id"], json.loads(second)["id"]] == [4, 9]
    assert json.loads(end) == {"children": 2} and last == b""
    assert not (tmp_path / (STATE_FILE + ".tmp")).exists()
    saved = store.load()
    assert saved is not None and saved.epoch == 9 and saved.saved_at == 1000.0
    assert saved.children == tuple(c for _, c in children)


def test_a_journal_of_batches_gives_the_state_of_the_last_one(tmp_path: Path) -> None:
    # The first update writes a snapshot; each later one appends one batch (a line). The
    # records come back as of the snapshot's time: a child saved 30 s later is 30 s younger.
    store = StateStore(tmp_path)
    first = replace(record(0x1001, 0x2002), rekey_in=100.0)
    store.update(9, 1000.0, {1: SavedChild(first, PAIR)}, [])
    store.update(9, 1030.0, {2: SavedChild(record(0x3003, 0x4004), OTHER)}, [])
    store.update(9, 1030.0, {}, [])  # nothing changed: nothing written
    assert len(lines(tmp_path)) == 3 + 1 + 1
    saved = store.load()
    assert saved is not None and saved.saved_at == 1000.0
    assert as_of(saved, 1030.0) == (
        SavedChild(replace(first, age=31.5, rekey_in=70.0), PAIR),
        SavedChild(record(0x3003, 0x4004), OTHER),
    )
    store.update(9, 1040.0, {}, [1, 77])  # 77: never saved
    saved = store.load()
    assert saved is not None
    assert as_of(saved, 1040.0) == (SavedChild(replace(record(0x3003, 0x4004), age=11.5), OTHER),)


def test_a_child_that_got_its_ack_is_saved_anew(tmp_path: Path) -> None:
    # A responder child awaiting the ACK is saved with its inbound SA only (RFC 4430 §3.2);
    # once the ACK came, its entry is replaced by one with both.
    store = StateStore(tmp_path)
    waiting = replace(record(0x1001, 0x2002), awaiting_ack=True)
    inbound = frozenset({("esp", 0x1001, "192.0.2.1")})
    store.update(9, 1000.0, {5: SavedChild(waiting, inbound)}, [])
    saved = store.load()
    assert saved is not None and saved.children == (SavedChild(waiting, inbound),)
    acked = replace(waiting, awaiting_ack=False)
    store.update(9, 1000.0, {5: SavedChild(acked, PAIR)}, [])
    saved = store.load()
    assert saved is not None and saved.children == (SavedChild(acked, PAIR),)


@pytest.mark.parametrize(
    "tail",
    [b'{"saved_at":1020.0,"set":[{"id":3,"rec', b"\0" * 64, b'{"saved_at":1020.0,"se\n'],
)
def test_a_batch_cut_short_is_ignored(tmp_path: Path, tail: bytes) -> None:
    # A save killed in its write (or a file system that shows zeros past the last write):
    # the state of the saves that completed.
    store = StateStore(tmp_path)
    store.update(9, 1000.0, {1: child(1)}, [])
    store.update(9, 1010.0, {2: child(2)}, [])
    whole = store.load()
    assert whole is not None and len(whole.children) == 2
    with (tmp_path / STATE_FILE).open("ab") as f:
        f.write(tail)
    assert StateStore(tmp_path).load() == whole


def test_a_damaged_line_before_another_is_a_damaged_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.update(9, 1000.0, {1: child(1)}, [])
    store.update(9, 1010.0, {2: child(2)}, [])
    batch = lines(tmp_path)[4]
    with (tmp_path / STATE_FILE).open("ab") as f:
        f.write(b'{"saved_at":1020.0,"se\n' + batch + b"\n")
    with pytest.raises(StateError):
        StateStore(tmp_path).load()


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_a_snapshot_cut_short_is_a_damaged_file(tmp_path: Path, keep: int) -> None:
    # Written whole and renamed, a snapshot is never cut short: lines missing (here the end,
    # or children and the end) are damage, not a torn save.
    StateStore(tmp_path).snapshot(9, 1000.0, [(1, child(1)), (2, child(2))])
    (tmp_path / STATE_FILE).write_bytes(b"\n".join(lines(tmp_path)[:keep]) + b"\n")
    with pytest.raises(StateError):
        StateStore(tmp_path).load()


def test_a_snapshot_without_some_of_its_children_is_a_damaged_file(tmp_path: Path) -> None:
    StateStore(tmp_path).snapshot(9, 1000.0, [(1, child(1)), (2, child(2))])
    head, first, _, end, _ = lines(tmp_path)
    (tmp_path / STATE_FILE).write_bytes(b"\n".join((head, first, end)) + b"\n")
    with pytest.raises(StateError, match="without some"):
        StateStore(tmp_path).load()


def test_a_snapshot_is_wanted_first_after_a_failure_and_for_another_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long file is compacted without a snapshot at a save: test_state_compaction.
    store = StateStore(tmp_path)
    assert store.wants_snapshot(9)
    store.snapshot(9, 1000.0, [(1, child(1))])
    assert not store.wants_snapshot(9) and store.wants_snapshot(10)
    for n in range(2, 12):  # each batch replaces child n - 1 by child n
        store.update(9, 1000.0 + n, {n: child(n)}, [n - 1])
    assert not store.wants_snapshot(9) and not store.wants_compaction(9)
    saved = store.load()
    assert saved is not None and [c.sas for c in saved.children] == [child(11).sas]

    write = os.write

    def full(fd: int, data: bytes) -> int:  # part of the batch written, then no room
        write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "write", full)
        with pytest.raises(OSError):
            store.update(9, 1030.0, {12: child(12)}, [11])
    assert store.wants_snapshot(9)  # whatever of the batch reached the disk...
    store.update(9, 1040.0, {12: child(12)}, [])  # ... the next save replaces: a snapshot
    assert len(lines(tmp_path)) == 3 + 1
    again = store.load()
    assert again is not None and again.saved_at == 1040.0 and again.children == (child(12),)


def test_a_failed_snapshot_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateStore(tmp_path)
    store.update(9, 1000.0, {1: child(1)}, [])
    store.update(9, 1010.0, {2: child(2)}, [])
    before = (tmp_path / STATE_FILE).read_bytes()

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    def children() -> Iterator[tuple[int, SavedChild]]:
        yield 3, child(3)
        raise RuntimeError("the engine went away")

    with pytest.raises(RuntimeError):
        store.snapshot(10, 1020.0, children())
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", full)
        with pytest.raises(OSError):
            store.snapshot(10, 1020.0, [(3, child(3))])
    assert (tmp_path / STATE_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]
    assert store.wants_snapshot(9)


def test_an_answer_is_kept_for_later_snapshots_until_it_expires(tmp_path: Path) -> None:
    # The caller of a snapshot has only the answers not saved yet (kink.daemon.answers):
    # the store keeps those it saved, for its child id, until they expire.
    store = StateStore(tmp_path)
    answer = SavedAnswer(PEER, 0xABCD, b"\x03reply", 1050.0)
    store.snapshot(9, 1000.0, [(1, child(1))])
    store.update(9, 1010.0, {2: replace(child(2), answer=answer), 3: child(3)}, [])
    store.snapshot(9, 1020.0, [(1, child(1)), (2, child(2)), (3, child(3))])
    saved = store.load()
    assert saved is not None
    assert [c.answer for c in saved.children] == [None, answer, None]
    store.update(9, 1030.0, {}, [2])  # gone: its answer with it
    store.snapshot(9, 1040.0, [(1, child(1)), (2, child(2))])
    saved = store.load()
    assert saved is not None and [c.answer for c in saved.children] == [None, None]
    store.update(9, 1045.0, {4: replace(child(4), answer=answer)}, [])
    store.snapshot(9, 1060.0, [(4, child(4))])  # expired by then: left out
    saved = store.load()
    assert saved is not None and saved.children == (child(4),)


def test_a_restart_reads_back_exactly_what_was_saved(tmp_path: Path) -> None:
    # Many saves of every kind: the file read back is the state of the last one.
    store = StateStore(tmp_path)
    live = {n: child(n) for n in range(50)}
    store.snapshot(9, 1000.0, live.items())
    for n in range(50, 200):
        changed = {n: child(n), n - 49: replace(child(n - 49), answer=None)}
        gone = [n - 50, n + 1000]
        store.update(9, 1000.0, changed, gone)
        live.update(changed)
        for child_id in gone:
            live.pop(child_id, None)
        if n % 60 == 0:
            store.snapshot(9, 1000.0, live.items())
    saved = StateStore(tmp_path).load()
    assert saved is not None and saved.children == tuple(live.values())


def test_a_version_5_file_is_read_and_replaced_at_the_first_save(tmp_path: Path) -> None:
    # The journal of before: the snapshot on its first line, then batches.
    answer = SavedAnswer(PEER, 0xABCD, b"\x03reply", 2000.0)
    entry = {"id": 1, "record": record(0x1001, 0x2002).to_dict(), "sas": sorted(PAIR)}
    snapshot = {
        "version": 5,
        "epoch": 9,
        "saved_at": 1000.0,
        "children": [{**entry, "at": 1000.0, "answer": answer.to_dict()}],
    }
    batch = {
        "saved_at": 1030.0,
        "set": [{"id": 2, "record": record(0x3003, 0x4004).to_dict(), "sas": sorted(OTHER)}],
        "del": [],
    }
    text = json.dumps(snapshot) + "\n" + json.dumps(batch) + "\n" + '{"saved_at":1040.0,"s'
    (tmp_path / STATE_FILE).write_text(text)
    saved = StateStore(tmp_path).load()
    assert saved is not None and saved.epoch == 9 and saved.saved_at == 1000.0
    assert saved.children == (
        SavedChild(record(0x1001, 0x2002), PAIR, answer),
        SavedChild(record(0x3003, 0x4004), OTHER),
    )
    store = StateStore(tmp_path)
    assert store.wants_snapshot(9)
    store.update(9, 1000.0, dict(enumerate(saved.children)), [])
    assert json.loads(lines(tmp_path)[0])["version"] == 6
    again = store.load()
    assert again is not None and again.children == saved.children


def test_a_version_4_file_is_read_and_replaced_at_the_first_save(tmp_path: Path) -> None:
    # What kinkd wrote before the journal: one document, entries without ids.
    answer = SavedAnswer(PEER, 0xABCD, b"\x03reply", 2000.0)
    old = {
        "version": 4,
        "epoch": 9,
        "saved_at": 1030.0,
        "children": [
            {
                "record": record(0x1001, 0x2002).to_dict(),
                "sas": sorted(PAIR),
                "at": 1000.0,
                "answer": answer.to_dict(),
            },
            {"record": record(0x3003, 0x4004).to_dict(), "sas": sorted(OTHER), "at": 1030.0},
        ],
    }
    (tmp_path / STATE_FILE).write_text(json.dumps(old))
    saved = StateStore(tmp_path).load()
    assert saved is not None and saved.epoch == 9 and saved.saved_at == 1030.0
    assert saved.children == (
        SavedChild(replace(record(0x1001, 0x2002), age=31.5), PAIR, answer),
        SavedChild(record(0x3003, 0x4004), OTHER),
    )
    store = StateStore(tmp_path)
    store.update(9, 1040.0, dict(enumerate(saved.children)), [])
    assert json.loads(lines(tmp_path)[0])["version"] == 6
    again = store.load()  # the records as given, as of 1040.0
    assert again is not None and again.children == saved.children


@pytest.mark.parametrize(
    "text", [b"", b"damaged\n", b'{"version":7,"epoch":1,"saved_at":0}\n', b"[1]\n"]
)
def test_what_is_not_a_state_file_is_refused(tmp_path: Path, text: bytes) -> None:
    (tmp_path / STATE_FILE).write_bytes(text)
    with pytest.raises(StateError):
        StateStore(tmp_path).load()


def test_loading_leaves_the_cycle_collector_as_it_found_it(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.update(9, 1000.0, {1: child(1)}, [])
    assert gc.isenabled()
    assert store.load() is not None and gc.isenabled()
    (tmp_path / STATE_FILE).write_bytes(b"damaged\n")
    with pytest.raises(StateError):
        store.load()
    assert gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(StateError):
            store.load()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_addresses_and_protocols_of_saved_sas_are_shared(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.snapshot(9, 1000.0, [(1, child(1)), (2, child(2))])
    saved = store.load()
    assert saved is not None
    first, second = (sorted(c.sas) for c in saved.children)
    assert all(a[0] is b[0] and a[2] is b[2] for a, b in zip(first, second, strict=True))


def test_the_epoch_is_kept_while_a_saved_sa_is_in_the_kernel() -> None:
    saved = Saved(9, 1000.0, tuple(SavedEntry(tuple(c.sas), b"") for c in (child(1), child(2))))
    assert choose_epoch(saved, {("esp", 0x2002, "192.0.2.2")}, 5000.0) == (
        9,
        "SAs still in the kernel",
    )
    assert choose_epoch(Saved(9, 1000.0, ()), set(), 5000.0) == (9, "no SAs to lose")
    assert choose_epoch(saved, set(), 5000.0) == (5000, "SA state lost")
    assert choose_epoch(saved, set(), 9.5) == (10, "SA state lost")  # never the old one
    assert choose_epoch(None, set(), 5000.0) == (5000, "no saved state")


def test_unaccounted_sas_are_ours_and_not_kept() -> None:
    kernel = {
        ("esp", 0x1001, "192.0.2.1"): 0x10040,  # kept: a child taken over
        ("esp", 0x5005, "192.0.2.1"): 0x10040,  # optimistic inbound of a dead exchange
        ("esp", 0x6006, "192.0.2.1"): 0x10000,  # larval (alloc_spi: a CREATE with KE)
        ("esp", 0x7007, "192.0.2.1"): 0x90000,  # another owner's reqid
    }
    ours = lambda reqid: 0x10000 <= reqid < 0x20000  # noqa: E731
    assert unaccounted(kernel, {("esp", 0x1001, "192.0.2.1")}, ours) == [
        ("esp", 0x5005, "192.0.2.1"),
        ("esp", 0x6006, "192.0.2.1"),
    ]


def test_an_entry_is_read_only_when_its_child_is_wanted(tmp_path: Path) -> None:
    # The file is read whole at load (its SAs, its ids, its JSON); a record that cannot be
    # made (another kinkd's, a damaged one) fails only that child.
    store = StateStore(tmp_path)
    store.snapshot(9, 1000.0, [(1, child(1)), (2, child(2))])
    head, first, second, end, _ = lines(tmp_path)
    entry = json.loads(second)
    entry["record"]["mode"] = "beet"
    damaged = json.dumps(entry).encode()
    (tmp_path / STATE_FILE).write_bytes(b"\n".join((head, first, damaged, end)) + b"\n")
    saved = StateStore(tmp_path).load()
    assert saved is not None and [e.sas for e in saved.entries] == [
        tuple(sorted(child(1).sas)),
        tuple(sorted(child(2).sas)),
    ]
    assert saved.entries[0].child(saved.saved_at) == child(1)
    with pytest.raises(StateError, match="not a saved child"):
        saved.entries[1].child(saved.saved_at)


def test_batches_go_to_the_file_kept_open_since_its_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch is a write and an fdatasync of the file the snapshot left open: no open per
    # save (a system call of 22-35 us in user-mode Linux, issue 9).
    store = StateStore(tmp_path)
    store.update(9, 1000.0, {1: child(1)}, [])

    def no_open(*args: object, **kwargs: object) -> int:
        raise AssertionError("the state file opened again")

    with monkeypatch.context() as m:
        m.setattr(os, "open", no_open)
        store.update(9, 1000.0, {2: child(2)}, [])
        store.update(9, 1000.0, {}, [1])
    saved = StateStore(tmp_path).load()
    assert saved is not None and saved.children == (child(2),)
    # Durable as each write returns: the file is open for synchronized data writes.
    (flags,) = [
        int(fdinfo.read_text().split("flags:")[1].split()[0], 8)
        for fd, fdinfo in _descriptors()
        if fd.resolve() == (tmp_path / STATE_FILE).resolve()
    ]
    assert flags & os.O_DSYNC == os.O_DSYNC and flags & os.O_APPEND
    store.close()
    assert not [fd for fd, _ in _descriptors() if fd.resolve() == (tmp_path / STATE_FILE).resolve()]
    assert store.wants_snapshot(9)  # a later save starts the file anew


def _descriptors() -> list[tuple[Path, Path]]:
    """This process's open files: (/proc/self/fd/N, /proc/self/fdinfo/N)."""
    out = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # gone meanwhile (the listing's own)
            fd.resolve(strict=True)
            out.append((fd, Path("/proc/self/fdinfo") / fd.name))
    return out


def _removed(path: Path) -> None:
    path.unlink()


def _replaced(path: Path) -> None:
    other = path.with_name("by-hand")
    other.write_bytes(b"")
    other.replace(path)


def _linked(path: Path) -> None:
    os.link(path, path.with_name("backup"))


@pytest.mark.parametrize("by_hand", [_removed, _replaced, _linked])
def test_a_file_removed_or_replaced_by_hand_fails_the_next_batch_and_a_snapshot_follows(
    tmp_path: Path, by_hand: object
) -> None:
    # The batch would go to a file a restart does not read (removed, or replaced by a
    # rename), or to one another name shares (a hard link): the save fails, as one to a file
    # opened by its path that is gone; the writer's retry is a snapshot of every child.
    store = StateStore(tmp_path)
    store.update(9, 1000.0, {1: child(1)}, [])
    assert callable(by_hand)
    by_hand(tmp_path / STATE_FILE)
    with pytest.raises(FileNotFoundError, match="removed or replaced"):
        store.update(9, 1010.0, {2: child(2)}, [])
    assert store.wants_snapshot(9)
    store.update(9, 1020.0, {1: child(1), 2: child(2)}, [])
    saved = StateStore(tmp_path).load()
    assert saved is not None and saved.saved_at == 1020.0
    assert saved.children == (child(1), child(2))


@pytest.mark.parametrize("with_answer", [False, True])
def test_an_entry_is_the_json_its_document_encodes_to(with_answer: bool) -> None:
    """_entry writes its line directly (issue 9): the text json.dumps would write of it."""
    answer = SavedAnswer(PEER, 0xABCD, b"\x03reply bytes", 1234.5) if with_answer else None
    # Eight SAs: their set's order is almost never the sorted one the file holds.
    sas = frozenset(
        (proto, 0x1000 + n, f"192.0.2.{n}") for n in range(4) for proto in ("ah", "esp")
    )
    saved = replace(child(3), sas=sas, answer=answer)
    doc = {
        "id": 7,
        "record": saved.record.to_dict(),
        "sas": sorted(saved.sas),
        "at": 1795844228.4452991,
    }
    if answer is not None:
        doc["answer"] = answer.to_dict()
    text = json.dumps(doc, separators=(",", ":")).encode()
    assert state._entry(7, saved, 1795844228.4452991, answer) == text
