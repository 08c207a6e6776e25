"""The state file's compaction (kink.daemon.state): a long journal is replaced by a snapshot
written in its own thread while the saves go on appending (issue 9: no save waits for it), and
a kinkd killed at any point leaves a file that holds every durable batch."""

import json
import logging
import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from kink.daemon import state
from kink.daemon.state import STATE_FILE, SavedAnswer, SavedChild, StateStore
from kink.engine import StartAction
from tests.daemon.conftest import HostsFactory
from tests.daemon.harness import (
    matching_pairs,
    rekey_pair,
    sa_pairs,
    wait_for_a_pair,
)
from tests.daemon.saved import record

PEER = ("192.0.2.2", 910)
COMPACTING = "kinkd-compact"  # the compaction thread's name


class Killed(BaseException):
    """The process killed: nothing after this point runs (no handler catches it)."""


def child(n: int) -> SavedChild:
    sas = frozenset({("esp", 0x1000 + n, "192.0.2.1"), ("esp", 0x2000 + n, "192.0.2.2")})
    return SavedChild(record(0x1000 + n, 0x2000 + n), sas)


def loaded(directory: Path) -> dict[int, frozenset[state.SaId]]:
    """The SAs of each child of the file a restart reads, by its first SPI."""
    saved = StateStore(directory).load()
    assert saved is not None
    return {min(c.sas)[1] - 0x1000: c.sas for c in saved.children}


def expected(live: dict[int, SavedChild]) -> dict[int, frozenset[state.SaId]]:
    return {n: c.sas for n, c in live.items()}


def heads(directory: Path) -> list[dict[str, object]]:
    """The snapshot heads in the file (one: a file is one snapshot and batches)."""
    docs = [json.loads(line) for line in (directory / STATE_FILE).read_bytes().splitlines()]
    return [doc for doc in docs if "version" in doc]


def temporary(directory: Path) -> Path:
    return directory / (STATE_FILE + ".tmp")


class Gate:
    """Holds the compaction thread before its snapshot's fsync until open()."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> None:
        self.opened = threading.Event()
        self.reached = threading.Event()
        fsync = os.fsync

        def gated(fd: int) -> None:
            if threading.current_thread().name == COMPACTING:
                self.reached.set()
                # Bounded: a store that waited for the thread fails the test (its thread
                # gone when the save returns) instead of hanging it.
                self.opened.wait(timeout=30)
                if fail:
                    raise OSError(28, "No space left on device")
            fsync(fd)

        monkeypatch.setattr(os, "fsync", gated)

    def open(self) -> None:
        self.opened.set()


def compacting() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == COMPACTING]


def join_compaction() -> None:
    for thread in compacting():
        thread.join()


@pytest.fixture
def long(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file is long (a compaction due) once its batches pass twice its snapshot."""
    monkeypatch.setattr(state, "COMPACT_MIN", 0)


def long_journal(directory: Path) -> tuple[StateStore, dict[int, SavedChild]]:
    """A store whose file wants a compaction: a snapshot of children 1-3, then batches."""
    store = StateStore(directory)
    live = {n: child(n) for n in (1, 2, 3)}
    store.snapshot(9, 1000.0, live.items())
    n = 3
    while not store.wants_compaction(9):
        n += 1
        store.update(9, 1000.0 + n, {n: child(n)}, [n - 3])
        live[n] = child(n)
        del live[n - 3]
    assert not store.wants_snapshot(9)
    return store, live


def test_a_long_file_is_compacted_in_the_background_while_saves_append_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, long: None
) -> None:
    store, live = long_journal(tmp_path)
    before = heads(tmp_path)
    gate = Gate(monkeypatch)
    # The save that finds the compaction due: its batch, and every child after it.
    live[100] = child(100)
    store.update(9, 1100.0, {100: child(100)}, [], compact=dict(live).items())
    compacted = len(live)
    gate.reached.wait(timeout=30)
    assert loaded(tmp_path) == expected(live)  # the batch is durable in the file
    assert not store.wants_compaction(9) and not store.wants_snapshot(9)
    # Saves while the snapshot is written: appended, durable, not held by it.
    for n in (101, 102):
        gone = min(live)
        live[n] = child(n)
        del live[gone]
        store.update(9, 1000.0 + n, {n: child(n)}, [gone])
        assert compacting()  # the snapshot's write still held: the save did not wait for it
        assert loaded(tmp_path) == expected(live)  # killed now: the old file, complete
    assert heads(tmp_path) == before
    gate.open()
    join_compaction()
    assert loaded(tmp_path) == expected(live)  # written, not yet the file
    assert temporary(tmp_path).exists()
    # The next save makes it the file: the snapshot, the tail (101, 102) and its own batch.
    live[103] = replace(child(103), answer=SavedAnswer(PEER, 7, b"\x03reply", 2000.0))
    store.update(9, 1103.0, {103: live[103]}, [])
    assert heads(tmp_path) == [{"version": 6, "epoch": 9, "saved_at": 1100.0}]
    assert len((tmp_path / STATE_FILE).read_bytes().splitlines()) == 1 + compacted + 1 + 3
    assert loaded(tmp_path) == expected(live)
    saved = store.load()
    assert saved is not None and saved.children[-1].answer == live[103].answer
    assert not temporary(tmp_path).exists()
    # And it is the journal from then on.
    store.update(9, 1104.0, {}, [103])
    del live[103]
    assert loaded(tmp_path) == expected(live)
    assert not store.wants_compaction(9)


