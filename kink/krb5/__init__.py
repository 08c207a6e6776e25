"""kink's Kerberos layer: MIT libkrb5 (1.20) through a cffi binding built at install time.

context      Context (one krb5_context; one thread at a time), kink_principal()
credentials  Credentials (TGT from a keytab, cached service and user-to-user tickets), Ticket
initiator    Initiator (AP-REQ, AP-REP check, KRB-ERROR decoding, clock skew), ApReqContext
acceptor     Acceptor (AP-REQ check with replay cache, AP-REP, KRB-ERROR), Accepted
ticket_check TicketCheck: the Acceptor's refusal of a forged ticket before krb5_rd_req
offline      decrypt_ticket_offline() for captures
errors       Krb5Error (the layer's one exception), RFC 4120 error numbers and names
session_key  SessionKey: the ticket session key, the only key KINK uses (RFC 4430 §7)
"""
