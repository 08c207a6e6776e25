"""The responder's side of the Kerberos exchange in a KINK command (RFC 4430 §3.2, §3.5).

None of these calls contacts the KDC; they run with the Context of the daemon's trio thread.
"""

import os
from dataclasses import dataclass, field
from time import monotonic

from kink.krb5 import _der, _lib, replay
from kink.krb5.context import Context
from kink.krb5.credentials import Credentials
from kink.krb5.errors import (
    ERROR_TABLE_BASE_KRB5,
    KRB_AP_ERR_BAD_INTEGRITY,
    KRB_AP_ERR_BADKEYVER,
    KRB_AP_ERR_NO_TGT,
    KRB_AP_ERR_NOKEY,
    KRB_AP_ERR_NOT_US,
    KRB_AP_ERR_REPEAT,
    KRB_AP_ERR_SKEW,
    KRB_AP_ERR_TKT_EXPIRED,
    KRB_AP_ERR_TKT_NYV,
    KRB_AP_ERR_USER_TO_USER_REQUIRED,
    Krb5Error,
)
from kink.krb5.session_key import SessionKey
from kink.krb5.ticket_check import TicketCheck

# rd_req failures that still let the responder prove it read the AP-REQ (RFC 4430 §3.5).
_TIME_ERRORS = frozenset({KRB_AP_ERR_SKEW, KRB_AP_ERR_TKT_EXPIRED, KRB_AP_ERR_TKT_NYV})
# rd_req failures for a ticket whose key version or enctype the keytab (copy) lacks.
_KEY_NOT_IN_KEYTAB = frozenset({KRB_AP_ERR_BADKEYVER, KRB_AP_ERR_NOKEY})
_MAX_PROTOCOL_CODE = 127


# Not frozen (issue 4): one per AP-REQ, only read after it is built; a frozen dataclass pays
# object.__setattr__ for every field.
@dataclass(eq=False, slots=True)
class Accepted:
    """An AP-REQ the responder read: who, with which session key, and the client's time.

    session_key is the TICKET session key (RFC 4430 §7); authenticator subkeys are ignored.
    """

    client_principal: str
    server_principal: str
    session_key: SessionKey = field(repr=False)
    ctime: int
    cusec: int
    ticket_authtime: int
    ticket_starttime: int
    ticket_endtime: int
    user_to_user: bool
    auth_context: _lib.AuthContext = field(repr=False)


def is_user_to_user(ap_req: bytes) -> bool:
    """Whether an AP-REQ sets use-session-key: its ticket is encrypted in a TGT session key.

    RFC 4430 §3.7.1: a responder that cannot decrypt such a ticket answers with its current
    TGT (KINK_TGT_REP) instead of an error.
    """
    return bool(_der.ap_options(ap_req) & _lib.AP_OPTS_USE_SESSION_KEY)


def _error(code: int, message: str) -> Krb5Error:
    return Krb5Error(ERROR_TABLE_BASE_KRB5 + code, message)


def _replayed() -> Krb5Error:
    # libkrb5's text for the code its own replay cache raised.
    code = ERROR_TABLE_BASE_KRB5 + KRB_AP_ERR_REPEAT
    return Krb5Error(code, _lib.message_for(code))


