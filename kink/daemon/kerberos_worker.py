"""Kerberos for the daemon: the blocking KDC calls in a worker thread, the rest on trio's.

MIT krb5 contexts are not thread-safe (kink.krb5.context). The KDC calls (TGT with the keytab,
service and user-to-user tickets) block, so they run through trio.to_thread with a Context of
their own, one call at a time (CapacityLimiter(1)); the engine's Krb5Port (AP-REQ/AP-REP/
KRB-ERROR work, which never blocks) uses another Context on the trio thread. Tickets cross
between them as plain data (Credentials.cached_ticket only reads Python state).
"""

import logging
import os
from pathlib import Path

import trio

from kink.engine.events import FetchTicket, FetchU2uTicket, TicketResult
from kink.engine.kerberos import Krb5Port
from kink.krb5.acceptor import Acceptor
from kink.krb5.context import Context
from kink.krb5.credentials import Credentials
from kink.krb5.errors import Krb5Error
from kink.krb5.initiator import Initiator

log = logging.getLogger("kinkd.krb5")

# The TGT is checked this often; Credentials refreshes it ahead of expiry (refresh_margin).
REFRESH_INTERVAL = 60.0
RETRY_INTERVAL = 10.0  # after a failed AS exchange (KDC unreachable, bad keytab)


class KerberosWorker:
    def __init__(
        self,
        principal: str,
        keytab: Path,
        *,
        krb5_config: Path | None,
        ccache_dir: Path | None,
        rcache_dir: Path,
    ) -> None:
        config = None if krb5_config is None else os.fspath(krb5_config)
        self._worker_context = Context(config)
        self.credentials = Credentials(
            self._worker_context, principal, os.fspath(keytab), ccache_dir=ccache_dir
        )
        context = Context(config, rcache_dir=rcache_dir)
        acceptor = Acceptor(
            context, principal, keytab=os.fspath(keytab), credentials=self.credentials
        )
        self.port = Krb5Port(Initiator(context), acceptor, self.credentials)
        self._limiter = trio.CapacityLimiter(1)
        self.fetches = 0
        self.failures = 0

    @property
    def tgt_expiry(self) -> int | None:
        tgt = self.credentials.tgt
        return None if tgt is None else tgt.endtime

    async def refresh(self) -> bool:
        """Get or renew the TGT if due; False (logged) when the KDC said no or was away."""
        try:
            renewed = await trio.to_thread.run_sync(
                self.credentials.refresh_if_needed, limiter=self._limiter
            )
        except Krb5Error as exc:
            self.failures += 1
            log.error("cannot get a TGT for %s: %s", self.credentials.principal, _name(exc))
            return False
        if renewed:
            log.info("TGT for %s valid until %d", self.credentials.principal, self.tgt_expiry)
        return True

    async def keep_fresh(self) -> None:
        """Renew the TGT ahead of expiry, forever (a task of the daemon's nursery)."""
        while True:
            ok = await self.refresh()
            await trio.sleep(REFRESH_INTERVAL if ok else RETRY_INTERVAL)

    async def fetch(self, action: FetchTicket | FetchU2uTicket) -> TicketResult:
        """A service (or user-to-user) ticket into the credentials; the engine's answer."""
        credentials = self.credentials
        try:
            if isinstance(action, FetchU2uTicket):
                peer_tgt = action.peer_tgt
                await trio.to_thread.run_sync(
                    lambda: credentials.get_u2u_ticket(action.principal, peer_tgt),
                    limiter=self._limiter,
                )
            else:
                await trio.to_thread.run_sync(
                    credentials.get_ticket, action.principal, limiter=self._limiter
                )
        except Krb5Error as exc:
            self.failures += 1
            log.warning("no ticket for %s: %s", action.principal, _name(exc))
            return TicketResult(action.token, False, exc.protocol_code)
        self.fetches += 1
        log.debug("ticket for %s", action.principal)
        return TicketResult(action.token, True)


def _name(exc: Krb5Error) -> str:
    return exc.name or str(exc)
