"""The state kinkd keeps across restarts: its epoch and the SAs it has in the kernel.

RFC 4430 §3.7: the epoch tells peers whether we lost our SAs. A restart or upgrade of kinkd that
finds its SAs still in the kernel is no loss, so it keeps the epoch and takes the SAs over
(Engine.restore, from the engine's ChildRecords saved here with their kernel SAs and the wall
clock time they were recorded at); a reboot or a flush is a loss, so a new epoch starts. The
children are saved after the set of SAs changes, before the datagram that follows the change
leaves (kink.daemon.state_writer). A responder child carries the REPLY that answered its CREATE
while the initiator may still retransmit that CREATE (kink.daemon.answers): a restarted kinkd
answers the retransmission with it. A responder child of a 3-way CREATE is saved before its
REPLY (ACKREQ) leaves, with its inbound SAs only (the outbound one waits for the ACK, §3.2): a
restarted kinkd takes it over to DELETE it (§3.3), since the ACK went to the old process and the
initiator may hold the pair.

The file (version 6) is a journal: with 10,000s of children and a save per batch of exchanges,
rewriting every child at each save made a save cost the whole state (issue 9: 60 MB at 100,000
children); a save costs what changed. One JSON document per line:

  {"version":6,"epoch":E,"saved_at":T}                    the snapshot: its head,
  ENTRY                                                    a line per child,
  {"children":N}                                           and its end (N: the lines above)
  {"saved_at":T,"set":[ENTRY,...],"del":[ID,...]}          a batch, one per save

  ENTRY = {"id":ID,"record":ChildRecord.to_json(),"sas":[[proto,spi,dst],...],"at":T0
           [,"answer":{"to":[host,port],"xid":X,"reply":base64,"until":T1}]}

ID is the child's id in the engine that wrote it (never reused by that engine); T, T0, T1 are
wall clock times (time.time()): a record's age and time to rekey are as of T0, the time it was
recorded at. Loading reads the snapshot, then applies each batch in order (an entry replaces
the one of its id, "del" drops ids), a line at a time: a child each, with 100,000s of them, not
one document parsed whole (issue 9: that parse was kinkd's largest peak of memory, some 4 KB
of objects per child, at every restart). It keeps each entry's SAs and its text, read into a
child only as the engine takes it over (SavedEntry). The records come back as of the
snapshot's T (an entry of a later batch, younger by T0 - T, may have a negative age). A batch
is appended by one save, as one line, durable as its write returns (O_DSYNC, to the file kept
open since its snapshot; one removed or replaced by hand meanwhile is noticed at the next save:
StateStore.update), so it counts whole or not at all: a last line cut short (no newline, or
not JSON) is a save that never completed, whose datagrams therefore never left, and is
ignored. Each process starts with a snapshot (its first save: the ids are its engine's), and
writes a new one after a failed write and if the epoch changed (wants_snapshot: the caller then
gives every child). A snapshot is written whole (temporary file, fsync, rename, fsync of the
directory) and streamed, an entry at a time, with the answers not expired by then (a restarted
kinkd ignores expired ones, kink.daemon.answers): the store keeps no copy of the children, only
the answers of young responder children.

Once the batches appended pass COMPACT_FACTOR times the size of the last snapshot (at least
COMPACT_MIN), the file is compacted without holding up a save (wants_compaction). A snapshot
written at a save took 11.5-38 ms of disk waits here, and saves are one at a time: every REPLY
waiting for a save behind it waited that long, at 1,000 rekeys/s the slowest 1% (issue 9). So:
 1. the save that finds it due (update(..., compact=every child as of after its batch)) appends
    its batch to the file as any other, durable at its return; then
 2. its own thread writes the snapshot of those children to the temporary file and fsyncs it,
    while the saves go on appending their batches to the file (durable there), each batch also
    kept in memory (the tail);
 3. the first save after that write ended appends the tail and its own batch to the temporary
    file in one write (O_DSYNC), renames it over the file, fsyncs the directory, and appends
    to the new file from then on: two syncs, never the snapshot's writing (bench_exchange at
    1,000/s, 64 SA pairs: that save took 5.2 ms, 3.7-11.1, where the snapshot took 8.6,
    6.0-15.3, medians of 24; saves alone with 5,000 children: 5.3 ms against 54).
A kinkd killed at any point leaves the old file, with every durable batch (the temporary file
is never read), or the new one: the snapshot and every batch after it (those of the tail, and
the last save's, which is durable only once the rename is). A failure (the snapshot's write, a
failed save, another epoch, close()) abandons the compaction; after a failed write of the
snapshot the next save is a snapshot (wants_snapshot), written then.

Version 5 was the same journal with the snapshot on its first line, {"version":5,"epoch",
"saved_at","children":[ENTRY,...]}; versions 2 to 4 were one JSON document, {"version","epoch",
"saved_at","children":[ENTRY without "id"]} (3: no "at", every record as of saved_at; 2: no
answers either). They are read for an upgrade, and replaced by a snapshot at the first save.

Kernel SAs kink owns that the file does not account for are deleted at start-up (unaccounted):
those of a kinkd killed between an install and the save, whose datagram (the REPLY or ACK that
commits them) had therefore not left, and the initiator's optimistic inbound SA of a CREATE
that was in flight (RFC 4430 §3.2): nothing would rekey or DELETE them.
"""

