"""What the engine needs from Kerberos (KerberosPort), and Krb5Port, the adapter over kink.krb5.

None of these calls contacts the KDC: tickets are fetched by the daemon (FetchTicket /
FetchU2uTicket actions, in a thread) into the Credentials the port reads. The session key of
every ticket comes back as one kink.crypto Key per session key, since a Key caches its derived
keys (RFC 4430 §7, §8: the ticket session key is the only key KINK uses).
"""

from dataclasses import dataclass, field
from typing import Protocol

from kink.crypto.rfc3961 import Key
from kink.krb5.acceptor import Accepted, Acceptor, is_user_to_user
from kink.krb5.credentials import Credentials, Ticket
from kink.krb5.errors import KRB_AP_ERR_BAD_INTEGRITY, Krb5Error, error_name
from kink.krb5.initiator import ApReqContext, Initiator
from kink.krb5.session_key import SessionKey

_KEY_CACHE_LIMIT = 4096
_BAD_INTEGRITY = "KRB_AP_ERR_BAD_INTEGRITY"  # error_name(KRB_AP_ERR_BAD_INTEGRITY), RFC 4120 §7.5.9


class NeedTicket(Exception):
    """No usable ticket for the principal is cached: fetch one (FetchTicket) and retry."""

    def __init__(self, principal: str) -> None:
        super().__init__(principal)
        self.principal = principal


# Not frozen (issue 4): one per AP-REQ, only read after it is built; a frozen dataclass pays
# object.__setattr__ for every field.
@dataclass(eq=False, slots=True)
class AcceptedRequest:
    """An AP-REQ the responder verified: the client, the ticket session key and what
    make_ap_rep / make_krb_error need (handle)."""

    client: str
    key: Key = field(repr=False)
    ctime: int
    cusec: int
    user_to_user: bool
    handle: object = field(repr=False)


class KerberosError(Exception):
    """A Kerberos failure: code is the RFC 4120 protocol number when there is one.

    accepted: set for the time errors (KRB_AP_ERR_SKEW, _TKT_EXPIRED, _TKT_NYV) when the ticket
    still decrypted, so that the error can be answered authenticated (RFC 4430 §3.5).
    ap_req: the failing AP-REQ, if any, for user_to_user."""

    # Slots: every forged AP-REQ builds one (issue 9), as Krb5Error; BaseException still gives
    # each instance a dict for anything else set on it.
    __slots__ = ("_ap_req", "accepted", "code", "name")

    def __init__(
        self,
        code: int | None,
        name: str,
        *,
        accepted: AcceptedRequest | None = None,
        ap_req: bytes | None = None,
    ) -> None:
        # No super().__init__: BaseException.__new__ has stored (code, name) as args already.
        self.code = code
        self.name = name
        self.accepted = accepted
        self._ap_req = ap_req

    @property
    def user_to_user(self) -> bool:
        """The failing AP-REQ carried a user-to-user ticket (RFC 4430 §3.7.1). Read when asked,
        not for every refusal: the responder asks only when it may answer with its TGT, after
        its rate limit, so that a forged request is not parsed twice (issue 9)."""
        if self._ap_req is None:
            return False
        try:
            return is_user_to_user(self._ap_req)
        except Krb5Error:
            return False


@dataclass(frozen=True, slots=True)
class KrbErrorView:
    """The parts of a received KRB-ERROR the engine acts on (RFC 4120 §5.9.1)."""

    code: int
    name: str
    stime: int
    susec: int
    ctime: int | None
    cusec: int | None


class KerberosPort(Protocol):
    def ticket_for(self, principal: str) -> object:
        """A cached ticket for `principal` (opaque); NeedTicket if none is usable."""
        ...

    def ticket_key(self, ticket: object) -> Key:
        """The session key of a ticket (the initiator keys its optimistic SA with it)."""
        ...

    def make_ap_req(self, ticket: object) -> tuple[bytes, object]:
        """A raw AP-REQ with a fresh authenticator and its handle for verify_ap_rep."""
        ...

    def verify_ap_rep(self, handle: object, ap_rep: bytes) -> Key:
        """The ticket session key if `ap_rep` answers the AP-REQ of `handle`; KerberosError."""
        ...

    def handle_time(self, handle: object) -> tuple[int, int]:
        """ctime/cusec of the AP-REQ behind `handle` (to match an echoing KRB-ERROR)."""
        ...

    def forged_ticket(self, ap_req: bytes, now: float) -> KerberosError | None:
        """The KerberosError accept() would raise for an AP-REQ whose ticket is forged (made,
        not raised); None when accept() must decide. Leaves no state, and costs less than
        accept(): the engine asks it before it decodes a command (issue 9). A ticket it found
        valid is not decrypted again by accept(). `now`: the engine's time (its seconds gate
        the keytab's reload, without a clock read of its own)."""
        ...

    def accept(self, ap_req: bytes) -> AcceptedRequest:
        """Verify an AP-REQ with the replay cache; KerberosError."""
        ...

    def make_ap_rep(self, accepted: AcceptedRequest) -> bytes: ...

    def make_krb_error(self, code: int, accepted: AcceptedRequest | None) -> bytes:
        """A KRB-ERROR; with `accepted`, echoing the client's ctime/cusec (§3.5)."""
        ...

    def parse_krb_error(self, data: bytes) -> KrbErrorView:
        """Decode a KRB-ERROR; KerberosError if it is not one."""
        ...

    def adopt_clock_skew(self, stime: int, susec: int) -> None: ...

    def our_tgt(self) -> bytes:
        """Our TGT (DER) for KINK_TGT_REP; KerberosError if there is none."""
        ...

    def forget_ticket(self, principal: str) -> None: ...


