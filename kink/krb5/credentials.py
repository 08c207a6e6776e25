"""Our host's Kerberos credentials: the TGT and the service tickets obtained with it.

RFC 4430 §3.2: an initiator needs a service ticket for the responder's principal; §9: it must
reuse one ticket across a transaction's retransmissions and get a new one only on an error such
as KRB_AP_ERR_TKT_EXPIRED, so tickets are cached here and refreshed ahead of expiry.
§3.1/§4.2.5: the TGT itself is handed to peers (KINK_TGT_REP) and its session key decrypts
user-to-user tickets; TGTs replaced by a refresh stay usable for that until they expire, so a
renewal does not strand peers holding user-to-user tickets.
"""

import os
import time
import uuid
from dataclasses import dataclass, field

from kink.krb5 import _lib
from kink.krb5.context import Context
from kink.krb5.errors import ERROR_TABLE_BASE_KRB5, KRB_AP_ERR_NO_TGT, Krb5Error
from kink.krb5.session_key import SessionKey

# Refresh a ticket when less than this many seconds remain (capped at half its lifetime, so
# short-lived tickets are not refetched on every use). Well above a KINK transaction's
# longest retransmission cycle (~31 s for 5 attempts, RFC 4430 §9).
DEFAULT_REFRESH_MARGIN = 600