import base64
import contextlib
import errno
import gc
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _string
from pathlib import Path
from typing import Any

from kink.engine import ChildRecord
from kink.engine.events import Address
from kink.engine.records import json_number

log = logging.getLogger("kinkd")

STATE_FILE = "state.json"
_VERSION = 6
_READABLE = (2, 3, 4, 5, 6)
# JSON without blanks, by one encoder: json.dumps with options makes an encoder at each call
# (about 1 of a child entry's 12-15 us; the write thread encodes 1,000s a second, issue 9).
_encode = json.JSONEncoder(separators=(",", ":")).encode
COMPACT_FACTOR = 2  # a compaction once the batches appended pass this times the last snapshot
# ... and this many bytes. A responder with 64 SA pairs at 1,000 rekeys/s (~1.3 KB of batches a
# rekey) compacts every ~3 s; a restart reads at most 4 MiB of batches (and the tail of a
# compaction running) on top of the last snapshot (~0.1 s with 64 children; a larger state's
# snapshot sets the limit, COMPACT_FACTOR).
COMPACT_MIN = 4 << 20
WRITE_BUFFER = 1 << 16  # bytes of a snapshot written at a time

SaId = tuple[str, int, str]  # ("esp" | "ah", spi, destination address): an SA in the kernel


@dataclass(frozen=True)
class SavedAnswer:
    """The REPLY (authenticated, encrypted: no keys in clear) that answered the CREATE of XID
    from `to`, to be sent again for a retransmission of that CREATE until `until` (wall
    clock)."""

    to: Address
    xid: int
    reply: bytes = field(repr=False)
    until: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "to": list(self.to),
            "xid": self.xid,
            "reply": base64.b64encode(self.reply).decode(),
            "until": self.until,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "SavedAnswer":
        host, port = doc["to"]
        xid, until = doc["xid"], doc["until"]
        if type(xid) is not int or type(until) not in (int, float):
            raise ValueError("bad answer")
        return cls((str(host), int(port)), xid, base64.b64decode(doc["reply"]), float(until))


@dataclass(frozen=True, slots=True)
class SavedChild:
    """An engine child, the kernel SAs (both directions) that make it up and, for a young
    responder child, the REPLY that created it."""

    record: ChildRecord
    sas: frozenset[SaId]
    answer: SavedAnswer | None = None


@dataclass(frozen=True, slots=True)
class SavedEntry:
    """A child as the state file holds it: its kernel SAs, read with the file, and its entry's
    text, read into a SavedChild only when the child is taken over (child()). Why: 100,000s of
    children read whole before the engine took them were kinkd's largest peak of memory, and
    the engine's objects, made among theirs, kept most of it from the system once they went
    (issue 9); an entry's text is one block, that goes whole."""

    sas: tuple[SaId, ...]
    text: bytes = field(repr=False)

    def child(self, saved_at: float) -> SavedChild:
        """The child, its record as of saved_at; StateError if the entry cannot be read."""
        try:
            return _saved_child(json.loads(self.text), self.sas, saved_at)
        except (ValueError, KeyError, TypeError) as exc:  # RecordError, binascii.Error too
            raise StateError(f"not a saved child ({exc})") from None


