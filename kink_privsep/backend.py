"""What the helper needs from the kernel, and XfrmBackend, the real one (netlink XFRM).

RecordingBackend (recording.py) is the in-memory stand-in with the same behaviour, for tests
and benchmarks on kernels without ESP. Requests reach either only after validation.
"""

from __future__ import annotations

import logging
from typing import Protocol

from kink_privsep import xfrm
from kink_privsep.errors import KernelError
from kink_privsep.model import (
    EventsLost,
    KernelEvent,
    PolicyId,
    PolicyInfo,
    PolicySpec,
    SaId,
    SaInfo,
    SaSpec,
    SpiRequest,
)
from kink_privsep.netlink import NetlinkSocket

log = logging.getLogger(__name__)

EVENT_RCVBUF = 4 << 20  # bytes: room for a burst of a few thousand events


class Backend(Protocol):
    """Kernel operations; failures raise errors.KernelError with the kernel's errno."""

    name: str

    def fileno(self) -> int:
        """Readable when events() has something."""
        ...

    def events(self) -> list[KernelEvent]:
        """Kernel events since the last call, in order, without blocking; not the echo of
        this backend's own changes."""
        ...

    def alloc_spi(self, req: SpiRequest) -> int: ...

    def add_sa(self, sa: SaSpec, *, update: bool) -> None: ...

    def get_sa(self, sa_id: SaId) -> SaInfo: ...

    def delete_sa(self, sa_id: SaId) -> None: ...

    def sa_bytes(self, sa_id: SaId) -> int:
        """The SA's byte counter (struct xfrm_lifetime_cur's bytes), nothing else of it."""
        ...

    def dump_sas(self) -> list[SaInfo]: ...

    def add_policy(self, policy: PolicySpec, *, update: bool) -> None: ...

    def get_policy(self, pid: PolicyId) -> PolicyInfo: ...

    def delete_policy(self, pid: PolicyId) -> None: ...

    def dump_policies(self) -> list[PolicyInfo]: ...

    def close(self) -> None: ...


class XfrmBackend:
    """NETLINK_XFRM in the helper's network namespace: one socket for requests (2 syscalls
    each), one subscribed to the ACQUIRE, EXPIRE, SA and POLICY multicast groups."""

    name = "xfrm"

    def __init__(self) -> None:
        self._req = NetlinkSocket(xfrm.NETLINK_XFRM)
        groups = xfrm.XFRMGRP_ACQUIRE | xfrm.XFRMGRP_EXPIRE | xfrm.XFRMGRP_SA | xfrm.XFRMGRP_POLICY
        try:
            self._events = NetlinkSocket(xfrm.NETLINK_XFRM, groups, rcvbuf=EVENT_RCVBUF)
        except BaseException:
            self._req.close()
            raise
        try:
            self._events.drop_echoes(self._req.portid, xfrm.CHANGE_MESSAGES)
        except OSError as e:  # only an optimisation: _decode_event skips them as well
            log.warning("no socket filter for the echoes of our own changes: %s", e)

    def fileno(self) -> int:
        return self._events.fileno()

    def events(self) -> list[KernelEvent]:
        decoded, lost = self._events.pending(self._decode_event)
        events = [e for e in decoded if e is not None]
        return [*events, EventsLost()] if lost else events

    def _decode_event(self, kind: int, pid: int, body: memoryview) -> KernelEvent | None:
        # The kernel copies a request's nlmsg_pid into the multicast it causes: our own portid
        # marks the echo of our own change, which the service has tracked already.
        if pid == self._req.portid and kind in xfrm.CHANGE_MESSAGES:
            return None
        try:
            return xfrm.decode_event(kind, body)
        except KernelError as e:  # an event we cannot read is an event lost: resync
            log.warning("undecodable XFRM event %d: %s", kind, e)
            return EventsLost()

    def alloc_spi(self, req: SpiRequest) -> int:
        return self._req.request(xfrm.encode_allocspi(req), xfrm.decode_sa)[0].id.spi

    def add_sa(self, sa: SaSpec, *, update: bool) -> None:
        self._req.request(xfrm.encode_newsa(sa, update))

    def get_sa(self, sa_id: SaId) -> SaInfo:
        return self._req.request(xfrm.encode_sa_id(xfrm.XFRM_MSG_GETSA, sa_id), xfrm.decode_sa)[0]

    def delete_sa(self, sa_id: SaId) -> None:
        self._req.request(xfrm.encode_sa_id(xfrm.XFRM_MSG_DELSA, sa_id))

    def sa_bytes(self, sa_id: SaId) -> int:
        # XFRM_MSG_GETAE, not GETSA: the reply holds the counters alone (no keys, selector or
        # algorithms to build, copy and zero) and is read with no parse of the SA's fields.
        return self._req.request(xfrm.encode_getae(sa_id), xfrm.decode_ae_bytes)[0]

    def dump_sas(self) -> list[SaInfo]:
        return self._req.request(xfrm.encode_dump(xfrm.XFRM_MSG_GETSA), xfrm.decode_sa)

    def add_policy(self, policy: PolicySpec, *, update: bool) -> None:
        self._req.request(xfrm.encode_newpolicy(policy, update))

    def get_policy(self, pid: PolicyId) -> PolicyInfo:
        msg = xfrm.encode_policy_id(xfrm.XFRM_MSG_GETPOLICY, pid)
        return self._req.request(msg, xfrm.decode_policy)[0]

    def delete_policy(self, pid: PolicyId) -> None:
        self._req.request(xfrm.encode_policy_id(xfrm.XFRM_MSG_DELPOLICY, pid))

    def dump_policies(self) -> list[PolicyInfo]:
        return self._req.request(xfrm.encode_dump(xfrm.XFRM_MSG_GETPOLICY), xfrm.decode_policy)

    def close(self) -> None:
        self._req.close()
        self._events.close()