class Acceptor:
    """Accepts AP-REQs for `principal` with a replay cache.

    keytab: the service keys for ordinary tickets (None for a host that only does
    user-to-user). credentials: our TGTs, whose session keys decrypt user-to-user tickets
    (RFC 4120 §3.7); None disables user-to-user. The replay cache (kink.krb5.replay) is the
    file Context(rcache_dir=...) names, shared by every Acceptor on it in this process.
    """

    def __init__(
        self,
        context: Context,
        principal: str,
        *,
        keytab: str | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        if keytab is None and credentials is None:
            raise ValueError("an Acceptor needs a keytab, credentials for user-to-user, or both")
        self._raw = context.raw
        self._principal = self._raw.parse_principal(principal)
        self._keytab_name = keytab
        # The file behind a FILE: (or prefix-less) keytab name, None for other types.
        self._keytab_path: str | None = None
        if keytab is not None:
            prefix, sep, path = keytab.partition(":")
            if not sep:
                self._keytab_path = keytab
            elif prefix.upper() == "FILE":
                self._keytab_path = path
        self._keytab_stamp: tuple[int, int, int, int] | None = None
        self._keytab_checked = -1  # the second (monotonic: _load_keytab) of the last stat
        self._keytab: _lib.Keytab | None = None
        # The keys of the keytab copy, to refuse a forged ticket without rd_req (issue 9).
        self._ticket_check: TicketCheck | None = None
        # The last AP-REQ forged() let through and its usual_head, for the accept() after it.
        self._passed: tuple[bytes, tuple[int, bytes]] | None = None
        if keytab is not None:
            self._load_keytab(keytab, None)
        self._credentials = credentials
        self._clock_skew = self._raw.clock_skew()
        self._replay = replay.open_replay_cache(context.rcache_path, self._raw.now()[0])

    def _load_keytab(self, name: str, second: int | None) -> bool:
        """Copy the keytab into a MEMORY: one when it changed (or first); whether it did.

        A FILE: keytab is re-opened, locked and parsed by every krb5_rd_req; the copy saves
        that. Its file's (inode, size, mtime, ctime) is compared instead, a stat(): at the
        first accept of each second (`second`: of time.monotonic, or of the engine's clock for
        forged(), which the engine asks with the time it has; None: now, whatever the time),
        not at every one (a stat per forged AP-REQ was ~5 k instructions, issue 9). Rotation
        (kadmin ktadd, a new kvno) still takes effect at once: a ticket whose key version or
        enctype the copy lacks looks at the file again (_accept_with). A file missing or
        unreadable is looked at on every accept. Other keytab types (MEMORY:, ...) are used as
        they are.
        """
        path = self._keytab_path
        if path is None:
            # Not copied: its keys may change under us, so no TicketCheck either.
            if self._keytab is None:
                self._keytab = self._raw.keytab(name)
            return False
        if second is not None:
            if second == self._keytab_checked and self._keytab_stamp is not None:
                return False
            self._keytab_checked = second
        try:
            st = os.stat(path)
        except OSError:
            # Missing or unreadable: let libkrb5 report it at rd_req as it would have.
            changed = self._keytab_stamp is not None
            self._keytab, self._keytab_stamp = self._raw.keytab(name), None
            self._ticket_check = None
            return changed
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if stamp == self._keytab_stamp:
            return False
        self._keytab = copy = self._raw.memory_copy(self._raw.keytab(name))
        self._ticket_check = TicketCheck(self._raw, self._principal, copy)
        self._keytab_stamp = stamp
        return True

    @property
    def principal(self) -> str:
        return self._principal.name

    def accept(self, ap_req: bytes) -> Accepted:
        """Verify an AP-REQ (krb5_rd_req: ticket, authenticator, replay, times).

        Failures raise Krb5Error. For KRB_AP_ERR_SKEW, _TKT_EXPIRED and _TKT_NYV whose ticket
        and authenticator did decrypt, the error carries `accepted` (session key, client
        ctime/cusec, an auth context for make_ap_rep) so that the engine can answer with
        AP-REP + KINK_ENCRYPT{KINK_KRB_ERROR} + Cksum (RFC 4430 §3.5). A replayed AP-REQ fails
        with KRB_AP_ERR_REPEAT before any time check, so never gets an authenticated answer.

        Replays (RFC 4120 §3.2.3): the authenticator's tag is looked up before krb5_rd_req and
        remembered only once rd_req authenticated it (accepted, or a time error answered with
        authentication), so an unauthenticated packet leaves no state.

        A ticket under a keytab key that fails its integrity check is refused before rd_req,
        with rd_req's own error, after one decryption (kink.krb5.ticket_check, issue 9), and
        before its authenticator's replay tag is made or looked up: rd_req too decrypts the
        ticket before its replay check (MIT 1.20 rd_req_dec.c), and the check leaves no state.
        """
        clock = self._raw.now()
        now = clock[0]
        cache = self._replay
        tag: bytes | None = None
        malformed: Krb5Error | None = None
        passed, self._passed = self._passed, None
        if passed is None or passed[0] != ap_req:
            # Not the AP-REQ forged() let through just now (the engine asks it before decoding
            # the command): read and checked here, by forged() all the same. A forged ticket is
            # refused without the SHA-256 of its replay tag (issue 9); _verify takes the keytab
            # as loaded here.
            if self.forged(ap_req, int(monotonic())):
                assert self._ticket_check is not None  # forged() found it so
                raise self._ticket_check.error()
            passed, self._passed = self._passed, None
        # The usual encoding gives the replay tag's octets and the options in one reading
        # (usual_head, in forged(); a forged request costs one, issue 9); any other is read
        # field by field.
        head = None if passed is None else passed[1]
        options: int | None = None
        if head is not None:
            options = head[0]
            tag = replay.cipher_tag(head[1])
        else:
            try:
                tag = replay.authenticator_tag(ap_req)
            except Krb5Error as e:
                malformed = e  # rd_req's own error for it stands
        if tag is not None and cache.seen(tag, now):
            raise _replayed()
        try:
            accepted = self._verify(ap_req, options, clock)
        except Krb5Error as e:
            authenticated = e.accepted
            if (
                tag is not None
                and authenticated is not None
                and not cache.remember(tag, authenticated.ctime + self._clock_skew, now)
            ):
                raise _replayed() from None
            raise
        if malformed is not None:
            # libkrb5 read an AP-REQ the replay cache cannot tag: refused, never unprotected.
            raise malformed
        if tag is not None and not cache.remember(tag, accepted.ctime + self._clock_skew, now):
            raise _replayed()  # the same AP-REQ, accepted meanwhile on another thread
        return accepted

    def forged(self, ap_req: bytes, second: int) -> bool:
        """Whether accept() would refuse this AP-REQ with KRB_AP_ERR_BAD_INTEGRITY, its ticket
        under a keytab key failing its integrity check (kink.krb5.ticket_check); False when
        accept() must decide. No state but the keytab's reload (_load_keytab) and the tickets
        found to decrypt, which accept() then does not decrypt again, and the last AP-REQ let
        through, which accept() then neither reads nor checks again: for checking a request
        before the message that carries it is decoded (issue 9). `second`: the caller's time in
        whole seconds, of any monotonic clock (the engine's: a clock read less per command, a
        system call in user-mode Linux), for the keytab's reload at most once a second."""
        head = _der.usual_head(ap_req)
        if head is None:
            return False
        check = self._ticket_check_for(head[0], second)
        if check is not None and check.forged(ap_req):
            return True
        self._passed = (ap_req, head)
        return False

    def _ticket_check_for(self, options: int, second: int) -> TicketCheck | None:
        """The TicketCheck for an AP-REQ in the usual encoding with these ap-options, None if
        its ticket is not under a keytab key we hold as a copy (user-to-user, no keytab)."""
        if self._keytab_name is None or self._user_to_user(options):
            return None
        self._load_keytab(self._keytab_name, second)
        return self._ticket_check

    def _user_to_user(self, options: int) -> bool:
        """Whether an AP-REQ with these ap-options is decrypted with a TGT session key: it
        asks for it (use-session-key, RFC 4120 §3.7) and we do user-to-user."""
        return self._credentials is not None and bool(options & _lib.AP_OPTS_USE_SESSION_KEY)

    def _verify(self, ap_req: bytes, options: int | None, clock: tuple[int, int]) -> Accepted:
        """rd_req with the key its ticket needs; `options`: the AP-REQ's ap-options if read
        already (None: read here, when user-to-user is possible at all); `clock`: the time
        (seconds, microseconds) on the context's clock."""
        credentials = self._credentials
        keys: list[SessionKey | None]
        if credentials is not None and (
            is_user_to_user(ap_req) if options is None else self._user_to_user(options)
        ):
            keys = list(credentials.user_to_user_keys())
            if not keys:
                raise _error(KRB_AP_ERR_NO_TGT, "no TGT to decrypt a user-to-user ticket")
        elif self._keytab_name is None:
            # RFC 4430 §3.1: this error sends the initiator to GETTGT.
            raise _error(KRB_AP_ERR_USER_TO_USER_REQUIRED, "this host accepts user-to-user only")
        else:
            if options is None:
                # Read field by field: accept() neither loaded the keytab nor checked the
                # ticket (kink.krb5.ticket_check reads only the usual encoding).
                self._load_keytab(self._keytab_name, int(monotonic()))
            keys = [None]
        # A user-to-user ticket may be under one of our older TGTs: try each key in turn
        # (a failed decryption leaves nothing in the replay cache).
        for key in keys[:-1]:
            try:
                return self._accept_with(ap_req, key, keys, clock)
            except Krb5Error as e:
                if e.protocol_code != KRB_AP_ERR_BAD_INTEGRITY:
                    raise
        return self._accept_with(ap_req, keys[-1], keys, clock)

    def _accept_with(
        self,
        ap_req: bytes,
        key: SessionKey | None,
        keys: list[SessionKey | None],
        clock: tuple[int, int],
        *,
        reloaded: bool = False,
    ) -> Accepted:
        ac = self._raw.auth_context()
        try:
            ticket = self._raw.rd_req(ac, ap_req, self._principal, self._keytab, key, clock)
        except Krb5Error as e:
            code = e.protocol_code
            if code in _TIME_ERRORS:
                self._authenticate_time_error(e, ac, ap_req, keys)
            elif (
                code in _KEY_NOT_IN_KEYTAB
                and not reloaded
                and key is None
                and self._keytab_name is not None
                and self._load_keytab(self._keytab_name, None)
            ):
                # A new key in the file since its last stat (rotation): the ticket is tried
                # with it, once (nothing was decrypted: rd_req found no key to try).
                return self._accept_with(ap_req, key, keys, clock, reloaded=True)
            raise
        if ticket.server != self._principal.name:
            # rd_req does not compare names when decrypting with a TGT session key.
            raise _error(KRB_AP_ERR_NOT_US, f"ticket is for {ticket.server}")
        ctime, cusec = self._raw.authenticator_time(ac)
        return self._accepted(ticket, ctime, cusec, ac, key is not None)

    def _accepted(
        self, ticket: _lib.DecryptedTicket, ctime: int, cusec: int, ac: _lib.AuthContext, u2u: bool
    ) -> Accepted:
        times = ticket.times
        # Positional (client, server, key, ctime, cusec, authtime, starttime, endtime, u2u,
        # auth context): binding ten fields by keyword costs on every accepted request.
        return Accepted(
            ticket.client,
            ticket.server,
            ticket.session_key,
            ctime,
            cusec,
            times.authtime,
            times.starttime,
            times.endtime,
            u2u,
            ac,
        )

    def _authenticate_time_error(
        self, error: Krb5Error, ac: _lib.AuthContext, ap_req: bytes, keys: list[SessionKey | None]
    ) -> None:
        """Attach `accepted` to a time error if the ticket decrypts without time checks.

        krb5_rd_req checks times only after decrypting the ticket and the authenticator and
        matching their client names, and leaves the authenticator in `ac`; the session key is
        recovered by decrypting the ticket again (krb5_server_decrypt_ticket_keytab), and set
        on `ac` so that krb5_mk_rep can answer it.
        """
        parts = _der.parse_ap_req(ap_req)
        u2u_keys = [k for k in keys if k is not None]
        keytab = self._raw.memory_keytab(self._principal, u2u_keys) if u2u_keys else self._keytab
        if keytab is None:
            return
        try:
            ticket = self._raw.decrypt_ticket(parts.ticket, keytab)
        except Krb5Error:
            return
        if ticket.server != self._principal.name:
            return
        self._raw.set_key(ac, ticket.session_key)
        ctime, cusec = self._raw.authenticator_time(ac)
        error.accepted = self._accepted(ticket, ctime, cusec, ac, bool(u2u_keys))

    def make_ap_rep(self, accepted: Accepted) -> bytes:
        """The AP-REP for an accepted AP-REQ (RFC 4430 §4.2.2): its ctime/cusec under the
        session key, no subkey, no sequence number."""
        return self._raw.mk_rep(accepted.auth_context)

    def make_krb_error(
        self,
        code: int,
        *,
        ctime: int | None = None,
        cusec: int | None = None,
        client: str | None = None,
        server: str | None = None,
        e_text: str | None = None,
        e_data: bytes | None = None,
    ) -> bytes:
        """A KRB-ERROR (RFC 4120 §5.9.1) with our current time as stime/susec.

        code: the RFC 4120 protocol number (Krb5Error.protocol_code, or KRB_ERR_GENERIC for
        errors that have none). ctime/cusec: the client's, from Accepted or Krb5Error.accepted,
        when known (RFC 4430 §3.5: "The optional client's time in the KRB-ERROR SHOULD be
        filled out"). server defaults to our principal.
        """
        if not 0 <= code <= _MAX_PROTOCOL_CODE:
            raise ValueError(f"{code} is not an RFC 4120 error number")
        stime, susec = self._raw.now()
        return self._raw.mk_error(
            _lib.ErrorFields(
                error=code,
                ctime=ctime or 0,
                cusec=cusec or 0,
                stime=stime,
                susec=susec,
                client=client,
                server=self._principal.name if server is None else server,
                text=b"" if e_text is None else e_text.encode("utf-8"),
                e_data=e_data or b"",
            )
        )
