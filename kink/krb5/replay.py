"""The acceptor's replay cache: authenticators already accepted (RFC 4120 §3.2.3).

It replaces libkrb5's file2 cache, which costs ~9 system calls per AP-REQ (open, lock, read
the header, seek, read a slot, seek, write, unlock, close); this one costs one (the append).

- Tag: the first 16 octets of SHA-256 over the authenticator's ciphertext. The ciphertext is
  what a replay must repeat (changing one bit fails its integrity check), while the AP-REQ
  envelope around it could be re-encoded. 128 bits: accidental collisions among even 2^32
  live tags have probability ~2^-65, and forging a collision needs a second preimage of the
  truncated hash (2^128) — and would only refuse the forger's own request. (MIT's file2
  records keep 96 bits.)
- Expiry: the authenticator's ctime + the clock skew, on the acceptor's krb5 clock. krb5_rd_req
  accepts an authenticator only while |ctime - now| <= skew, so after ctime + skew a replay
  fails its time check anyway (RFC 4120 §3.2.3: the server "MUST remember any authenticator
  presented within the allowable clock skew").
- Memory: the live tags with their expiry (a dict), and the same tags grouped by expiry second
  (a dict of lists, with a heap of those seconds); expired seconds are dropped before each
  lookup, so memory is bounded by the requests accepted within one skew window (~110 octets
  each: 100 MB at 3,000 AP-REQs/s for the default 300 s skew).
- File (the restart case of §3.2.3): an 8-octet header, then 24-octet records (tag, expiry as
  64-bit big-endian seconds), appended with one write(2) per accepted request and, as MIT's
  file2, no fsync: a crash may lose the last records. At open the file is read back (live
  records kept, expired ones and a torn last record dropped) and rewritten compactly; it is
  rewritten again once it holds more than _COMPACT_FACTOR times the live records (plus
  _COMPACT_SLACK). Each rewrite goes to a temporary file, is fsynced (it is rare, and a rename
  without it could leave an empty cache after a crash), then renamed over the cache.

One ReplayCache per file per process, shared by every Acceptor on that directory
(open_replay_cache); two processes must not share a directory.
"""

import hashlib
import heapq
import os
import struct
import threading
import weakref
from pathlib import Path

from kink.krb5 import _der
from kink.krb5.errors import KRB5_RC_IO, KRB5_RC_PARSE, Krb5Error

TAG_LENGTH = 16
_MAGIC = b"KINKRC\x00\x01"  # format version 1
_RECORD = struct.Struct(">16sQ")
_COMPACT_FACTOR = 4
_COMPACT_SLACK = 1024
_FILE_MODE = 0o600


def authenticator_tag(ap_req: bytes) -> bytes:
    """The replay cache tag of an AP-REQ; Krb5Error (ASN.1 code) if it does not parse."""
    return cipher_tag(_der.authenticator_cipher(ap_req))


def cipher_tag(cipher: bytes) -> bytes:
    """The replay cache tag of an authenticator's cipher octets (_der.authenticator_cipher)."""
    return hashlib.sha256(cipher).digest()[:TAG_LENGTH]


def _io_error(path: Path, error: OSError) -> Krb5Error:
    return Krb5Error(KRB5_RC_IO, f"replay cache {path}: {error.strerror or error}")


