"""What the helper does with a validated command: ownership, limits, and kernel events.

kink owns an SA whose reqid is in its range (and whose SPI is not 0: the kernel's own ACQUIRE
placeholders) and a policy whose priority is in its band. Before changing or showing an existing
object the service checks that (an SA or policy it already knows as its own is not read again: see
_check_owned_sa); it never issues a kernel flush.

The set of owned objects is tracked to enforce the limits without a dump per request: it is
read once at start, follows the helper's own changes as it makes them, and the changes of
others and of the kernel's timers through the events (pending ones are applied before every
message from the daemon). A kernel FLUSH or an event overrun (ENOBUFS) costs a full re-read.

Each change it makes is logged at debug level, not info: kinkd already logs every SA pair it
brings up or down (at notice), and a line costs the helper as much as the kernel request it
reports (a clock read and a write(2): ~60 us per line where system calls are slow, as in UML).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from kink_privsep import protocol as p
from kink_privsep.backend import Backend
from kink_privsep.errors import KernelError, Refusal
from kink_privsep.model import (
    Acquire,
    AddPolicy,
    AddSa,
    Command,
    Config,
    DeletePolicy,
    DeleteSa,
    Dump,
    EventsLost,
    Expired,
    Flush,
    Flushed,
    GetSa,
    Hello,
    PolicyChanged,
    PolicyExpired,
    PolicyId,
    PolicyInfo,
    ReadBytes,
    SaChanged,
    SaId,
    SaInfo,
    SpiRequest,
    acquire_to_wire,
    policy_to_wire,
    sa_to_wire,
)

log = logging.getLogger(__name__)

DUMP_CHUNK = 128  # objects per reply part: ~60 KiB, far below protocol.MAX_MESSAGE
# ACQUIRE seqs remembered for alloc_spi/add_sa "seq": one per trap policy kink may hold (a
# burst of ACQUIREs, one per flow, must not push out the first ones before kinkd answers them).

Result = dict[str, Any]
Forward = tuple[str, Result]  # an event for the daemon: (protocol.EVENT_*, data)
K = TypeVar("K")


class Service:
    def __init__(self, backend: Backend, config: Config) -> None:
        self.backend = backend
        self.config = config
        self._sas: set[SaId] = set()
        self._policies: set[PolicyId] = set()
        self._acquires: OrderedDict[int, None] = OrderedDict()
        self._resync()

    def owns_sa(self, sa: SaInfo) -> bool:
        return sa.id.spi != 0 and self.config.owns_reqid(sa.reqid)

    def owns_policy(self, policy: PolicyInfo) -> bool:
        return self.config.owns_priority(policy.spec.priority)

    def _resync(self) -> None:
        self._sas = {sa.id for sa in self.backend.dump_sas() if self.owns_sa(sa)}
        self._policies = {
            pol.spec.id for pol in self.backend.dump_policies() if self.owns_policy(pol)
        }

    def _resync_after_events(self) -> None:
        try:
            self._resync()
        except KernelError as e:  # keep serving; the next flush or overrun tries again
            log.error("cannot re-read the kernel's tables: %s", e)

    # -- kernel events -----------------------------------------------------------------------

    def pump(self) -> list[Forward]:
        """Apply the kernel's pending events to the owned sets; those the daemon must see."""
        out: list[Forward] = []
        for ev in self.backend.events():
            if isinstance(ev, SaChanged):
                if not self.owns_sa(ev.sa):
                    self._sas.discard(ev.sa.id)  # replaced by someone else's: no longer ours
                    continue
                if not ev.deleted:
                    self._sas.add(ev.sa.id)
                    continue
                self._sas.discard(ev.sa.id)
                out.append((p.EVENT_SA_DELETED, {"sa": sa_to_wire(ev.sa)}))
            elif isinstance(ev, PolicyChanged):
                if not self.owns_policy(ev.policy):
                    self._policies.discard(ev.policy.spec.id)  # as for SAs: no longer ours
                    continue
                if not ev.deleted:
                    self._policies.add(ev.policy.spec.id)
                    continue
                self._policies.discard(ev.policy.spec.id)
                out.append((p.EVENT_POLICY_DELETED, {"policy": policy_to_wire(ev.policy)}))
            elif isinstance(ev, Expired):
                if self.owns_sa(ev.sa):
                    if ev.hard:  # the kernel deleted it
                        self._sas.discard(ev.sa.id)
                    out.append((p.EVENT_EXPIRE, {"hard": ev.hard, "sa": sa_to_wire(ev.sa)}))
            elif isinstance(ev, PolicyExpired):
                if self.owns_policy(ev.policy):
                    if ev.hard:
                        self._policies.discard(ev.policy.spec.id)
                    data = {"hard": ev.hard, "policy": policy_to_wire(ev.policy)}
                    out.append((p.EVENT_POLEXPIRE, data))
            elif isinstance(ev, Acquire):
                if self.owns_policy(ev.policy):
                    self._remember_acquire(ev.seq)
                    out.append((p.EVENT_ACQUIRE, acquire_to_wire(ev)))
            elif isinstance(ev, Flushed):
                self._resync_after_events()
                out.append((p.EVENT_FLUSHED, {"what": ev.what}))
            elif isinstance(ev, EventsLost):
                self._resync_after_events()
                out.append((p.EVENT_EVENTS_LOST, {}))
        return out

    def _remember_acquire(self, seq: int) -> None:
        self._acquires[seq] = None
        if len(self._acquires) > self.config.max_policies:
            self._acquires.popitem(last=False)

    # -- commands ----------------------------------------------------------------------------

    def execute(self, cmd: Command) -> list[Result]:
        """The result of `cmd` (several parts for a large dump); Refusal when refused."""
        try:
            return self._execute(cmd)
        except KernelError as e:
            raise e.refusal() from None
        finally:
            if isinstance(cmd, AddSa):
                cmd.sa.wipe()

    def _execute(self, cmd: Command) -> list[Result]:
        if isinstance(cmd, Hello):
            return [self._hello()]
        if isinstance(cmd, SpiRequest):
            self._check_seq(cmd.seq)
            self._check_sa_room()
            spi = self.backend.alloc_spi(cmd)
            self._sas.add(SaId(cmd.dst, spi, cmd.proto, cmd.mark))
            log.debug("alloc_spi %s spi=%#x reqid=%d", cmd.dst, spi, cmd.reqid)
            return [{"spi": spi}]
        if isinstance(cmd, AddSa):
            sa = cmd.sa
            if cmd.update:
                self._check_owned_sa(sa.id)
            else:
                self._check_seq(sa.seq)
                self._check_sa_room()
            self.backend.add_sa(sa, update=cmd.update)
            self._sas.add(sa.id)
            if log.isEnabledFor(logging.DEBUG):  # its arguments cost 1% of a request
                verb = "update_sa" if cmd.update else "add_sa"
                log.debug("%s %s spi=%#x reqid=%d %s", verb, sa.id.dst, sa.id.spi, sa.reqid, sa.enc)
            return [{}]
        if isinstance(cmd, GetSa):
            return [{"sa": sa_to_wire(self._owned_sa(cmd.id))}]
        if isinstance(cmd, DeleteSa):
            self._check_owned_sa(cmd.id)
            self.backend.delete_sa(cmd.id)
            self._sas.discard(cmd.id)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("delete_sa %s spi=%#x", cmd.id.dst, cmd.id.spi)
            return [{}]
        if isinstance(cmd, AddPolicy):
            pid = cmd.policy.id
            exists = cmd.update and self._check_owned_policy(pid, missing_ok=True)
            if not exists:
                self._check_policy_room()
            self.backend.add_policy(cmd.policy, update=cmd.update)
            self._policies.add(pid)
            verb = "update_policy" if cmd.update else "add_policy"
            if log.isEnabledFor(logging.DEBUG):  # text of 2 prefixes: 1/10 of a request
                log.debug("%s dir=%d %s", verb, pid.dir, _selector_text(pid))
            return [{}]
        if isinstance(cmd, DeletePolicy):
            self._check_owned_policy(cmd.id)
            self.backend.delete_policy(cmd.id)
            self._policies.discard(cmd.id)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("delete_policy dir=%d %s", cmd.id.dir, _selector_text(cmd.id))
            return [{}]
        if isinstance(cmd, ReadBytes):
            return [{"bytes": [self._bytes(sa_id) for sa_id in cmd.ids]}]
        if isinstance(cmd, Dump):
            return list(self._dump(cmd))
        return [self._flush(cmd)]

    def _hello(self) -> Result:
        c = self.config
        return {
            "version": p.VERSION,
            "backend": self.backend.name,
            "reqid_range": list(c.reqid_range),
            "priority_band": list(c.priority_band),
            "max_sas": c.max_sas,
            "max_policies": c.max_policies,
            "owned_sas": len(self._sas),
            "owned_policies": len(self._policies),
            "max_batch": p.MAX_BATCH,
            "max_counters": p.MAX_COUNTERS,
        }

    def _check_seq(self, seq: int) -> None:
        if seq and seq not in self._acquires:
            raise Refusal(p.ERR_FORBIDDEN, f"seq {seq} is not from an ACQUIRE of kink's")

    def _check_sa_room(self) -> None:
        if len(self._sas) >= self.config.max_sas:
            raise Refusal(p.ERR_LIMIT, f"kink already owns {self.config.max_sas} SAs")

    def _check_policy_room(self) -> None:
        if len(self._policies) >= self.config.max_policies:
            raise Refusal(p.ERR_LIMIT, f"kink already owns {self.config.max_policies} policies")

    def _check_owned_sa(self, sa_id: SaId) -> None:
        """Refuse a change to an SA kink does not own. An SA in the owned set is kink's without
        asking the kernel (the set follows the helper's own changes and, through the events,
        everyone else's: a deletion, or a replacement by an SA that is not kink's, takes it
        out), which saves a GETSA round trip on every update and delete; any other is read
        from the kernel, for the precise refusal (not found, or not owned)."""
        if sa_id not in self._sas:
            self._owned_sa(sa_id)

    def _owned_sa(self, sa_id: SaId) -> SaInfo:
        sa = self.backend.get_sa(sa_id)
        if not self.owns_sa(sa):
            raise Refusal(p.ERR_NOT_OWNED, f"SA spi={sa_id.spi:#x} has reqid {sa.reqid}")
        return sa

    def _bytes(self, sa_id: SaId) -> int | None:
        """The byte counter of one of kink's SAs; None for one gone or not kink's. Only an SA
        of the owned set is asked of the kernel: no other's counter is ever shown (nor its
        existence), and the kernel is spared a lookup of an SA that kink does not hold."""
        if sa_id not in self._sas:
            return None
        try:
            return self.backend.sa_bytes(sa_id)
        except KernelError as e:
            if e.not_found:  # expired or deleted since, its event not yet read
                return None
            raise

    def _check_owned_policy(self, pid: PolicyId, missing_ok: bool = False) -> bool:
        """True if kink owns the policy; False if it does not exist and missing_ok; else a
        Refusal. As for SAs (_check_owned_sa), one in the owned set is kink's without asking the
        kernel: the events take out a policy deleted or replaced by someone else."""
        if pid in self._policies:
            return True
        try:
            policy = self.backend.get_policy(pid)
        except KernelError as e:
            if missing_ok and e.not_found:
                return False
            raise
        if not self.owns_policy(policy):
            raise Refusal(p.ERR_NOT_OWNED, f"policy has priority {policy.spec.priority}")
        return True

    def _dump(self, cmd: Dump) -> Iterator[Result]:
        sas = [
            sa_to_wire(sa)
            for sa in (self.backend.dump_sas() if cmd.sas else [])
            if self.owns_sa(sa)
        ]
        policies = [
            policy_to_wire(pol)
            for pol in (self.backend.dump_policies() if cmd.policies else [])
            if self.owns_policy(pol)
        ]
        yield {"sas": sas[:DUMP_CHUNK], "policies": policies[:DUMP_CHUNK]}
        for i in range(DUMP_CHUNK, max(len(sas), len(policies)), DUMP_CHUNK):
            yield {"sas": sas[i : i + DUMP_CHUNK], "policies": policies[i : i + DUMP_CHUNK]}

    def _flush(self, cmd: Flush) -> Result:
        """Delete kink's own objects one by one. SAs first: while its policies remain, their
        traffic is dropped (or ACQUIREd), never sent in the clear."""
        policies = sas = 0
        if cmd.sas:
            for sa in self.backend.dump_sas():
                if self.owns_sa(sa):
                    sas += _deleted(self.backend.delete_sa, sa.id)
                    self._sas.discard(sa.id)
        if cmd.policies:
            for pol in self.backend.dump_policies():
                if self.owns_policy(pol):
                    policies += _deleted(self.backend.delete_policy, pol.spec.id)
                    self._policies.discard(pol.spec.id)
        log.info("flush: %d SAs, %d policies", sas, policies)
        return {"sas": sas, "policies": policies}


def _deleted(delete: Callable[[K], None], key: K) -> int:
    """1 if delete(key) deleted it, 0 if it was gone already (expired meanwhile)."""
    try:
        delete(key)
    except KernelError as e:
        if e.refusal().code != p.ERR_NOT_FOUND:
            raise
        return 0
    return 1


def _selector_text(pid: PolicyId) -> str:
    s = pid.selector
    return f"{s.src}->{s.dst} proto={s.proto}"