@dataclass(frozen=True)
class Saved:
    epoch: int
    saved_at: float  # time.time() the records are as of: the children aged since
    entries: tuple[SavedEntry, ...]

    @property
    def children(self) -> tuple[SavedChild, ...]:
        """Every child, read (StateError if one cannot be)."""
        return tuple(entry.child(self.saved_at) for entry in self.entries)

    @property
    def sas(self) -> frozenset[SaId]:
        return frozenset(sa for entry in self.entries for sa in entry.sas)


class StateError(Exception):
    """The state file exists but cannot be read: treated as lost state."""


class StateStore:
    """StateStore(directory): load() once at start-up; then at each save either snapshot(),
    with every child, when wants_snapshot() says so (the first save, among others), or
    update(), with what changed (and every child when wants_compaction() says so); close() at
    shutdown."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / STATE_FILE
        # A snapshot's (at a save, or a compaction's), until it is renamed over the file.
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        # The answers of the saved children (few: young responder children's), for the next
        # snapshot, whose caller has only those not saved yet (kink.daemon.answers).
        self._answers: dict[int, SavedAnswer] = {}
        self._snapshot_size = 0  # bytes of the last snapshot
        self._appended = 0  # bytes of batches appended since
        self._epoch: int | None = None  # the file's, while appending to it is right
        # The file, open from its snapshot on, appended to by update(): fewer system calls per
        # save (22-35 us each in user-mode Linux, on the path of a lone exchange's REPLY, issue
        # 9). None until the first snapshot, after a failed write and after close().
        self._journal: int | None = None
        self._compaction: _Compaction | None = None  # the one running (module docstring)
        self._compaction_failed = False  # its snapshot's write: the next save is a snapshot

    def load(self) -> Saved | None:
        """The saved state; None if there is none; StateError if it is unreadable."""
        try:
            file = self.path.open("rb")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{self.path}: {exc.strerror}") from None
        # Without the cycle collector: reading makes only objects that live (some 20 per
        # child), and its passes over them all, again and again as they accumulate, were
        # over half the load of 100,000 children (issue 9).
        collecting = gc.isenabled()
        gc.disable()
        try:
            with file:
                return _read(file)
        except StateError as exc:
            raise StateError(f"{self.path}: {exc}") from None
        except OSError as exc:
            raise StateError(f"{self.path}: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError) as exc:  # RecordError, binascii.Error too
            raise StateError(f"{self.path}: not a kinkd state file ({exc})") from None
        finally:
            if collecting:
                gc.enable()

    def _long(self) -> bool:
        """Whether the batches appended pass COMPACT_FACTOR times the last snapshot (and
        COMPACT_MIN bytes: a read costs what the file holds)."""
        return self._appended > max(COMPACT_MIN, COMPACT_FACTOR * self._snapshot_size)

    def wants_snapshot(self, epoch: int) -> bool:
        """Whether the next save is a snapshot (of every child): the first one, after a failed
        write, in another epoch, or once the file is long after a compaction failed."""
        return (
            self._journal is None
            or self._epoch != epoch
            or (self._compaction_failed and self._long())
        )

    def wants_compaction(self, epoch: int) -> bool:
        """Whether the next save (an update()) starts a compaction, given every child: the file
        is long, and no snapshot is wanted nor compaction running (module docstring)."""
        return self._compaction is None and self._long() and not self.wants_snapshot(epoch)

    def close(self) -> None:
        """Close the file (at shutdown); a later save writes a snapshot."""
        self._epoch = None
        self._abandon()
        self._close_journal()

    def _close_journal(self) -> None:
        fd, self._journal = self._journal, None
        if fd is not None:
            os.close(fd)

    def _abandon(self) -> None:
        """Give up the compaction running, if any: its thread waited for (it writes the
        temporary file, which a snapshot or the next compaction writes anew), its file gone."""
        compaction, self._compaction = self._compaction, None
        if compaction is not None:
            compaction.thread.join()
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)

    def snapshot(
        self, epoch: int, saved_at: float, children: Iterable[tuple[int, SavedChild]]
    ) -> None:
        """The state is `children` (by child id) and nothing else; durable on return. A child
        without an answer keeps the one saved with its id before, until it expires."""
        self._epoch = None
        self._abandon()
        self._close_journal()
        try:
            size, kept = _write_snapshot(self._tmp, epoch, saved_at, children, self._answers)
            os.replace(self._tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            raise
        self._sync_directory()
        # The batches go to its end, each durable as its write returns (O_DSYNC: what an
        # fdatasync after it makes so, the data and the file's new size, in one system call).
        self._journal = _open_journal(self.path)
        self._answers = kept
        self._epoch, self._snapshot_size, self._appended = epoch, size, 0
        self._compaction_failed = False

    def _sync_directory(self) -> None:
        with contextlib.suppress(OSError):  # the rename is durable once the directory is
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def update(
        self,
        epoch: int,
        saved_at: float,
        children: Mapping[int, SavedChild],
        gone: Iterable[int],
        *,
        compact: Iterable[tuple[int, SavedChild]] | None = None,
    ) -> None:
        """Apply changes, by child id (kink.engine.lifecycle.RecordChanges): `children` new
        or changed (an entry replaces the one of its id), `gone` no longer saved (ids never
        saved are ignored). Durable on return: one batch appended; or, if wants_snapshot(),
        a snapshot of `children`, which must then be every child.
        `compact`: when wants_compaction(), every child (by id) as of after this batch, the
        snapshot a compaction writes in the background once the batch is durable; it is read
        in the compaction's thread, and must not change meanwhile."""
        if self.wants_snapshot(epoch):
            self.snapshot(epoch, saved_at, children.items())
            return
        dropped = list(gone)
        if not children and not dropped and compact is None:
            return  # the file says it all already
        line = b"".join(
            (
                b'{"saved_at":',
                json_number(saved_at).encode(),
                b',"set":[',
                b",".join(
                    _entry(child_id, child, saved_at, child.answer)
                    for child_id, child in children.items()
                ),
                b'],"del":',
                _encode(dropped).encode(),
                b"}\n",
            )
        )
        fd = self._journal
        assert fd is not None  # else wants_snapshot()
        self._epoch = None  # until the batch is durable: after a failure, a snapshot
        try:
            # The file kept open is still the one at self.path while it has its one link:
            # removed or replaced by hand (a rename over it), it has none; linked elsewhere as
            # well (a hard link), two. Then the batch would not be in the file a restart reads:
            # the save fails, as it did when the file was opened by its path and was gone, and
            # the next one, the writer's retry, is a snapshot (wants_snapshot). An fstat and a
            # write (O_DSYNC) instead of an open, a write, an fdatasync and a close.
            if os.fstat(fd).st_nlink != 1:
                raise FileNotFoundError(errno.ENOENT, "removed or replaced", str(self.path))
            compaction = self._compaction
            if compaction is not None and compaction.thread.is_alive():
                _write_all(fd, line)
                compaction.tail.append(line)
            elif compaction is not None and compaction.error is None:
                self._compaction = None
                self._switch(compaction, line)
            else:
                if compaction is not None:  # its snapshot could not be written
                    log.error("cannot compact the state file: %s", compaction.error)
                    self._abandon()
                    self._compaction_failed = True
                _write_all(fd, line)
        except BaseException:
            self._abandon()
            self._close_journal()
            raise
        self._epoch = epoch
        self._appended += len(line)
        for child_id in dropped:
            self._answers.pop(child_id, None)
        for child_id, child in children.items():
            if child.answer is None:
                self._answers.pop(child_id, None)
            else:
                self._answers[child_id] = child.answer
        if compact is not None:
            self._compaction = _Compaction(self._tmp, epoch, saved_at, compact, dict(self._answers))

    def _switch(self, compaction: "_Compaction", line: bytes) -> None:
        """Make the compaction's snapshot, with its tail and `line` appended, the file (step 3
        of the module docstring); `line` is durable on return."""
        tail = b"".join(compaction.tail)
        try:
            fd = _open_journal(self._tmp)
            try:
                _write_all(fd, tail + line)
                os.replace(self._tmp, self.path)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            raise
        self._sync_directory()
        self._close_journal()
        self._journal = fd
        self._snapshot_size, self._appended = compaction.size, len(tail)
        # As a snapshot does: the answers expired by its time are no longer in the file.
        self._answers = {c: a for c, a in self._answers.items() if a.until > compaction.saved_at}


