"""RecordingBackend: the kernel's SA and policy tables in memory, for tests and benchmarks.

It answers like XFRM (EEXIST, ESRCH for SAs, ENOENT for policies, larval SAs from ALLOCSPI,
UPDSA on a mature SA changing lifetimes only, counters at zero). `calls` records every
operation, so a test can prove a refused request reached no backend. The `kernel_*` and
`foreign_*` methods play the kernel's timers and other processes and report what they do as
events; they may be called from another thread (the server wakes up on fileno()).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import threading
import time

from kink_privsep.errors import KernelError
from kink_privsep.model import (
    Acquire,
    Counters,
    EventsLost,
    Expired,
    Flushed,
    KernelEvent,
    Lifetime,
    PolicyChanged,
    PolicyExpired,
    PolicyId,
    PolicyInfo,
    PolicySpec,
    SaChanged,
    SaId,
    SaInfo,
    SaSpec,
    SpiRequest,
)

LARVAL_LIFETIME = Lifetime(hard_add_seconds=30)  # XFRM_ACQ_EXPIRES


class RecordingBackend:
    name = "recording"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self._sas: dict[SaId, SaInfo] = {}
        self._policies: dict[PolicyId, PolicyInfo] = {}
        self._events: list[KernelEvent] = []
        self._next_index = 0
        self._next_seq = 0
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def fileno(self) -> int:
        return self._wake_r

    def events(self) -> list[KernelEvent]:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)
        with self._lock:
            events, self._events = self._events, []
        return events

    def _emit(self, event: KernelEvent) -> None:
        self._events.append(event)
        with contextlib.suppress(BlockingIOError):  # a full pipe: the server is awake anyway
            os.write(self._wake_w, b"\0")

    # -- the Backend operations -------------------------------------------------------------

    def alloc_spi(self, req: SpiRequest) -> int:
        with self._lock:
            self.calls.append("alloc_spi")
            for _ in range(64):
                spi = random.randint(req.spi_min, req.spi_max)
                sa_id = SaId(req.dst, spi, req.proto, req.mark)
                if sa_id not in self._sas:
                    break
            else:
                raise KernelError(errno.ENOENT, "no free SPI in range")
            self._sas[sa_id] = SaInfo(
                sa_id, req.src, req.mode, req.reqid, None, None, 0, LARVAL_LIFETIME
            )
            return spi  # XFRM sends no multicast for a larval SA

    def add_sa(self, sa: SaSpec, *, update: bool) -> None:
        with self._lock:
            self.calls.append("update_sa" if update else "add_sa")
            old = self._sas.get(sa.id)
            if update and old is None:
                raise KernelError(errno.ESRCH)
            if not update and old is not None:
                raise KernelError(errno.EEXIST)
            if old is not None and (old.enc is not None or old.auth is not None):
                info = old._replace(lifetime=sa.lifetime)  # UPDSA on a mature SA
            else:
                info = SaInfo(
                    sa.id,
                    sa.src,
                    sa.mode,
                    sa.reqid,
                    sa.enc,
                    sa.auth,
                    sa.replay_window,
                    sa.lifetime,
                    sa.selector,
                    sa.encap,
                    Counters(add_time=int(time.time())),
                )
            self._sas[sa.id] = info

    def get_sa(self, sa_id: SaId) -> SaInfo:
        with self._lock:
            self.calls.append("get_sa")
            if sa_id not in self._sas:
                raise KernelError(errno.ESRCH)
            return self._sas[sa_id]

    def delete_sa(self, sa_id: SaId) -> None:
        with self._lock:
            self.calls.append("delete_sa")
            if self._sas.pop(sa_id, None) is None:
                raise KernelError(errno.ESRCH)

    def sa_bytes(self, sa_id: SaId) -> int:
        with self._lock:
            self.calls.append("sa_bytes")
            if sa_id not in self._sas:
                raise KernelError(errno.ESRCH)
            return self._sas[sa_id].counters.bytes

    def dump_sas(self) -> list[SaInfo]:
        with self._lock:
            self.calls.append("dump_sas")
            return list(self._sas.values())

    def add_policy(self, policy: PolicySpec, *, update: bool) -> None:
        with self._lock:
            self.calls.append("update_policy" if update else "add_policy")
            old = self._policies.get(policy.id)
            if not update and old is not None:
                raise KernelError(errno.EEXIST)
            if old is None:
                self._next_index += 8
                index = self._next_index + policy.id.dir  # XFRM: index % 8 is the direction
            else:
                index = old.index
            info = PolicyInfo(policy, index, int(time.time()))
            self._policies[policy.id] = info

    def get_policy(self, pid: PolicyId) -> PolicyInfo:
        with self._lock:
            self.calls.append("get_policy")
            if pid not in self._policies:
                raise KernelError(errno.ENOENT)
            return self._policies[pid]

    def delete_policy(self, pid: PolicyId) -> None:
        with self._lock:
            self.calls.append("delete_policy")
            if self._policies.pop(pid, None) is None:
                raise KernelError(errno.ENOENT)

    def dump_policies(self) -> list[PolicyInfo]:
        with self._lock:
            self.calls.append("dump_policies")
            return list(self._policies.values())

    def close(self) -> None:
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- what the kernel's timers and packets do --------------------------------------------

    def kernel_expire(self, sa_id: SaId, *, hard: bool) -> None:
        with self._lock:
            info = self._sas.pop(sa_id) if hard else self._sas[sa_id]
            self._emit(Expired(info, hard))

    def kernel_expire_policy(self, pid: PolicyId, *, hard: bool) -> None:
        with self._lock:
            info = self._policies.pop(pid) if hard else self._policies[pid]
            self._emit(PolicyExpired(info, hard))

    def kernel_acquire(self, pid: PolicyId) -> int:
        """A packet matched policy `pid` and no SA exists for its first template: the seq."""
        with self._lock:
            policy = self._policies[pid]
            t = policy.spec.templates[0]
            sel = pid.selector
            self._next_seq += 1
            src = t.src or sel.src.network_address
            dst = t.dst or sel.dst.network_address
            self._emit(Acquire(self._next_seq, t.proto, src, dst, policy))
            return self._next_seq

    def kernel_traffic(self, sa_id: SaId, octets: int) -> None:
        """A packet of `octets` bytes went through the SA (its counters grow; no event)."""
        with self._lock:
            info = self._sas[sa_id]
            c = info.counters
            counters = c._replace(bytes=c.bytes + octets, packets=c.packets + 1)
            self._sas[sa_id] = info._replace(counters=counters)

    def kernel_lose_events(self) -> None:
        with self._lock:
            self._emit(EventsLost())

    # -- what other processes (ip xfrm, another IKE daemon) do -------------------------------

    def foreign_add_sa(self, info: SaInfo) -> None:
        with self._lock:
            self._sas[info.id] = info
            self._emit(SaChanged(False, info))

    def foreign_delete_sa(self, sa_id: SaId) -> None:
        with self._lock:
            self._emit(SaChanged(True, self._sas.pop(sa_id)))

    def foreign_add_policy(self, policy: PolicySpec) -> None:
        with self._lock:
            info = PolicyInfo(policy, 0, int(time.time()))
            self._policies[policy.id] = info
            self._emit(PolicyChanged(False, info))

    def foreign_delete_policy(self, pid: PolicyId) -> None:
        with self._lock:
            self._emit(PolicyChanged(True, self._policies.pop(pid)))

    def foreign_flush_sas(self) -> None:
        with self._lock:
            self._sas.clear()
            self._emit(Flushed("sa"))
