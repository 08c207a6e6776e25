"""Typed access to the compiled libkrb5 binding (kink/krb5/_build.py).

This is the only module that touches cffi objects: everything it returns is Python data or an
opaque handle, so the untyped cffi surface stays here. Each method makes one libkrb5 call (or
a fixed sequence of them) and turns a failure into Krb5Error with libkrb5's own message.

Memory: whatever libkrb5 allocates for one call is freed before the call returns (try/finally);
objects that outlive a call (credentials, auth contexts, keytabs, caches) carry a destructor
(ffi.gc; AuthContext.__del__) that holds the owning krb5_context, so a context is always freed
after its objects.

Threads: a RawContext is used by one thread at a time (an MIT krb5_context is not thread-safe).
Handles may be freed on whichever thread drops them last; their destructors only call libkrb5
free functions, which do not use the context's state.
"""

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kink.krb5 import _der, _krb5
from kink.krb5.errors import Krb5Error
from kink.krb5.session_key import SessionKey

_ffi: Any = _krb5.ffi
_c: Any = _krb5.lib

AP_OPTS_USE_SESSION_KEY: int = _c.AP_OPTS_USE_SESSION_KEY
AP_OPTS_MUTUAL_REQUIRED: int = _c.AP_OPTS_MUTUAL_REQUIRED
KEYUSAGE_AP_REQ_AUTH: int = _c.KRB5_KEYUSAGE_AP_REQ_AUTH
NT_SRV_HST: int = _c.KRB5_NT_SRV_HST

# The functions of the AP exchange (every CREATE and DELETE, and every forged request) and of
# its errors, bound once: each `_c.name` is a lookup in the cffi library object, ~350
# instructions a call (issue 9). Calls made once per context or per ticket use `_c` directly.
_get_error_message: Any = _c.krb5_get_error_message
_free_error_message: Any = _c.krb5_free_error_message
_auth_con_init: Any = _c.krb5_auth_con_init
_rd_req: Any = _c.kink_rd_req
_free_ticket: Any = _c.krb5_free_ticket
_auth_con_getauthenticator: Any = _c.krb5_auth_con_getauthenticator
_free_authenticator: Any = _c.krb5_free_authenticator
_us_timeofday: Any = _c.krb5_us_timeofday
_unparse_name: Any = _c.krb5_unparse_name
_free_unparsed_name: Any = _c.krb5_free_unparsed_name
_mk_req: Any = _c.kink_mk_req
_free_data_contents: Any = _c.krb5_free_data_contents
_rd_rep: Any = _c.krb5_rd_rep
_free_ap_rep_enc_part: Any = _c.krb5_free_ap_rep_enc_part
_principal_compare: Any = _c.krb5_principal_compare
_auth_con_setuseruserkey: Any = _c.krb5_auth_con_setuseruserkey
_mk_rep: Any = _c.krb5_mk_rep
_check_ticket: Any = _c.kink_check_ticket

_memory_keytab_ids = itertools.count()
_DEFAULT_CLOCK_SKEW = 300  # seconds, MIT's DEFAULT_CLOCKSKEW


def message_for(code: int) -> str:
    """libkrb5's generic text for a code (once a context exists: its creation registers the
    error tables)."""
    text = _c.krb5_get_error_message(_ffi.NULL, code)
    return str(_ffi.string(text).decode("utf-8", "replace"))


def _enctypes(zero_terminated: Any) -> list[int]:
    """The enctypes of a 0-terminated krb5_enctype array."""
    out: list[int] = []
    while zero_terminated[len(out)]:
        out.append(int(zero_terminated[len(out)]))
    return out


def _bytes(data: Any) -> bytes:
    return bytes(_ffi.buffer(data.data, data.length)) if data.length else b""


def _session_key(keyblock: Any) -> SessionKey:
    return SessionKey(int(keyblock.enctype), bytes(_ffi.buffer(keyblock.contents, keyblock.length)))


class _Input:
    """A krb5_data pointing at Python bytes for the duration of one call (no copy)."""

    __slots__ = ("_buf", "ptr")

    def __init__(self, data: bytes) -> None:
        self._buf = _ffi.from_buffer(data)
        self.ptr = _ffi.new("krb5_data *")
        self.ptr.length = len(data)
        self.ptr.data = _ffi.cast("char *", self._buf)


