"""The state kinkd keeps across restarts: its epoch and the SAs it has in the kernel.

RFC 4430 §3.7: the epoch tells peers whether we lost our SAs. A restart or upgrade of kinkd that
finds its SAs still in the kernel is no loss, so it keeps the epoch and takes the SAs over
(Engine.restore, from the engine's ChildRecords saved here with their kernel SAs and the wall
clock time of the save); a reboot or a flush is a loss, so a new epoch starts. The file is
written atomically (temporary file, fsync, rename) after the set of SAs changes, before the
datagram that follows the change leaves (kink.daemon.state_writer). With 10,000s of children
and a save per batch of exchanges, encoding every record each time was most of a save (issue
9): a child's entry is encoded once, with the wall clock time ("at") its record's age and
time to rekey refer to, and reused by the next saves while the child is unchanged. A responder
child carries the REPLY that answered its CREATE while the initiator may still retransmit that
CREATE (kink.daemon.answers): a restarted kinkd answers the retransmission with it. A responder
child of a 3-way CREATE is saved before its REPLY (ACKREQ) leaves, with its inbound SAs only
(the outbound one waits for the ACK, §3.2): a restarted kinkd takes it over to DELETE it
(§3.3), since the ACK went to the old process and the initiator may hold the pair.

Kernel SAs kink owns that the file does not account for are deleted at start-up (unaccounted):
those of a kinkd killed between an install and the save, whose datagram (the REPLY or ACK that
commits them) had therefore not left, and the initiator's optimistic inbound SA of a CREATE
that was in flight (RFC 4430 §3.2): nothing would rekey or DELETE them.
"""

import base64
import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kink.engine import ChildRecord
from kink.engine.events import Address

log = logging.getLogger("kinkd")

STATE_FILE = "state.json"
_VERSION = 4
_READABLE = (2, 3, 4)  # 3: every record's times as of saved_at (no "at"); 2: no answers either
_COMPACT = (",", ":")  # JSON without blanks: kept in memory per child, written at each save
_SAME_TIME = 0.1  # seconds: a child's created and rekey times within this count as unchanged

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


_EntryKey = tuple[
    str, tuple[tuple[int, int, int], ...], int, bool, float, float | None, float | None
]


class StateStore:
    def __init__(self, directory: Path) -> None:
        self.path = directory / STATE_FILE
        self._entries: dict[_EntryKey, bytes] = {}  # the children of the last save, encoded

    def load(self) -> Saved | None:
        """The saved state; None if there is none; StateError if it is unreadable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{self.path}: {exc.strerror}") from None
        try:
            doc = json.loads(raw)
            if doc["version"] not in _READABLE:
                raise StateError(f"{self.path}: unknown version {doc['version']!r}")
            epoch, saved_at = doc["epoch"], doc["saved_at"]
            if type(epoch) is not int or not 0 <= epoch <= 0xFFFF_FFFF:
                raise StateError(f"{self.path}: bad epoch")
            if type(saved_at) not in (int, float):
                raise StateError(f"{self.path}: bad saved_at")
            children = tuple(
                SavedChild(
                    _as_of(ChildRecord.from_dict(item["record"]), saved_at, item.get("at")),
                    frozenset((str(p), int(spi), str(dst)) for p, spi, dst in item["sas"]),
                    SavedAnswer.from_dict(item["answer"]) if "answer" in item else None,
                )
                for item in doc["children"]
            )
        except (ValueError, KeyError, TypeError) as exc:  # RecordError, binascii.Error too
            raise StateError(f"{self.path}: not a kinkd state file ({exc})") from None
        return Saved(epoch, float(saved_at), children)

    def save(self, epoch: int, saved_at: float, children: Iterable[SavedChild]) -> None:
        head = json.dumps({"version": _VERSION, "epoch": epoch, "saved_at": saved_at})
        entries: dict[_EntryKey, bytes] = {}
        for child in children:
            key = _entry_key(child, saved_at)
            entry = self._entries.get(key)
            if entry is None:
                entry = json.dumps(_child_dict(child, saved_at), separators=_COMPACT).encode()
            entries[key] = entry
        self._entries = entries
        # One buffer written at once: json.dump would write it piecemeal.
        data = b"".join((head[:-1].encode(), b',"children":[', b",".join(entries.values()), b"]}"))
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # the rename is durable once the directory is
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def _child_dict(child: SavedChild, at: float) -> dict[str, Any]:
    doc: dict[str, Any] = {"record": child.record.to_dict(), "sas": sorted(child.sas), "at": at}
    if child.answer is not None:
        doc["answer"] = child.answer.to_dict()
    return doc


def _entry_key(child: SavedChild, now: float) -> _EntryKey:
    """What makes a child's entry (saved at wall clock `now`) still right: the same child (a
    record's other fields are fixed for its SPIs, unique among live children, but for
    awaiting_ack, which the ACK ends, and the SAs with it), the same answer, and created and to
    be rekeyed at the same wall clock times (to _SAME_TIME)."""
    record, answer = child.record, child.answer
    rekey = None if record.rekey_in is None else round((now + record.rekey_in) / _SAME_TIME)
    return (
        record.peer,
        record.spis,
        record.reqid,
        record.awaiting_ack,
        round((now - record.age) / _SAME_TIME),
        rekey,
        None if answer is None else answer.until,
    )


def _as_of(record: ChildRecord, saved_at: float, at: object) -> ChildRecord:
    """The record as of saved_at, from its entry's times as of `at` (None: saved_at)."""
    if at is None:
        return record
    if not isinstance(at, int | float) or isinstance(at, bool):
        raise ValueError("bad at")
    aged = saved_at - at
    rekey_in = None if record.rekey_in is None else record.rekey_in - aged
    return replace(record, age=record.age + aged, rekey_in=rekey_in)


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
