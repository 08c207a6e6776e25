"""The initiator's side of the Kerberos exchange in a KINK command (RFC 4430 §3.2, §3.5, §9).

None of these calls contacts the KDC: they run on the daemon's trio thread, with that thread's
Context. Tickets come from Credentials.
"""

from dataclasses import dataclass

from kink.krb5 import _der, _lib
from kink.krb5.context import Context
from kink.krb5.credentials import Ticket
from kink.krb5.errors import error_name
from kink.krb5.session_key import SessionKey


class ApReqContext:
    """One AP-REQ sent and not yet answered: what is needed to check its AP-REP.

    RFC 4430 §9: every retransmission carries a new authenticator with the same ticket, and
    the initiator keeps the list of outstanding ones, since a REPLY may answer any of them.
    ctime/cusec (to match a KRB-ERROR that echoes them) are decrypted from the AP-REQ on first
    use: libkrb5 offers no safe way to read them back, and most AP-REQs never need them.
    """

    __slots__ = ("_ap_req", "_auth_context", "_raw", "_time", "ticket")

    def __init__(self, raw: _lib.RawContext, ticket: Ticket, ap_req: bytes, ac: _lib.AuthContext):
        self._raw = raw
        self.ticket = ticket
        self._ap_req = ap_req
        self._auth_context = ac
        self._time: tuple[int, int] | None = None

    @property
    def session_key(self) -> SessionKey:
        """The ticket session key: the key of every KINK operation (RFC 4430 §7)."""
        return self.ticket.session_key

    @property
    def auth_context(self) -> _lib.AuthContext:
        return self._auth_context

    def _authenticator_time(self) -> tuple[int, int]:
        if self._time is None:
            parts = _der.parse_ap_req(self._ap_req)
            auth = self._raw.read_authenticator(parts, self.ticket.session_key)
            self._time = (auth.ctime, auth.cusec)
        return self._time

    @property
    def ctime(self) -> int:
        return self._authenticator_time()[0]

    @property
    def cusec(self) -> int:
        return self._authenticator_time()[1]

    def __repr__(self) -> str:
        return f"<ApReqContext for {self.ticket.server}>"


@dataclass(frozen=True)
class KrbErrorInfo:
    """A decoded KRB-ERROR (RFC 4120 §5.9.1). error_code is the protocol number (e.g. 37).

    ctime/cusec are the client time the responder echoed, None when absent (RFC 4430 §3.5:
    present when the responder could read our authenticator). KINK ignores e_text and e_data
    beyond logging (RFC 4430 §4.2.3).
    """

    error_code: int
    stime: int
    susec: int
    ctime: int | None
    cusec: int | None
    client: str | None
    server: str | None
    e_text: str | None
    e_data: bytes | None

    @property
    def name(self) -> str | None:
        return error_name(self.error_code)

    def echoes(self, ctx: ApReqContext) -> bool:
        """Whether this error carries the ctime/cusec of the AP-REQ behind `ctx`."""
        return (self.ctime, self.cusec) == (ctx.ctime, ctx.cusec)


class Initiator:
    """Makes AP-REQs, checks AP-REPs and reads KRB-ERRORs with one Context."""

    def __init__(self, context: Context) -> None:
        self._raw = context.raw

    def make_ap_req(self, ticket: Ticket) -> tuple[bytes, ApReqContext]:
        """A raw AP-REQ (RFC 4430 §4.2.1) with a fresh authenticator for `ticket`.

        Mutual authentication is requested; the authenticator has no checksum, no subkey and
        no sequence number, as KINK keys everything on the ticket session key (§7). For a
        user-to-user ticket the use-session-key option is set (RFC 4120 §3.7). An expired
        or not yet valid ticket fails with KRB_AP_ERR_TKT_EXPIRED / _NYV.
        """
        options = _lib.AP_OPTS_MUTUAL_REQUIRED
        if ticket.user_to_user:
            options |= _lib.AP_OPTS_USE_SESSION_KEY
        data, ac = self._raw.mk_req(ticket.creds, options)
        return data, ApReqContext(self._raw, ticket, data, ac)

    def verify_ap_rep(self, ctx: ApReqContext, ap_rep: bytes) -> SessionKey:
        """Check an AP-REP against the AP-REQ of `ctx` and return the ticket session key.

        krb5_rd_rep decrypts it with the session key and requires the echo of this AP-REQ's
        ctime/cusec (RFC 4430 §4.2.2 freshness); a mismatch (an AP-REP for another of the
        transaction's AP-REQs) fails with KRB5_MUTUAL_FAILED. A subkey in the AP-REP is
        ignored (§7).
        """
        self._raw.rd_rep(ctx.auth_context, ap_rep)
        return ctx.session_key

    def parse_krb_error(self, data: bytes) -> KrbErrorInfo:
        """Decode a KRB-ERROR. Decoding authenticates nothing: see RFC 4430 §3.5, §4.2.3."""
        f = self._raw.rd_error(data)
        text = f.text.rstrip(b"\0")
        return KrbErrorInfo(
            error_code=f.error,
            stime=f.stime,
            susec=f.susec,
            ctime=f.ctime or None,
            cusec=f.cusec if f.ctime else None,
            client=f.client,
            server=f.server,
            e_text=text.decode("utf-8", "replace") if text else None,
            e_data=f.e_data or None,
        )

    def adopt_clock_skew(self, stime: int, susec: int) -> None:
        """Set this Context's clock to the responder's time from a KRB_AP_ERR_SKEW error.

        RFC 4430 §3.5: only for an error that was authenticated (it came with an AP-REP and
        a valid Cksum and echoes one of our authenticators); an unauthenticated one MUST NOT
        change the clock, or an attacker could make us emit authenticators for a time of its
        choosing. Later AP-REQs of this Context carry the offset.
        """
        self._raw.set_real_time(stime, susec)