@dataclass(frozen=True, eq=False)
class Ticket:
    """A ticket and its session key, ready for `Initiator.make_ap_req`. Plain data: it may be
    passed between threads and used with any Context."""

    creds: _lib.Creds = field(repr=False)

    @property
    def client(self) -> str:
        return self.creds.client

    @property
    def server(self) -> str:
        return self.creds.server

    @property
    def session_key(self) -> SessionKey:
        return self.creds.session_key

    @property
    def authtime(self) -> int:
        return self.creds.times.authtime

    @property
    def starttime(self) -> int:
        return self.creds.times.starttime

    @property
    def endtime(self) -> int:
        return self.creds.times.endtime

    @property
    def user_to_user(self) -> bool:
        """Encrypted in a peer TGT's session key (ENC-TKT-IN-SKEY, RFC 4120 §3.7)."""
        return self.creds.user_to_user

    @property
    def der(self) -> bytes:
        """The DER Ticket (what KINK_TGT_REP carries for a TGT, RFC 4430 §4.2.5)."""
        return self.creds.ticket

    def __repr__(self) -> str:
        kind = "user-to-user " if self.user_to_user else ""
        return (
            f"<{kind}Ticket {self.client} -> {self.server} enctype {self.session_key.enctype}"
            f" until {self.endtime}>"
        )

    def fresh(self, now: int, margin: int) -> bool:
        """Valid for more than `margin` seconds after `now` (margin capped at half the life)."""
        # The times read once, not through the properties (three Python calls): asked for the
        # ticket of every command sent (Credentials.cached_ticket, issue 9).
        times = self.creds.times
        margin = min(margin, (times.endtime - times.starttime) // 2)
        return times.endtime - now > margin


@dataclass(frozen=True)
class _Cached:
    ticket: Ticket
    peer_tgt: bytes | None  # the peer TGT a user-to-user ticket was obtained with


class Credentials:
    """Host credentials from a keytab, kept in a private credential cache.

    The ccache is MEMORY: unless `ccache_dir` is given (then a FILE: cache in that directory);
    never the user's default, and destroyed with this object.

    Threads: acquire, refresh_if_needed, get_ticket and get_u2u_ticket contact the KDC and
    block; call them from the one thread that uses `context` (the daemon: trio.to_thread, one
    call at a time). tgt, our_tgt, user_to_user_keys and cached_ticket only read Python state
    and may be called from any thread.
    """

    def __init__(
        self,
        context: Context,
        principal: str,
        keytab: str,
        *,
        ccache_dir: str | os.PathLike[str] | None = None,
        lifetime: int | None = None,
        refresh_margin: int = DEFAULT_REFRESH_MARGIN,
    ) -> None:
        self._raw = context.raw
        self._principal = self._raw.parse_principal(principal)
        self._keytab = self._raw.keytab(keytab)
        name = f"kink-{uuid.uuid4().hex}"
        if ccache_dir is None:
            ccache = f"MEMORY:{name}"
        else:
            ccache = f"FILE:{os.path.join(os.fspath(ccache_dir), name)}.ccache"
        self._ccache = self._raw.ccache(ccache)
        self._lifetime = lifetime
        self.refresh_margin = refresh_margin
        self._kdc_offset = 0
        self._tgt: Ticket | None = None
        self._old_tgts: tuple[Ticket, ...] = ()
        self._tickets: dict[str, _Cached] = {}

    @property
    def principal(self) -> str:
        return self._principal.name

    @property
    def ccache_name(self) -> str:
        return self._ccache.name

    @property
    def tgt(self) -> Ticket | None:
        """The current TGT, None before the first `acquire`."""
        return self._tgt

    def _now(self, now: int | None) -> int:
        # Python's clock plus the offset libkrb5 learned from the KDC at the last AS exchange
        # (kdc_timesync): ticket times are KDC times, and the readers below may run on a
        # thread that must not touch this object's krb5 context.
        return int(time.time()) + self._kdc_offset if now is None else now

    def acquire(self) -> Ticket:
        """Get a new TGT with the keytab (AS exchange; blocks) and make it current."""
        creds = self._raw.initial_creds_keytab(self._principal, self._keytab, self._lifetime)
        self._raw.store_tgt(self._ccache, self._principal, creds)
        tgt = Ticket(creds)
        self._kdc_offset = self._raw.time_offset()[0]
        now = self._now(None)
        old = self._old_tgts if self._tgt is None else (self._tgt, *self._old_tgts)
        self._old_tgts = tuple(t for t in old if t.endtime > now)
        self._tgt = tgt
        return tgt

    def refresh_if_needed(self, now: int | None = None) -> bool:
        """Acquire a new TGT if there is none or it is due for refresh; True if it did."""
        if self._tgt is not None and self._tgt.fresh(self._now(now), self.refresh_margin):
            return False
        self.acquire()
        return True

    def our_tgt(self) -> bytes:
        """Our TGT (DER) for a KINK_TGT_REP (RFC 4430 §4.2.5)."""
        if self._tgt is None:
            raise Krb5Error(ERROR_TABLE_BASE_KRB5 + KRB_AP_ERR_NO_TGT, "no TGT acquired yet")
        return self._tgt.der

    def user_to_user_keys(self, now: int | None = None) -> list[SessionKey]:
        """Session keys of the current TGT and of replaced ones not yet expired, newest first."""
        current = self._tgt
        if current is None:
            return []
        t = self._now(now)
        return [current.session_key] + [x.session_key for x in self._old_tgts if x.endtime > t]

    def cached_ticket(self, server: str, now: int | None = None) -> Ticket | None:
        """The cached ticket for `server` if not due for refresh; never contacts the KDC."""
        entry = self._tickets.get(server)
        if entry is None or not entry.ticket.fresh(self._now(now), self.refresh_margin):
            return None
        return entry.ticket

    def get_ticket(self, server: str, now: int | None = None) -> Ticket:
        """A ticket for `server`: the cached one, or a new one from the KDC (blocks).

        A user-to-user ticket due for refresh is renewed with the peer TGT it was obtained
        with. KDC_ERR_MUST_USE_USER2USER arrives as Krb5Error for the caller to switch to
        GETTGT (RFC 4430 §3.1).
        """
        t = self._now(now)
        entry = self._tickets.get(server)
        if entry is not None and entry.ticket.fresh(t, self.refresh_margin):
            return entry.ticket
        if entry is not None and entry.peer_tgt is not None:
            return self.get_u2u_ticket(server, entry.peer_tgt, now=t)
        return self._fetch(server, None, t)

    def get_u2u_ticket(self, server: str, peer_tgt: bytes, now: int | None = None) -> Ticket:
        """A user-to-user ticket for `server`, ENC-TKT-IN-SKEY with its TGT (blocks).

        Replaces the cached ticket for `server` only once obtained: RFC 4430 §3.7.1 says to
        keep the old one until then (a forged KINK_TGT_REP must not cost us a working ticket).
        """
        return self._fetch(server, peer_tgt, self._now(now))

    def forget_ticket(self, server: str) -> None:
        """Drop the cached ticket for `server` (after KRB_AP_ERR_TKT_EXPIRED, RFC 4430 §9)."""
        self._tickets.pop(server, None)

    def _fetch(self, server: str, peer_tgt: bytes | None, now: int) -> Ticket:
        self.refresh_if_needed(now)
        server_principal = self._raw.parse_principal(server)
        creds = self._raw.service_creds(self._ccache, self._principal, server_principal, peer_tgt)
        ticket = Ticket(creds)
        self._tickets[server] = _Cached(ticket, peer_tgt)
        return ticket