class _Compaction:
    """A snapshot of `children` written to `tmp` and fsynced in its own thread (step 2 of the
    module docstring), with the answers `kept` for those without one; `tail`: the batches
    appended to the file meanwhile."""

    def __init__(
        self,
        tmp: Path,
        epoch: int,
        saved_at: float,
        children: Iterable[tuple[int, SavedChild]],
        kept: Mapping[int, SavedAnswer],
    ) -> None:
        self.saved_at = saved_at
        self.tail: list[bytes] = []
        self.size = 0  # the snapshot's bytes, once written
        self.error: BaseException | None = None

        def write() -> None:
            try:
                self.size, _ = _write_snapshot(tmp, epoch, saved_at, children, kept)
            except BaseException as exc:  # for the save that finds it ended (update)
                self.error = exc

        self.thread = threading.Thread(target=write, name="kinkd-compact", daemon=True)
        self.thread.start()


def _open_journal(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_DSYNC | os.O_CLOEXEC)


def _write_snapshot(
    path: Path,
    epoch: int,
    saved_at: float,
    children: Iterable[tuple[int, SavedChild]],
    answers: Mapping[int, SavedAnswer],
) -> tuple[int, dict[int, SavedAnswer]]:
    """Write a snapshot of `children` to a new file at `path`, fsynced; a child without an
    answer has its id's in `answers`, if not expired at saved_at. Its size and the answers it
    holds."""
    kept: dict[int, SavedAnswer] = {}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb", buffering=WRITE_BUFFER) as out:
        head = {"version": _VERSION, "epoch": epoch, "saved_at": saved_at}
        out.write(_encode(head).encode() + b"\n")
        count = 0
        for child_id, child in children:
            answer = child.answer or answers.get(child_id)
            if answer is not None and answer.until > saved_at:
                kept[child_id] = answer
            else:
                answer = None  # expired: a restarted kinkd would ignore it
            out.write(_entry(child_id, child, saved_at, answer) + b"\n")
            count += 1
        out.write(b'{"children":%d}\n' % count)
        out.flush()
        os.fsync(out.fileno())
        return out.tell(), kept


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _entry(child_id: int, child: SavedChild, at: float, answer: SavedAnswer | None) -> bytes:
    """ENTRY (module docstring), written directly (ChildRecord.to_json; one a rekey on each
    side: 13 us an entry with json and to_dict, 5 us now, issue 9)."""
    sas = ",".join([f"[{_string(p)},{spi:d},{_string(dst)}]" for p, spi, dst in sorted(child.sas)])
    text = (
        f'{{"id":{child_id:d},"record":{child.record.to_json()},"sas":[{sas}],'
        f'"at":{json_number(at)}'
    )
    if answer is not None:
        text += f',"answer":{_encode(answer.to_dict())}'
    return (text + "}").encode()