def test_a_kinkd_killed_as_the_compaction_ends_leaves_the_old_file_or_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, long: None
) -> None:
    store, live = long_journal(tmp_path)
    gate = Gate(monkeypatch)
    store.update(9, 1100.0, {}, [], compact=dict(live).items())
    gate.reached.wait(timeout=30)
    live[101] = child(101)
    store.update(9, 1101.0, {101: child(101)}, [])  # the tail
    gate.open()
    join_compaction()
    durable = expected(live)
    renamed = tmp_path / "renamed"
    renamed.mkdir()

    def killed(src: Path, dst: Path) -> None:  # as the rename would happen
        (renamed / STATE_FILE).write_bytes(Path(src).read_bytes())
        raise Killed

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(Killed):
        store.update(9, 1102.0, {102: child(102)}, [])
    # Killed before the rename: the old file, every durable batch in it (not the last one,
    # whose save never returned: its datagrams never left).
    assert loaded(tmp_path) == durable
    # Killed after it: the new file, the snapshot and every batch since, the last one too.
    live[102] = child(102)
    assert loaded(renamed) == expected(live)
    assert len(heads(renamed)) == 1


def test_a_compaction_whose_write_fails_is_abandoned_and_the_next_save_is_a_snapshot(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    long: None,
) -> None:
    store, live = long_journal(tmp_path)
    gate = Gate(monkeypatch, fail=True)
    store.update(9, 1100.0, {}, [], compact=dict(live).items())
    gate.open()
    join_compaction()
    live[101] = child(101)
    with caplog.at_level(logging.ERROR, logger="kinkd"):
        store.update(9, 1101.0, {101: child(101)}, [])  # appended to the old file
    assert "cannot compact the state file" in caplog.text
    assert loaded(tmp_path) == expected(live)
    assert not temporary(tmp_path).exists()
    assert store.wants_snapshot(9)  # the file is still long: written at the next save
    store.snapshot(9, 1102.0, live.items())
    assert not store.wants_snapshot(9) and not store.wants_compaction(9)
    assert loaded(tmp_path) == expected(live)


def started(directory: Path, monkeypatch: pytest.MonkeyPatch) -> StateStore:
    """A store with a compaction started, its thread let go on (what abandons the compaction
    waits for it)."""
    store, live = long_journal(directory)
    gate = Gate(monkeypatch)
    store.update(9, 1100.0, {}, [], compact=dict(live).items())
    gate.reached.wait(timeout=30)
    gate.open()
    return store


def test_another_epoch_abandons_a_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, long: None
) -> None:
    store = started(tmp_path, monkeypatch)
    store.snapshot(10, 1200.0, [(1, child(1))])
    assert not compacting() and not temporary(tmp_path).exists()
    store.update(10, 1201.0, {2: child(2)}, [])  # appended: the compaction's file never used
    saved = store.load()
    assert saved is not None and saved.epoch == 10 and loaded(tmp_path).keys() == {1, 2}


def test_a_failed_save_abandons_a_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, long: None
) -> None:
    store = started(tmp_path, monkeypatch)

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "write", full)
        with pytest.raises(OSError):
            store.update(9, 1200.0, {200: child(200)}, [])
    assert not compacting() and not temporary(tmp_path).exists()
    assert store.wants_snapshot(9)
    store.update(9, 1201.0, {1: child(1)}, [])  # the snapshot: every child
    assert loaded(tmp_path).keys() == {1} and len(heads(tmp_path)) == 1


def test_close_abandons_a_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, long: None
) -> None:
    store = started(tmp_path, monkeypatch)
    store.close()
    assert not compacting() and not temporary(tmp_path).exists()
    assert store.wants_snapshot(9)


@pytest.mark.trio
async def test_a_kinkd_compacts_its_file_without_a_snapshot_at_a_save_and_takes_it_back(
    make_hosts: HostsFactory, monkeypatch: pytest.MonkeyPatch, long: None
) -> None:
    """The daemon's saves: each rekey's batch still has only what changed, the compaction
    every child; a kinkd killed after compactions takes its pair back from the file."""
    snapshots: list[tuple[Path, float]] = []
    snapshot = StateStore.snapshot

    def counted(self: StateStore, epoch: int, saved_at: float, children: object) -> None:
        snapshots.append((self.path, saved_at))
        snapshot(self, epoch, saved_at, children)  # type: ignore[arg-type]

    monkeypatch.setattr(StateStore, "snapshot", counted)
    hosts = make_hosts(a={"b": StartAction.START}, b={"a": StartAction.NONE})
    a, b = hosts["a"], hosts["b"]
    path = a.config.daemon.state_dir / STATE_FILE
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        async with trio.open_nursery() as doomed:
            await a.start(doomed)
            await wait_for_a_pair(a, b)
            for _ in range(3):
                await rekey_pair(a, b)
                await trio.to_thread.run_sync(join_compaction)
            sas = await a.request("sas")
            doomed.cancel_scope.cancel()  # killed: nothing saved at the stop
        (first,) = [at for p, at in snapshots if p == path]  # a's: its first save's
        (head,) = heads(a.config.daemon.state_dir)
        assert head["saved_at"] != first  # compacted, with no snapshot but the first save's
        for line in path.read_bytes().splitlines():
            assert len(json.loads(line).get("set", ())) <= 2  # a rekey's batch: what changed

        await a.start(nursery)
        assert sa_pairs(await a.request("sas")) == sa_pairs(sas)
        assert matching_pairs(a, b) == 2
        await a.stop()
        await b.stop()
