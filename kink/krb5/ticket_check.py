"""A forged ticket refused after one decryption, before krb5_rd_req (issue 9).

For a ticket under a keytab key, krb5_rd_req decodes the AP-REQ, fetches the key of the
acceptor's principal with the ticket's kvno and enctype from the keytab (the Acceptor's
MEMORY copy), checks that the enctype is permitted, and decrypts the ticket's enc-part (key
usage 2, RFC 4120 §7.5.1). If that fails its integrity check, rd_req refuses with
KRB_AP_ERR_BAD_INTEGRITY when the ticket names the acceptor's principal (KRB_AP_ERR_NOT_US
when it names another): MIT 1.20 rd_req_dec.c decrypt_ticket, try_one_princ,
integrity_error; decrypt_tk.c. It makes a krb5_key from the keyblock for that and derives
its Ke/Ki anew (RFC 3961 §5.3) every time.

TicketCheck decrypts the same octets with the same key, held as a krb5_key made once per
keytab load so that its derived keys are kept, and refuses only where rd_req would refuse
with exactly that error:
- the AP-REQ is in the usual encoding (_der.usual_head, the caller's test) and its Ticket,
  decoded by libkrb5, names the acceptor's principal (krb5_principal_compare) with a kvno;
- the acceptor's principal is not a host-based name, which rd_req may match against other
  keytab entries or canonicalize (KRB5_NT_SRV_HST: rd_req_dec.c is_matching, k5_canonprinc);
- the ticket's (kvno, enctype) names one key of that principal without doubt
  (RawContext.ticket_keys) and the enctype is permitted ([libdefaults] permitted_enctypes,
  which krb5_decrypt_tkt_part checks before it decrypts);
- the decryption fails its integrity check.
Everything else (an unknown kvno or enctype, user-to-user, another name, a ticket that
decrypts) goes to krb5_rd_req as before. A ticket that decrypts is remembered by its last 16
octets (its enc-part's integrity tag: RFC 3961 §5.3, RFC 8009 §5) and not decrypted here
again: a peer sends the same ticket with every command until it expires, and rd_req decrypts
it anyway, so that the usual valid AP-REQ pays a set lookup here, not a second decryption.
Remembering only ever sends a request on to rd_req: a forged ticket that kept a remembered
tail is refused there, at the cost of today's rd_req (no more than what anyone holding that
valid ticket can make us pay, sending it with a bad authenticator).
"""

from kink.krb5 import _lib
from kink.krb5.errors import ERROR_TABLE_BASE_KRB5, KRB_AP_ERR_BAD_INTEGRITY, Krb5Error

_BAD_INTEGRITY = ERROR_TABLE_BASE_KRB5 + KRB_AP_ERR_BAD_INTEGRITY
_TICKET_AT = 27  # _der.usual_head: the ticket [3] with a two-octet length at this offset
_TAIL = 16  # octets a decrypted ticket is remembered by: its integrity tag ends the Ticket
# Tickets remembered as decrypted: one a peer (or a peer's principal) at a time, so this bounds
# memory (~60 octets each) without limiting the peers; past it, the set starts again.
_DECRYPTED_LIMIT = 4096


class TicketCheck:
    """The keys of one keytab load for `principal`, to refuse forged tickets."""

    __slots__ = ("_decrypted", "_keys", "_message", "_principal", "_raw")

    def __init__(
        self, raw: _lib.RawContext, principal: _lib.Principal, keytab: _lib.Keytab
    ) -> None:
        self._raw = raw
        self._principal = principal
        permitted = raw.permitted_enctypes()
        keys = None
        if raw.principal_type(principal) != _lib.NT_SRV_HST and permitted is not None:
            keys = raw.ticket_keys(keytab, principal, permitted)
        self._keys = keys if keys is not None and keys.count else None
        self._decrypted: set[bytes] = set()  # the last _TAIL octets of tickets that decrypted
        # libkrb5's own text for this refusal (integrity_error), the ticket naming us.
        name = principal.name
        self._message = f"Cannot decrypt ticket for {name} using keytab key for {name}".encode()

    @property
    def active(self) -> bool:
        """Whether any ticket can be refused here (some key qualified)."""
        return self._keys is not None

    def forged(self, ap_req: bytes) -> bool:
        """Whether krb5_rd_req would refuse this AP-REQ with KRB_AP_ERR_BAD_INTEGRITY (error()):
        its ticket is forged. False when rd_req must decide. Only for an AP-REQ
        _der.usual_head reads.

        A flag, not a raise: a refusal the engine makes before decoding (issue 9) then builds
        one error and raises none (an exception raised through frames and caught costs its
        traceback, per forged request)."""
        keys = self._keys
        if keys is None:
            return False
        # The ticket's element: [3] at _TICKET_AT, then its two length octets.
        start = _TICKET_AT + 4
        stop = start + (ap_req[_TICKET_AT + 2] << 8 | ap_req[_TICKET_AT + 3])
        if stop > len(ap_req):
            return False
        decrypted = self._decrypted
        seen = ap_req[stop - _TAIL : stop]
        if seen in decrypted:
            return False
        code = self._raw.check_ticket(keys, self._principal, ap_req, start, stop)
        if code == 0:
            if len(decrypted) >= _DECRYPTED_LIMIT:
                decrypted.clear()
            decrypted.add(seen)
        return code == _BAD_INTEGRITY

    def error(self) -> Krb5Error:
        """krb5_rd_req's error for a forged ticket (forged()): its code and its text."""
        return Krb5Error(_BAD_INTEGRITY, self._message)