# libkrb5 code -> (protocol number, name) of the KerberosErrors made so far: every refused
# AP-REQ (each forged CREATE, issue 9) maps its code, and there are few codes (bounded anyway).
_NAMES: dict[int, tuple[int | None, str]] = {}


def _error(exc: Krb5Error, ap_req: bytes | None = None) -> KerberosError:
    named = _NAMES.get(exc.code)
    if named is None:
        code = exc.protocol_code  # once: Krb5Error.name would map the code again
        name = None if code is None else error_name(code)
        named = (code, name or f"krb5 error {exc.code}")
        if len(_NAMES) < _KEY_CACHE_LIMIT:
            _NAMES[exc.code] = named
    return KerberosError(*named, ap_req=ap_req)


class Krb5Port:
    """KerberosPort over kink.krb5: one Initiator and one Acceptor on the trio thread's
    Context, and the host's Credentials (read only here; the daemon fetches)."""

    def __init__(self, initiator: Initiator, acceptor: Acceptor, credentials: Credentials):
        self._initiator = initiator
        self._acceptor = acceptor
        self._credentials = credentials
        # Keyed by (enctype, material) rather than by the SessionKey: a tuple of an int and
        # bytes hashes and compares in C, a dataclass through Python methods (issue 4).
        self._keys: dict[tuple[int, bytes], Key] = {}

    def _key(self, session_key: SessionKey) -> Key:
        index = (session_key.enctype, session_key.material)
        key = self._keys.get(index)
        if key is None:
            if len(self._keys) >= _KEY_CACHE_LIMIT:
                self._keys.clear()  # the Keys stay valid for whoever still holds them
            key = self._keys[index] = Key(session_key.enctype, session_key.material)
        return key

    def ticket_for(self, principal: str) -> object:
        ticket = self._credentials.cached_ticket(principal)
        if ticket is None:
            raise NeedTicket(principal)
        return ticket

    def ticket_key(self, ticket: object) -> Key:
        assert isinstance(ticket, Ticket)
        return self._key(ticket.session_key)

    def make_ap_req(self, ticket: object) -> tuple[bytes, object]:
        assert isinstance(ticket, Ticket)
        try:
            return self._initiator.make_ap_req(ticket)
        except Krb5Error as exc:
            raise _error(exc) from None

    def verify_ap_rep(self, handle: object, ap_rep: bytes) -> Key:
        assert isinstance(handle, ApReqContext)
        try:
            return self._key(self._initiator.verify_ap_rep(handle, ap_rep))
        except Krb5Error as exc:
            raise _error(exc) from None

    def handle_time(self, handle: object) -> tuple[int, int]:
        assert isinstance(handle, ApReqContext)
        try:
            return handle.ctime, handle.cusec
        except Krb5Error as exc:
            raise _error(exc) from None

    def forged_ticket(self, ap_req: bytes, now: float) -> KerberosError | None:
        if not self._acceptor.forged(ap_req, int(now)):
            return None
        # What accept() raises for it (_error of rd_req's KRB_AP_ERR_BAD_INTEGRITY), made
        # without a Krb5Error first (issue 9: every forged command).
        return KerberosError(KRB_AP_ERR_BAD_INTEGRITY, _BAD_INTEGRITY, ap_req=ap_req)

    def accept(self, ap_req: bytes) -> AcceptedRequest:
        try:
            accepted = self._acceptor.accept(ap_req)
        except Krb5Error as exc:
            # Raised without a local naming it: its traceback holds this frame, and a local
            # holding the error would make a reference cycle (with the failed rd_req's auth
            # context) that only the garbage collector frees, one per forged AP-REQ (issue 9).
            raise self._refusal(exc, ap_req) from None
        return AcceptedRequest(
            accepted.client_principal,
            self._key(accepted.session_key),
            accepted.ctime,
            accepted.cusec,
            accepted.user_to_user,
            accepted,
        )

    def _refusal(self, exc: Krb5Error, ap_req: bytes) -> KerberosError:
        """The KerberosError for a refused AP-REQ, authenticated if it still decrypted
        (accepted: the time errors, RFC 4430 §3.5)."""
        err = _error(exc, ap_req)
        a = exc.accepted
        if a is not None:
            err.accepted = AcceptedRequest(
                a.client_principal,
                self._key(a.session_key),
                a.ctime,
                a.cusec,
                a.user_to_user,
                a,
            )
        return err

    def make_ap_rep(self, accepted: AcceptedRequest) -> bytes:
        handle = accepted.handle
        assert isinstance(handle, Accepted)
        try:
            return self._acceptor.make_ap_rep(handle)
        except Krb5Error as exc:
            raise _error(exc) from None

    def make_krb_error(self, code: int, accepted: AcceptedRequest | None) -> bytes:
        if accepted is None:
            return self._acceptor.make_krb_error(code)
        return self._acceptor.make_krb_error(
            code, ctime=accepted.ctime, cusec=accepted.cusec, client=accepted.client
        )

    def parse_krb_error(self, data: bytes) -> KrbErrorView:
        try:
            info = self._initiator.parse_krb_error(data)
        except Krb5Error as exc:
            raise _error(exc) from None
        name = error_name(info.error_code) or str(info.error_code)
        return KrbErrorView(info.error_code, name, info.stime, info.susec, info.ctime, info.cusec)

    def adopt_clock_skew(self, stime: int, susec: int) -> None:
        self._initiator.adopt_clock_skew(stime, susec)

    def our_tgt(self) -> bytes:
        try:
            return self._credentials.our_tgt()
        except Krb5Error as exc:
            raise _error(exc) from None

    def forget_ticket(self, principal: str) -> None:
        self._credentials.forget_ticket(principal)
