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

The file (version 5) is a journal: with 10,000s of children and a save per batch of exchanges,
rewriting every child at each save made a save cost the whole state (issue 9: 60 MB at 100,000
children); a save now costs what changed. One JSON document per line:

  {"version":5,"epoch":E,"saved_at":T,"children":[ENTRY,...]}     the snapshot, first line
  {"saved_at":T,"set":[ENTRY,...],"del":[ID,...]}                  a batch, one per save

  ENTRY = {"id":ID,"record":ChildRecord.to_dict(),"sas":[[proto,spi,dst],...],"at":T0
           [,"answer":{"to":[host,port],"xid":X,"reply":base64,"until":T1}]}

ID is the child's id in the engine that wrote it (never reused by that engine); T, T0, T1 are
wall clock times (time.time()): the record's age and time to rekey are as of T0, the time it
was recorded at. Loading reads the snapshot, then applies each batch in order (an entry
replaces the one of its id, "del" drops ids); saved_at is the last batch's. A batch is appended
and fdatasync'd by one save, as one line, so it counts whole or not at all: a last line cut
short (no newline, or not JSON) is a save that never completed, whose datagrams therefore never
left, and is ignored. Each process starts with a snapshot (its first save: the ids are its
engine's), and writes a new one when the batches appended since pass COMPACT_FACTOR times the
size of the live entries (at least COMPACT_MIN), after a failed write and if the epoch changed:
a snapshot is written whole (temporary file, fsync, rename, fsync of the directory), without
the answers expired by then (a restarted kinkd ignores expired ones, kink.daemon.answers).

Versions 2 to 4 were one JSON document, {"version","epoch","saved_at","children":[ENTRY
without "id"]} (3: no "at", every record as of saved_at; 2: no answers either): read for an
upgrade, and replaced by a snapshot at the first save.

Kernel SAs kink owns that the file does not account for are deleted at start-up (unaccounted):
those of a kinkd killed between an install and the save, whose datagram (the REPLY or ACK that
commits them) had therefore not left, and the initiator's optimistic inbound SA of a CREATE
that was in flight (RFC 4430 §3.2): nothing would rekey or DELETE them.
"""

import base64
import contextlib
import gc
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kink.engine import ChildRecord
from kink.engine.events import Address

log = logging.getLogger("kinkd")

STATE_FILE = "state.json"
_VERSION = 5
_READABLE = (2, 3, 4, 5)
_COMPACT = (",", ":")  # JSON without blanks
COMPACT_FACTOR = 2  # a snapshot once the batches appended pass this times the live entries
COMPACT_MIN = 1 << 20  # ... and this many bytes

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


@dataclass(frozen=True)
class SavedChild:
    """An engine child, the kernel SAs (both directions) that make it up and, for a young
    responder child, the REPLY that created it."""

    record: ChildRecord
    sas: frozenset[SaId]
    answer: SavedAnswer | None = None


@dataclass(frozen=True)
class Saved:
    epoch: int
    saved_at: float  # time.time() of the save: the children aged since
    children: tuple[SavedChild, ...]

    @property
    def sas(self) -> frozenset[SaId]:
        return frozenset(sa for child in self.children for sa in child.sas)


class StateError(Exception):
    """The state file exists but cannot be read: treated as lost state."""


@dataclass(slots=True)
class _Entry:
    """A child's entry as written: without its closing brace, so that its answer can be
    left out once expired (a snapshot), and the answer's expiry and text."""

    head: bytes
    until: float | None
    answer: bytes

    def encoded(self, now: float) -> bytes:
        if self.until is not None and self.until > now:
            return b"".join((self.head, b',"answer":', self.answer, b"}"))
        return self.head + b"}"

    def size(self) -> int:
        return len(self.head) + len(self.answer)


class StateStore:
    """StateStore(directory): load() once at start-up; then update() at each save (the first
    one writes a snapshot). save() replaces the whole state with the children given."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / STATE_FILE
        self._entries: dict[int, _Entry] = {}  # the live children as written, by id
        self._live = 0  # their size
        self._appended = 0  # bytes of batches appended since the last snapshot
        self._epoch: int | None = None  # the file's, while appending to it is right

    def load(self) -> Saved | None:
        """The saved state; None if there is none; StateError if it is unreadable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{self.path}: {exc.strerror}") from None
        # Without the cycle collector: parsing makes only objects that live (some 50 per
        # child), and its passes over them all, again and again as they accumulate, were
        # over half the load of 100,000 children (issue 9).
        collecting = gc.isenabled()
        gc.disable()
        try:
            return _parse(raw)
        except StateError as exc:
            raise StateError(f"{self.path}: {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:  # RecordError, binascii.Error too
            raise StateError(f"{self.path}: not a kinkd state file ({exc})") from None
        finally:
            if collecting:
                gc.enable()

    def save(self, epoch: int, saved_at: float, children: Iterable[SavedChild]) -> None:
        """The state is `children` and nothing else: a snapshot."""
        self._entries, self._live = {}, 0
        for child_id, child in enumerate(children):
            self._put(child_id, child, saved_at)
        self._snapshot(epoch, saved_at)

    def update(
        self,
        epoch: int,
        saved_at: float,
        children: Mapping[int, SavedChild],
        gone: Iterable[int],
    ) -> None:
        """Apply changes, by child id (kink.engine.lifecycle.RecordChanges): `children` new
        or changed (an entry replaces the one of its id), `gone` no longer saved (ids never
        saved are ignored). Durable on return: one batch appended, or a snapshot."""
        dropped = [child_id for child_id in gone if child_id in self._entries]
        for child_id in dropped:
            self._live -= self._entries.pop(child_id).size()
        entries = [self._put(child_id, child, saved_at) for child_id, child in children.items()]
        if self._epoch != epoch or self._appended > max(COMPACT_MIN, COMPACT_FACTOR * self._live):
            self._snapshot(epoch, saved_at)
            return
        if not entries and not dropped:
            return  # the file says it all already
        line = b"".join(
            (
                b'{"saved_at":',
                json.dumps(saved_at).encode(),
                b',"set":[',
                b",".join(entry.encoded(saved_at) for entry in entries),
                b'],"del":',
                json.dumps(dropped, separators=_COMPACT).encode(),
                b"}\n",
            )
        )
        self._epoch = None  # until the batch is durable: after a failure, a snapshot
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            _write_all(fd, line)
            os.fdatasync(fd)  # the data and the file's new size
        finally:
            os.close(fd)
        self._epoch = epoch
        self._appended += len(line)

    def _put(self, child_id: int, child: SavedChild, at: float) -> _Entry:
        doc: dict[str, Any] = {"id": child_id, **_child_dict(child, at)}
        head = json.dumps(doc, separators=_COMPACT).encode()[:-1]
        answer = child.answer
        if answer is None:
            entry = _Entry(head, None, b"")
        else:
            text = json.dumps(answer.to_dict(), separators=_COMPACT).encode()
            entry = _Entry(head, answer.until, text)
        old = self._entries.get(child_id)
        if old is not None:
            self._live -= old.size()
        self._entries[child_id] = entry
        self._live += entry.size()
        return entry

    def _snapshot(self, epoch: int, saved_at: float) -> None:
        self._epoch = None
        head = json.dumps({"version": _VERSION, "epoch": epoch, "saved_at": saved_at})
        # One buffer written at once: json.dump would write it piecemeal.
        children = b",".join(entry.encoded(saved_at) for entry in self._entries.values())
        data = b"".join((head[:-1].encode(), b',"children":[', children, b"]}\n"))
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, self.path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # the rename is durable once the directory is
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._epoch, self._appended = epoch, 0
        # Expired answers were left out: forget them.
        for entry in self._entries.values():
            if entry.until is not None and entry.until <= saved_at:
                self._live -= len(entry.answer)
                entry.until, entry.answer = None, b""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _parse(raw: bytes) -> Saved:
    """The state in a file's bytes (any readable version)."""
    first, _, rest = raw.partition(b"\n")
    doc = json.loads(first)  # a snapshot is written whole: never cut short
    version = doc["version"]
    if version not in _READABLE:
        raise StateError(f"unknown version {version!r}")
    epoch, saved_at = doc["epoch"], doc["saved_at"]
    if type(epoch) is not int or not 0 <= epoch <= 0xFFFF_FFFF:
        raise StateError("bad epoch")
    if type(saved_at) not in (int, float):
        raise StateError("bad saved_at")
    items: dict[int, dict[str, Any]] = {}
    if version < 5:
        items = dict(enumerate(doc["children"]))
    else:
        _apply(items, doc["children"], [])
        lines = rest.split(b"\n")
        # The last piece follows the last newline: empty, or a batch cut short.
        for n, line in enumerate(lines[:-1]):
            try:
                batch = json.loads(line)
            except ValueError:
                if n == len(lines) - 2:
                    break  # a batch cut short that still got its newline: never completed
                raise
            _apply(items, batch["set"], batch["del"])
            saved_at = batch["saved_at"]
            if type(saved_at) not in (int, float):
                raise StateError("bad saved_at")
    children = tuple(
        SavedChild(
            ChildRecord.from_dict(item["record"], aged=_aged(saved_at, item.get("at"))),
            frozenset((str(p), int(spi), str(dst)) for p, spi, dst in item["sas"]),
            SavedAnswer.from_dict(item["answer"]) if "answer" in item else None,
        )
        for item in items.values()
    )
    return Saved(epoch, float(saved_at), children)


def _apply(items: dict[int, dict[str, Any]], entries: object, gone: object) -> None:
    if not isinstance(entries, list) or not isinstance(gone, list):
        raise StateError("bad batch")
    for child_id in gone:
        if type(child_id) is not int:
            raise StateError("bad id")
        items.pop(child_id, None)
    for entry in entries:
        child_id = entry["id"]
        if type(child_id) is not int:
            raise StateError("bad id")
        items[child_id] = entry


def _child_dict(child: SavedChild, at: float) -> dict[str, Any]:
    doc: dict[str, Any] = {"record": child.record.to_dict(), "sas": sorted(child.sas), "at": at}
    if child.answer is not None:
        doc["answer"] = child.answer.to_dict()
    return doc


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


def choose_epoch(saved: Saved | None, kernel_sas: Iterable[SaId], now: float) -> tuple[int, str]:
    """The epoch to run with, and why (for the log).

    Kept when the saved state's SAs are still in the kernel (or none were saved: nothing could
    be lost); otherwise a new one, distinct from the old (§3.7). New epochs come from the clock
    so that they differ from every earlier one of this host without more state.
    """
    if saved is not None:
        if not saved.sas:
            return saved.epoch, "no SAs to lose"
        if saved.sas & set(kernel_sas):
            return saved.epoch, "SAs still in the kernel"
    epoch = int(now) & 0xFFFF_FFFF
    if saved is not None and epoch == saved.epoch:
        epoch = (epoch + 1) & 0xFFFF_FFFF
    return epoch, "no saved state" if saved is None else "SA state lost"