class ReplayCache:
    """Tags of accepted authenticators with their expiry, in memory and in `path`.

    Thread-safe (a lock around each call): Acceptors of different Contexts may share it.
    """

    def __init__(self, path: Path, now: int) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._tags: dict[bytes, int] = {}  # tag -> expiry
        self._by_expiry: dict[int, list[bytes]] = {}
        self._expiries: list[int] = []  # heap of the keys of _by_expiry
        self._records = 0  # records in the file, live or not
        self._fd = -1
        self._close_fd: weakref.finalize[[int], ReplayCache] | None = None
        self._load(now)
        self._compact()

    def __len__(self) -> int:
        return len(self._tags)

    def seen(self, tag: bytes, now: int) -> bool:
        """Whether `tag` is remembered and still live at `now`.

        The lock is taken only to prune, at most once per expiry second: Python 3.11's
        Lock.acquire reads the monotonic clock on every call, a system call in user-mode
        Linux (issue 9). The lookup needs no lock: one dict lookup is atomic under the GIL,
        and a tag is live while its expiry >= now, pruned yet or not.
        """
        try:
            stale = self._expiries[0] < now
        except IndexError:  # none (another thread may have pruned the last meanwhile)
            stale = False
        if stale:
            with self._lock:
                self._prune(now)
        expiry = self._tags.get(tag)
        return expiry is not None and expiry >= now

    def remember(self, tag: bytes, expiry: int, now: int) -> bool:
        """Remember `tag` until `expiry` (inclusive); False if it is already remembered."""
        with self._lock:
            self._prune(now)
            if tag in self._tags:
                return False
            if expiry < now:
                return True  # its time check already refuses any replay
            self._add(tag, expiry)
            try:
                written = os.write(self._fd, _RECORD.pack(tag, expiry))
            except OSError as e:
                raise _io_error(self.path, e) from None
            self._records += 1
            # A short write would misalign every later record: rewrite the file from memory.
            if (
                written != _RECORD.size
                or self._records > _COMPACT_FACTOR * len(self._tags) + _COMPACT_SLACK
            ):
                self._compact()
            return True

    def _add(self, tag: bytes, expiry: int) -> None:
        self._tags[tag] = expiry
        group = self._by_expiry.get(expiry)
        if group is None:
            self._by_expiry[expiry] = [tag]
            heapq.heappush(self._expiries, expiry)
        else:
            group.append(tag)

    def _prune(self, now: int) -> None:
        expiries = self._expiries
        while expiries and expiries[0] < now:
            tags = self._tags
            for tag in self._by_expiry.pop(heapq.heappop(expiries)):
                del tags[tag]

    def _load(self, now: int) -> None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        except OSError as e:
            raise _io_error(self.path, e) from None
        if len(data) < len(_MAGIC):
            # Empty, or a header cut short by a crash: nothing was recorded after it.
            if _MAGIC.startswith(data):
                return
            raise Krb5Error(KRB5_RC_PARSE, f"replay cache {self.path}: not a kink replay cache")
        if not data.startswith(_MAGIC):
            raise Krb5Error(KRB5_RC_PARSE, f"replay cache {self.path}: not a kink replay cache")
        whole = (len(data) - len(_MAGIC)) // _RECORD.size * _RECORD.size  # a torn tail dropped
        # A tag is written once (remember refuses a second time), so no duplicates to merge.
        for tag, expiry in _RECORD.iter_unpack(memoryview(data)[len(_MAGIC) : len(_MAGIC) + whole]):
            if expiry >= now and tag not in self._tags:
                self._add(tag, expiry)

    def _compact(self) -> None:
        """Write the live records to a new file, rename it over the cache, append to it."""
        temporary = self.path.with_name(self.path.name + ".new")
        pack = _RECORD.pack
        content = _MAGIC + b"".join(
            pack(tag, expiry) for expiry, group in self._by_expiry.items() for tag in group
        )
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
        try:
            fd = os.open(temporary, flags, _FILE_MODE)
        except OSError as e:
            raise _io_error(self.path, e) from None
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.replace(temporary, self.path)
        except OSError as e:
            os.close(fd)
            raise _io_error(self.path, e) from None
        if self._close_fd is not None:
            self._close_fd()
        self._fd = fd
        self._close_fd = weakref.finalize(self, os.close, fd)
        self._records = len(self._tags)


_open_caches: "weakref.WeakValueDictionary[str, ReplayCache]" = weakref.WeakValueDictionary()
_open_lock = threading.Lock()


def open_replay_cache(path: Path, now: int) -> ReplayCache:
    """The process's ReplayCache for `path`, read back from the file if none is open."""
    key = os.path.realpath(path)
    with _open_lock:
        cache = _open_caches.get(key)
        if cache is None:
            cache = _open_caches[key] = ReplayCache(Path(key), now)
        return cache
