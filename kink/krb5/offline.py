"""Decrypting a captured AP-REQ with a keytab, without clock or replay checks.

For `kinkctl decode` on old captures: the ticket may have expired long ago and the
authenticator is as old as the capture, so krb5_rd_req would refuse both. The ticket is
decrypted with krb5_server_decrypt_ticket_keytab, the authenticator with its session key.
"""

from dataclasses import dataclass, field

from kink.krb5 import _der, _lib
from kink.krb5.context import Context
from kink.krb5.session_key import SessionKey


@dataclass(frozen=True)
class OfflineTicket:
    """What a captured AP-REQ holds once decrypted."""

    client_principal: str
    server_principal: str
    session_key: SessionKey = field(repr=False)
    ticket_enctype: int
    ticket_kvno: int
    ticket_flags: int
    authtime: int
    starttime: int
    endtime: int
    ap_options: int
    user_to_user: bool
    ctime: int
    cusec: int
    subkey_enctype: int | None  # KINK ignores subkeys (RFC 4430 §7)
    seq_number: int | None


def decrypt_ticket_offline(context: Context, ap_req: bytes, keytab: str) -> OfflineTicket:
    """Decrypt the ticket and authenticator of `ap_req` with any matching key in `keytab`."""
    raw = context.raw
    parts = _der.parse_ap_req(ap_req)
    ticket = raw.decrypt_ticket(parts.ticket, raw.keytab(keytab))
    auth = raw.read_authenticator(parts, ticket.session_key)
    return OfflineTicket(
        client_principal=ticket.client,
        server_principal=ticket.server,
        session_key=ticket.session_key,
        ticket_enctype=ticket.enctype,
        ticket_kvno=ticket.kvno,
        ticket_flags=ticket.flags,
        authtime=ticket.times.authtime,
        starttime=ticket.times.starttime,
        endtime=ticket.times.endtime,
        ap_options=parts.ap_options,
        user_to_user=bool(parts.ap_options & _lib.AP_OPTS_USE_SESSION_KEY),
        ctime=auth.ctime,
        cusec=auth.cusec,
        subkey_enctype=auth.subkey_enctype,
        seq_number=auth.seq_number,
    )