class _Keyblock:
    """A krb5_keyblock over a copy of a SessionKey, for one call."""

    __slots__ = ("_buf", "ptr")

    def __init__(self, key: SessionKey) -> None:
        self._buf = _ffi.new("krb5_octet[]", key.material)
        self.ptr = _ffi.new("krb5_keyblock *")
        self.ptr.enctype = key.enctype
        self.ptr.length = len(key.material)
        self.ptr.contents = self._buf

    def wipe(self) -> None:
        _ffi.memmove(self._buf, b"\0" * self.ptr.length, self.ptr.length)


class TicketTimes(NamedTuple):
    """A ticket's times (RFC 4120 §5.3). A NamedTuple: one is built for every accepted AP-REQ,
    and a frozen dataclass costs twice as much to build (object.__setattr__ per field)."""

    authtime: int
    starttime: int
    endtime: int
    renew_till: int


def _times(t: Any) -> TicketTimes:
    # RFC 4120 §5.3: starttime is optional and then equals authtime.
    start = t.starttime or t.authtime
    return TicketTimes(int(t.authtime), int(start), int(t.endtime), int(t.renew_till))


@dataclass(frozen=True, eq=False)
class Principal:
    """A parsed principal name (krb5_principal), freed with its handle."""

    name: str
    _ptr: Any = field(repr=False)


@dataclass(frozen=True, eq=False)
class Keytab:
    name: str
    _ptr: Any = field(repr=False)


@dataclass(frozen=True, eq=False)
class TicketKeys:
    """Keytab keys of one principal for RawContext.check_ticket: a C array of (kvno, enctype,
    krb5_key). libkrb5 makes each key's derived keys at its first decryption and keeps them
    (RFC 3961 §5.3); the keys are freed (and wiped by libkrb5) with this handle."""

    count: int
    _array: Any = field(repr=False)
    _keys: tuple[Any, ...] = field(repr=False)  # owners of the krb5_keys in _array


@dataclass(frozen=True, eq=False)
class CCache:
    """A private credential cache; destroyed (not just closed) when dropped."""

    name: str
    _ptr: Any = field(repr=False)


@dataclass(frozen=True, eq=False)
class Creds:
    """A krb5_creds (ticket + session key) with its fields copied out once."""

    client: str
    server: str
    session_key: SessionKey = field(repr=False)
    times: TicketTimes
    user_to_user: bool  # is_skey: the ticket is encrypted in the session key of a TGT
    ticket: bytes = field(repr=False)  # DER Ticket
    _ptr: Any = field(repr=False)


# AuthContext and DecryptedTicket are not frozen (issue 4): built per AP exchange and only read
# after that; a frozen dataclass pays object.__setattr__ for every field.
@dataclass(eq=False, slots=True)
class AuthContext:
    """A krb5_auth_context, freed with this handle. __del__ rather than ffi.gc: one is made
    for every AP-REQ, forged ones included, and ffi.gc cost ~4 k instructions (issue 9).
    `_ctx` keeps the owning krb5_context alive until then."""

    _ptr: Any = field(repr=False)
    _ctx: Any = field(repr=False)

    def __del__(self, _free: Any = _c.krb5_auth_con_free) -> None:
        # The function is bound at definition: module globals may be gone at shutdown.
        _free(self._ctx, self._ptr)


@dataclass(slots=True)
class DecryptedTicket:
    client: str
    server: str
    session_key: SessionKey = field(repr=False)
    times: TicketTimes
    flags: int
    enctype: int  # of the ticket's own encryption (the service or TGT session key)
    kvno: int


@dataclass(frozen=True)
class ErrorFields:
    """A KRB-ERROR (RFC 4120 §5.9.1) as krb5_rd_error decodes it; absent times read as 0."""

    error: int
    ctime: int
    cusec: int
    stime: int
    susec: int
    client: str | None
    server: str | None
    text: bytes
    e_data: bytes