def _read(lines: Iterator[bytes]) -> Saved:
    """The state in a file's lines (any readable version), a child at a time."""
    doc = json.loads(next(lines, b""))  # a snapshot is written whole: never cut short
    version = doc["version"]
    if version not in _READABLE:
        raise StateError(f"unknown version {version!r}")
    epoch, saved_at = doc["epoch"], doc["saved_at"]
    if type(epoch) is not int or not 0 <= epoch <= 0xFFFF_FFFF:
        raise StateError("bad epoch")
    if type(saved_at) not in (int, float):
        raise StateError("bad saved_at")
    entries: dict[int, SavedEntry] = {}
    if version < 5:
        for n, entry in enumerate(doc["children"]):
            entries[n] = _saved_entry(entry, None)
        return Saved(epoch, float(saved_at), tuple(entries.values()))
    if version == 5:
        _apply(entries, doc["children"], [])
    else:
        _read_snapshot(lines, entries)
    damaged = False
    for line in lines:
        if damaged:
            raise StateError("a damaged batch")  # and another after it
        if not line.endswith(b"\n"):
            break  # the last batch, cut short: a save that never completed
        try:
            batch = json.loads(line)
        except ValueError:
            damaged = True  # cut short, if it is the last line (it got its newline)
            continue
        _apply(entries, batch["set"], batch["del"])
        if type(batch["saved_at"]) not in (int, float):
            raise StateError("bad saved_at")
    return Saved(epoch, float(saved_at), tuple(entries.values()))