class RawContext:
    """One krb5_context, created from a profile path (colon-separated) or libkrb5's default."""

    def __init__(self, profile_path: str | None) -> None:
        profile = _ffi.new("profile_t *")
        if profile_path is not None:
            code = _c.profile_init_path(profile_path.encode(), profile)
            if code:
                raise Krb5Error(code, f"{message_for(code)}: {profile_path}")
        ctxp = _ffi.new("krb5_context *")
        try:
            code = _c.krb5_init_context_profile(profile[0], 0, ctxp)
        finally:
            if profile[0] != _ffi.NULL:
                # The context keeps its own copy; abandon (unlike release) never writes back.
                _c.profile_abandon(profile[0])
        if code:
            raise Krb5Error(code, message_for(code))
        self._ctx = _ffi.gc(ctxp[0], _c.krb5_free_context)
        ctx = self._ctx
        # Argument and result cells of the AP exchange calls, made once: each call fills them
        # and has read them before it returns (a RawContext serves one thread at a time), and
        # a cffi allocation per call was a good part of these calls' cost (issue 4).
        self._data_in = _ffi.new("krb5_data *")
        self._data_out = _ffi.new("krb5_data *")
        self._ac_cell = _ffi.new("krb5_auth_context *")
        self._ticket_cell = _ffi.new("krb5_ticket **")
        self._authenticator_cell = _ffi.new("krb5_authenticator **")
        self._ap_rep_cell = _ffi.new("krb5_ap_rep_enc_part **")
        self._name_cell = _ffi.new("char **")
        self._data_in_buffer: Any = None
        self._sec_cell = _ffi.new("krb5_timestamp *")
        self._usec_cell = _ffi.new("krb5_int32 *")
        # An acceptor's auth context: libkrb5's default flags without DO_TIME, so that
        # krb5_rd_req opens no replay cache of its own (kink.krb5.replay is the acceptor's).
        # Time checks do not depend on the flag: rd_req always checks skew and ticket times.
        flags = _ffi.new("krb5_int32 *")
        probe = self.auth_context()
        self._check(_c.krb5_auth_con_getflags(ctx, probe._ptr, flags))
        self._acceptor_flags = int(flags[0]) & ~_c.KRB5_AUTH_CONTEXT_DO_TIME
        # krb5_rd_req parses [libdefaults] permitted_enctypes from the profile on every call
        # unless the auth context carries its own list: read once here (a context's profile
        # does not change) and lent to each acceptor's auth context. If libkrb5 cannot read
        # it, rd_req reports that as before.
        permitted = _ffi.new("krb5_enctype **")
        self._permitted_enctypes: Any = None
        if not _c.krb5_get_permitted_enctypes(ctx, permitted):
            self._permitted_enctypes = _ffi.gc(
                permitted[0], lambda p: _c.krb5_free_enctypes(ctx, p)
            )
            self._pin_enctype_lists(self._permitted_enctypes)

    def _pin_enctype_lists(self, permitted: Any) -> None:
        """Give the context the permitted list as its own when that changes nothing.

        krb5_rd_req also checks the TICKET's enctype with krb5_is_permitted_enctype, which
        parses permitted_enctypes from the profile on every call (~7.8 k instructions and a
        clock read, plus a stat of krb5.conf once a second: issue 9) unless the context holds
        an application list (MIT 1.20 init_ctx.c get_profile_etype_list). That one list,
        set by krb5_set_default_tgs_enctypes, answers both the permitted and the TGS request
        enctypes, so it is set only when the profile gives both the same list: neither
        check nor request then sees a different one.
        """
        tgs = _ffi.new("krb5_enctype **")
        if _c.krb5_get_tgs_ktypes(self._ctx, _ffi.NULL, tgs):
            return
        try:
            same = _enctypes(permitted) == _enctypes(tgs[0])
        finally:
            _c.krb5_free_enctypes(self._ctx, tgs[0])
        if same:
            self._check(_c.krb5_set_default_tgs_enctypes(self._ctx, permitted))

    # -- errors, names, time -------------------------------------------------------------

    def error(self, code: int) -> Krb5Error:
        """Krb5Error for the call that just failed, with its extended message.

        The message lives in the context's error state until the next call overwrites it, so
        its octets are copied now; Krb5Error decodes them only if someone reads the text (a
        forged CREATE's refusal is counted, not logged: issue 9).
        """
        ctx = self._ctx
        text = _get_error_message(ctx, code)
        try:
            return Krb5Error(code, _ffi.string(text))
        finally:
            _free_error_message(ctx, text)

    def _check(self, code: int) -> None:
        # The calls of every AP exchange (time, names, auth contexts, mk_req, rd_rep, mk_rep,
        # the authenticator) test their code inline instead: ten calls of this per CREATE
        # exchange were ~8 k instructions (issue 4).
        if code:
            raise self.error(code)

    def default_realm(self) -> str:
        out = _ffi.new("char **")
        self._check(_c.krb5_get_default_realm(self._ctx, out))
        try:
            return str(_ffi.string(out[0]).decode("utf-8"))
        finally:
            _c.krb5_free_default_realm(self._ctx, out[0])

    def now(self) -> tuple[int, int]:
        """Seconds and microseconds on this context's clock (system time + offset)."""
        sec = self._sec_cell
        usec = self._usec_cell
        code = _us_timeofday(self._ctx, sec, usec)
        if code:
            raise self.error(code)
        return int(sec[0]), int(usec[0])

    def clock_skew(self) -> int:
        """[libdefaults] clockskew in seconds, read as libkrb5 reads it (default 300): how far
        krb5_rd_req lets an authenticator's ctime stray from this context's clock."""
        profile = _ffi.new("profile_t *")
        self._check(_c.krb5_get_profile(self._ctx, profile))
        try:
            out = _ffi.new("int *")
            self._check(
                _c.profile_get_integer(
                    profile[0], b"libdefaults", b"clockskew", _ffi.NULL, _DEFAULT_CLOCK_SKEW, out
                )
            )
            return int(out[0])
        finally:
            _c.profile_release(profile[0])

    def set_real_time(self, seconds: int, microseconds: int) -> None:
        """Offset this context's clock so that it reads (seconds, microseconds) now."""
        self._check(_c.krb5_set_real_time(self._ctx, seconds, microseconds))

    def time_offset(self) -> tuple[int, int]:
        sec = _ffi.new("krb5_timestamp *")
        usec = _ffi.new("krb5_int32 *")
        self._check(_c.krb5_get_time_offsets(self._ctx, sec, usec))
        return int(sec[0]), int(usec[0])

    def parse_principal(self, name: str) -> Principal:
        out = _ffi.new("krb5_principal *")
        self._check(_c.krb5_parse_name(self._ctx, name.encode("utf-8"), out))
        ptr = _ffi.gc(out[0], lambda p, ctx=self._ctx: _c.krb5_free_principal(ctx, p))
        return Principal(self._unparse(ptr), ptr)

    def _unparse(self, principal: Any) -> str:
        out = self._name_cell
        code = _unparse_name(self._ctx, principal, out)
        if code:
            raise self.error(code)
        try:
            return str(_ffi.string(out[0]).decode("utf-8", "replace"))
        finally:
            _free_unparsed_name(self._ctx, out[0])

    def _unparse_optional(self, principal: Any) -> str | None:
        return None if principal == _ffi.NULL else self._unparse(principal)

    # -- keytabs, caches -----------------------------------------------------------------

    def keytab(self, name: str) -> Keytab:
        out = _ffi.new("krb5_keytab *")
        self._check(_c.krb5_kt_resolve(self._ctx, name.encode("utf-8"), out))
        ptr = _ffi.gc(out[0], lambda p, ctx=self._ctx: _c.krb5_kt_close(ctx, p))
        return Keytab(name, ptr)

    def memory_keytab(self, principal: Principal, keys: Sequence[SessionKey]) -> Keytab:
        """A private MEMORY: keytab holding `keys`; destroyed with the handle (last close)."""
        keytab = self.keytab(f"MEMORY:kink-{id(self):x}-{next(_memory_keytab_ids)}")
        for key in keys:
            block = _Keyblock(key)
            entry = _ffi.new("krb5_keytab_entry *")
            entry.principal = principal._ptr
            entry.key = block.ptr[0]
            try:
                self._check(_c.krb5_kt_add_entry(self._ctx, keytab._ptr, entry))
            finally:
                block.wipe()
        return keytab

    def memory_copy(self, source: Keytab) -> Keytab:
        """A private MEMORY: keytab holding every entry of `source` (principal, kvno, key),
        destroyed with the handle. rd_req then finds its key without file I/O."""
        copy = self.keytab(f"MEMORY:kink-{id(self):x}-{next(_memory_keytab_ids)}")
        cursor = _ffi.new("krb5_kt_cursor *")
        self._check(_c.krb5_kt_start_seq_get(self._ctx, source._ptr, cursor))
        entry = _ffi.new("krb5_keytab_entry *")
        try:
            while True:
                code = _c.krb5_kt_next_entry(self._ctx, source._ptr, entry, cursor)
                if code == _c.KRB5_KT_END:
                    break
                self._check(code)
                try:
                    self._check(_c.krb5_kt_add_entry(self._ctx, copy._ptr, entry))
                finally:
                    _c.krb5_free_keytab_entry_contents(self._ctx, entry)
        finally:
            _c.krb5_kt_end_seq_get(self._ctx, source._ptr, cursor)
        return copy

    def principal_type(self, principal: Principal) -> int:
        """A parsed principal's name-type (RFC 4120 §6.2) as libkrb5 holds it."""
        return int(principal._ptr.type)

    def permitted_enctypes(self) -> frozenset[int] | None:
        """[libdefaults] permitted_enctypes as read when this context was made (None if it
        could not be read)."""
        permitted = self._permitted_enctypes
        return None if permitted is None else frozenset(_enctypes(permitted))

    def ticket_keys(
        self, keytab: Keytab, principal: Principal, enctypes: frozenset[int]
    ) -> TicketKeys:
        """The keys krb5_kt_get_entry(keytab, principal, kvno, enctype) returns, by (kvno,
        enctype), for the enctypes given, wherever there is no doubt which: an entry of
        `principal` that no other entry of its kvno shares a similar enctype with
        (krb5_c_enctype_compare: the MEMORY keytab's lookup takes the first similar one, MIT
        1.20 kt_memory.c); none at all if an entry has kvno 0 (that lookup takes it for any
        kvno). Enctypes libkrb5 cannot make a key for are left out."""
        ctx = self._ctx
        entries: list[tuple[int, int, Any]] = []
        cursor = _ffi.new("krb5_kt_cursor *")
        entry = _ffi.new("krb5_keytab_entry *")
        key_out = _ffi.new("krb5_key *")
        self._check(_c.krb5_kt_start_seq_get(ctx, keytab._ptr, cursor))
        try:
            while True:
                code = _c.krb5_kt_next_entry(ctx, keytab._ptr, entry, cursor)
                if code == _c.KRB5_KT_END:
                    break
                self._check(code)
                try:
                    if not _principal_compare(ctx, principal._ptr, entry.principal):
                        continue
                    key = None
                    if not _c.krb5_k_create_key(ctx, _ffi.addressof(entry, "key"), key_out):
                        key = _ffi.gc(key_out[0], lambda p: _c.krb5_k_free_key(ctx, p))
                    entries.append((int(entry.vno), int(entry.key.enctype), key))
                finally:
                    _c.krb5_free_keytab_entry_contents(ctx, entry)
        finally:
            _c.krb5_kt_end_seq_get(ctx, keytab._ptr, cursor)
        similar = _ffi.new("krb5_boolean *")

        def alike(a: int, b: int) -> bool:
            return not _c.krb5_c_enctype_compare(ctx, a, b, similar) and bool(similar[0])

        chosen = [
            (vno, enctype, key)
            for vno, enctype, key in entries
            if key is not None
            and enctype in enctypes
            and sum(1 for v, e, _ in entries if v == vno and alike(enctype, e)) == 1
        ]
        if any(vno == 0 for vno, _, _ in entries):
            chosen = []
        array = _ffi.new("struct kink_service_key[]", max(len(chosen), 1))
        for i, (vno, enctype, key) in enumerate(chosen):
            array[i].kvno = vno
            array[i].enctype = enctype
            array[i].key = key
        return TicketKeys(len(chosen), array, tuple(key for _, _, key in chosen))

    def check_ticket(
        self, keys: TicketKeys, server: Principal, data: bytes, start: int, stop: int
    ) -> int:
        """Decrypt the Ticket at data[start:stop] with the key of `keys` for its kvno and
        enctype if it names `server` (kink_check_ticket in kink/krb5/_build.py): 0 if it
        decrypted, KRB5KRB_AP_ERR_BAD_INTEGRITY if it failed its integrity check, another
        libkrb5 code if it was not tried (no such key, another name, not a Ticket) or failed
        otherwise. The ticket's plaintext never reaches Python."""
        return int(
            _check_ticket(
                self._ctx, server._ptr, keys._array, keys.count, data, start, stop - start
            )
        )

    def ccache(self, name: str) -> CCache:
        """Resolve a private credential cache; one handle per name, or the first destroys it."""
        out = _ffi.new("krb5_ccache *")
        self._check(_c.krb5_cc_resolve(self._ctx, name.encode("utf-8"), out))
        ptr = _ffi.gc(out[0], lambda p, ctx=self._ctx: _c.krb5_cc_destroy(ctx, p))
        return CCache(name, ptr)

    def store_tgt(self, ccache: CCache, client: Principal, tgt: Creds) -> None:
        """Empty the cache and put `tgt` in it (krb5_get_credentials takes the TGT from there)."""
        self._check(_c.krb5_cc_initialize(self._ctx, ccache._ptr, client._ptr))
        self._check(_c.krb5_cc_store_cred(self._ctx, ccache._ptr, tgt._ptr))

    # -- credentials (these may contact the KDC and block) -------------------------------

    def _creds(self, ptr: Any) -> Creds:
        return Creds(
            client=self._unparse(ptr.client),
            server=self._unparse(ptr.server),
            session_key=_session_key(ptr.keyblock),
            times=_times(ptr.times),
            user_to_user=bool(ptr.is_skey),
            ticket=_bytes(ptr.ticket),
            _ptr=ptr,
        )

    def initial_creds_keytab(
        self, client: Principal, keytab: Keytab, lifetime: int | None
    ) -> Creds:
        """AS exchange with the client's long-term key from `keytab`: a TGT."""
        opt_out = _ffi.new("krb5_get_init_creds_opt **")
        self._check(_c.krb5_get_init_creds_opt_alloc(self._ctx, opt_out))
        try:
            if lifetime is not None:
                _c.krb5_get_init_creds_opt_set_tkt_life(opt_out[0], lifetime)
            raw = _ffi.new("krb5_creds *")
            self._check(
                _c.krb5_get_init_creds_keytab(
                    self._ctx, raw, client._ptr, keytab._ptr, 0, _ffi.NULL, opt_out[0]
                )
            )
        finally:
            _c.krb5_get_init_creds_opt_free(self._ctx, opt_out[0])
        return self._creds(
            _ffi.gc(raw, lambda p, ctx=self._ctx: _c.krb5_free_cred_contents(ctx, p))
        )

    def service_creds(
        self, ccache: CCache, client: Principal, server: Principal, second_ticket: bytes | None
    ) -> Creds:
        """TGS exchange for `server` with the TGT in `ccache`; user-to-user if second_ticket."""
        creds_in = _ffi.new("krb5_creds *")
        creds_in.client = client._ptr
        creds_in.server = server._ptr
        options = _c.KRB5_GC_NO_STORE  # kink caches tickets itself; the ccache holds the TGT
        second = None
        if second_ticket is not None:
            # RFC 4120 §3.7: ENC-TKT-IN-SKEY with the peer's TGT as additional ticket.
            second = _Input(second_ticket)
            creds_in.second_ticket = second.ptr[0]
            options |= _c.KRB5_GC_USER_USER
        out = _ffi.new("krb5_creds **")
        self._check(_c.krb5_get_credentials(self._ctx, options, ccache._ptr, creds_in, out))
        return self._creds(_ffi.gc(out[0], lambda p, ctx=self._ctx: _c.krb5_free_creds(ctx, p)))

    # -- AP exchange ---------------------------------------------------------------------

    def auth_context(self) -> AuthContext:
        out = self._ac_cell
        code = _auth_con_init(self._ctx, out)
        if code:
            raise self.error(code)
        return AuthContext(out[0], self._ctx)

    def _input(self, data: bytes) -> Any:
        """The krb5_data cell pointing at `data` (no copy; kept alive until the next call)."""
        self._data_in_buffer = buf = _ffi.from_buffer("char[]", data)
        cell = self._data_in
        cell.data = buf
        cell.length = len(data)
        return cell

    def mk_req(self, creds: Creds, options: int) -> tuple[bytes, AuthContext]:
        """A raw AP-REQ with a fresh authenticator: no checksum (in_data NULL), no subkey; the
        context's clock read once for it (kink_mk_req in kink/krb5/_build.py)."""
        ac = self.auth_context()
        ac_ptr = self._ac_cell
        ac_ptr[0] = ac._ptr
        out = self._data_out
        code = _mk_req(self._ctx, ac_ptr, options, creds._ptr, out)
        if code:
            raise self.error(code)
        try:
            return _bytes(out), ac
        finally:
            _free_data_contents(self._ctx, out)

    def rd_rep(self, ac: AuthContext, data: bytes) -> None:
        """Decrypt an AP-REP with the auth context's key and check its ctime/cusec echo."""
        out = self._ap_rep_cell
        code = _rd_rep(self._ctx, ac._ptr, self._input(data), out)
        if code:
            raise self.error(code)
        _free_ap_rep_enc_part(self._ctx, out[0])

    def rd_req(
        self,
        ac: AuthContext,
        data: bytes,
        server: Principal,
        keytab: Keytab | None,
        user_to_user_key: SessionKey | None,
        now: tuple[int, int],
    ) -> DecryptedTicket:
        """krb5_rd_req on `ac`, which keeps the decrypted authenticator even after a time error.

        No replay check: the caller's kink.krb5.replay cache does that (see __init__).
        now: (seconds, microseconds) this context's clock read just before (now()): rd_req
        checks the authenticator's skew and the ticket's times against it, instead of reading
        the clock 4 times itself (kink_rd_req in kink/krb5/_build.py).
        """
        if user_to_user_key is not None:
            # RFC 4120 §3.7: the ticket is encrypted in our TGT session key, not a keytab key.
            self.set_key(ac, user_to_user_key)
        ticket_out = self._ticket_cell
        permitted = self._permitted_enctypes
        code = _rd_req(
            self._ctx,
            ac._ptr,
            self._acceptor_flags,
            _ffi.NULL if permitted is None else permitted,
            now[0],
            now[1],
            self._input(data),
            server._ptr,
            _ffi.NULL if keytab is None else keytab._ptr,
            ticket_out,
        )
        if code:
            raise self.error(code)
        ticket = ticket_out[0]
        try:
            return self._decrypted_ticket(ticket, server)
        finally:
            _free_ticket(self._ctx, ticket)

    def _decrypted_ticket(self, ticket: Any, expected: Principal | None = None) -> DecryptedTicket:
        enc = ticket.enc_part2
        enc_part = ticket.enc_part
        # The ticket's server is nearly always the principal rd_req was given: its name is then
        # that principal's (both are the unparsed realm and components, which
        # krb5_principal_compare matches exactly), without unparsing it anew (issue 4).
        if expected is not None and _principal_compare(self._ctx, expected._ptr, ticket.server):
            server = expected.name
        else:
            server = self._unparse(ticket.server)
        return DecryptedTicket(  # client, server, session key, times, flags, enctype, kvno
            self._unparse(enc.client),
            server,
            _session_key(enc.session[0]),
            _times(enc.times),
            int(enc.flags) & 0xFFFFFFFF,
            int(enc_part.enctype),
            int(enc_part.kvno),
        )

    def authenticator_time(self, ac: AuthContext) -> tuple[int, int]:
        """ctime, cusec of the authenticator krb5_rd_req decrypted into `ac`.

        Only for an acceptor's auth context after krb5_rd_req got past authenticator
        decryption: on an initiator's context MIT 1.20 crashes here (client field cleared).
        """
        out = self._authenticator_cell
        code = _auth_con_getauthenticator(self._ctx, ac._ptr, out)
        if code:
            raise self.error(code)
        authenticator = out[0]
        try:
            return authenticator.ctime, authenticator.cusec  # cffi gives Python ints
        finally:
            _free_authenticator(self._ctx, authenticator)

    def set_key(self, ac: AuthContext, key: SessionKey) -> None:
        """Make `key` the auth context's key (krb5_auth_con_setuseruserkey), e.g. for mk_rep."""
        block = _Keyblock(key)
        try:
            self._check(_auth_con_setuseruserkey(self._ctx, ac._ptr, block.ptr))
        finally:
            block.wipe()

    def mk_rep(self, ac: AuthContext) -> bytes:
        out = self._data_out
        code = _mk_rep(self._ctx, ac._ptr, out)
        if code:
            raise self.error(code)
        try:
            return _bytes(out)
        finally:
            _free_data_contents(self._ctx, out)

    # -- KRB-ERROR -------------------------------------------------------------------------

    def mk_error(self, fields: ErrorFields) -> bytes:
        err = _ffi.new("krb5_error *")
        err.error = fields.error
        err.ctime = fields.ctime
        err.cusec = fields.cusec
        err.stime = fields.stime
        err.susec = fields.susec
        keep = []
        for attr, name in (("client", fields.client), ("server", fields.server)):
            if name is not None:
                principal = self.parse_principal(name)
                keep.append(principal)
                setattr(err, attr, principal._ptr)
        text = _Input(fields.text)
        e_data = _Input(fields.e_data)
        err.text = text.ptr[0]
        err.e_data = e_data.ptr[0]
        out = _ffi.new("krb5_data *")
        self._check(_c.krb5_mk_error(self._ctx, err, out))
        try:
            return _bytes(out)
        finally:
            _free_data_contents(self._ctx, out)

    def rd_error(self, data: bytes) -> ErrorFields:
        inp = _Input(data)
        out = _ffi.new("krb5_error **")
        self._check(_c.krb5_rd_error(self._ctx, inp.ptr, out))
        err = out[0]
        try:
            return ErrorFields(
                error=int(err.error),
                ctime=int(err.ctime),
                cusec=int(err.cusec),
                stime=int(err.stime),
                susec=int(err.susec),
                client=self._unparse_optional(err.client),
                server=self._unparse_optional(err.server),
                text=_bytes(err.text),
                e_data=_bytes(err.e_data),
            )
        finally:
            _c.krb5_free_error(self._ctx, err)

    # -- tickets without an AP exchange ----------------------------------------------------

    def decrypt_ticket(self, ticket_der: bytes, keytab: Keytab) -> DecryptedTicket:
        """Decode a Ticket and decrypt it with any matching key in `keytab`: no time checks."""
        inp = _Input(ticket_der)
        out = _ffi.new("krb5_ticket **")
        self._check(_c.krb5_decode_ticket(inp.ptr, out))
        try:
            self._check(_c.krb5_server_decrypt_ticket_keytab(self._ctx, keytab._ptr, out[0]))
            return self._decrypted_ticket(out[0])
        finally:
            _free_ticket(self._ctx, out[0])

    def read_authenticator(
        self, ap_req: _der.ApReqParts, key: SessionKey
    ) -> _der.AuthenticatorParts:
        """Decrypt an AP-REQ's authenticator with the ticket session key and decode it."""
        plain = self.decrypt(
            key,
            KEYUSAGE_AP_REQ_AUTH,
            ap_req.authenticator_enctype,
            ap_req.authenticator_kvno or 0,
            ap_req.authenticator_cipher,
        )
        return _der.parse_authenticator(plain)

    def decrypt(
        self, key: SessionKey, usage: int, enctype: int, kvno: int, ciphertext: bytes
    ) -> bytes:
        """RFC 3961 decrypt-and-verify of an EncryptedData with `key` (krb5_c_decrypt)."""
        block = _Keyblock(key)
        inp = _ffi.new("krb5_enc_data *")
        cipher = _Input(ciphertext)
        inp.enctype = enctype
        inp.kvno = kvno
        inp.ciphertext = cipher.ptr[0]
        plain = _ffi.new("char[]", max(len(ciphertext), 1))
        out = _ffi.new("krb5_data *")
        out.data = plain
        out.length = len(ciphertext)
        try:
            self._check(_c.krb5_c_decrypt(self._ctx, block.ptr, usage, _ffi.NULL, inp, out))
            return bytes(_ffi.buffer(plain, out.length))
        finally:
            block.wipe()
            _ffi.memmove(plain, b"\0" * len(ciphertext), len(ciphertext))