def _read_snapshot(lines: Iterator[bytes], entries: dict[int, SavedEntry]) -> None:
    """The entries of a version 6 snapshot, up to its end line."""
    for line in lines:
        if not line.endswith(b"\n"):
            break
        entry = json.loads(line)
        if "children" in entry:
            if entry["children"] != len(entries):
                raise StateError("a snapshot without some of its children")
            return
        entries[_id(entry)] = _saved_entry(entry, line)
    raise StateError("a snapshot cut short")


def _apply(entries: dict[int, SavedEntry], saved: object, gone: object) -> None:
    if not isinstance(saved, list) or not isinstance(gone, list):
        raise StateError("bad batch")
    for child_id in gone:
        if type(child_id) is not int:
            raise StateError("bad id")
        entries.pop(child_id, None)
    for entry in saved:
        entries[_id(entry)] = _saved_entry(entry, None)


def _id(entry: dict[str, Any]) -> int:
    child_id = entry["id"]
    if type(child_id) is not int:
        raise StateError("bad id")
    return child_id


def _saved_entry(entry: dict[str, Any], text: bytes | None) -> SavedEntry:
    """An entry's SAs, and its text (encoded anew when it is not a line of its own). The
    protocol names and addresses, a few distinct ones in 100,000s of SAs, are interned."""
    sas = tuple(
        (sys.intern(str(p)), int(spi), sys.intern(str(dst))) for p, spi, dst in entry["sas"]
    )
    if text is None:
        text = _encode(entry).encode()
    return SavedEntry(sas, text)


def _saved_child(entry: dict[str, Any], sas: tuple[SaId, ...], saved_at: float) -> SavedChild:
    return SavedChild(
        ChildRecord.from_dict(entry["record"], aged=_aged(saved_at, entry.get("at"))),
        frozenset(sas),
        SavedAnswer.from_dict(entry["answer"]) if "answer" in entry else None,
    )


def _aged(saved_at: float, at: object) -> float:
    """How much older than its entry's time `at` (None: saved_at) a record is at saved_at."""
    if at is None:
        return 0.0
    if not isinstance(at, int | float) or isinstance(at, bool):
        raise ValueError("bad at")
    return saved_at - at


def unaccounted(
    kernel: Mapping[SaId, int], kept: Iterable[SaId], ours: Callable[[int], bool]
) -> list[SaId]:
    """The SAs of `kernel` (SA -> reqid, from a helper dump) in a reqid `ours` that are not
    `kept` (the SAs of the children taken over): left by a kinkd that died before it saved
    them or before it committed them with a datagram; nothing would rekey or DELETE them."""
    keep = set(kept)
    return sorted(sa for sa, reqid in kernel.items() if ours(reqid) and sa not in keep)


def choose_epoch(saved: Saved | None, kernel_sas: Collection[SaId], now: float) -> tuple[int, str]:
    """The epoch to run with, and why (for the log).

    Kept when the saved state's SAs are still in the kernel (or none were saved: nothing could
    be lost); otherwise a new one, distinct from the old (§3.7). New epochs come from the clock
    so that they differ from every earlier one of this host without more state.
    """
    if saved is not None:
        if not any(entry.sas for entry in saved.entries):
            return saved.epoch, "no SAs to lose"
        if any(sa in kernel_sas for entry in saved.entries for sa in entry.sas):
            return saved.epoch, "SAs still in the kernel"
    epoch = int(now) & 0xFFFF_FFFF
    if saved is not None and epoch == saved.epoch:
        epoch = (epoch + 1) & 0xFFFF_FFFF
    return epoch, "no saved state" if saved is None else "SA state lost"
