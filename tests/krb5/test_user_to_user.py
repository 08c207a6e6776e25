"""User-to-user (RFC 4430 §3.1, §3.7.1; RFC 4120 §3.7) against a real MIT KDC.

The responder's principal is marked -allow_svr (DISALLOW_SVR): the KDC refuses ordinary
tickets for it, and it has no keytab for accepting: only its TGT, obtained with a keytab it
keeps for the AS exchange alone.
"""

from collections.abc import Callable

import pytest

from kink.krb5 import _der
from kink.krb5.acceptor import Acceptor, is_user_to_user
from kink.krb5.context import Context
from kink.krb5.credentials import Credentials
from kink.krb5.errors import (
    KDC_ERR_MUST_USE_USER2USER,
    KDC_ERR_SERVER_NOMATCH,
    KRB_AP_ERR_BAD_INTEGRITY,
    KRB_AP_ERR_REPEAT,
    KRB_AP_ERR_SKEW,
    KRB_AP_ERR_USER_TO_USER_REQUIRED,
    Krb5Error,
)
from kink.krb5.initiator import Initiator
from tests.krb5.conftest import Host

pytestmark = pytest.mark.kdc


@pytest.fixture
def peer(new_host: Callable[..., Host]) -> Host:
    return new_host(flags=["-allow_svr"])


def test_kdc_demands_user_to_user(
    peer: Host, new_host: Callable[..., Host], credentials_for: Callable[[Host], Credentials]
) -> None:
    creds = credentials_for(new_host())
    with pytest.raises(Krb5Error) as e:
        creds.get_ticket(peer.principal)
    assert e.value.protocol_code == KDC_ERR_MUST_USE_USER2USER


def test_user_to_user_round_trip(
    peer: Host,
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    a = new_host()
    creds_a, creds_peer = credentials_for(a), credentials_for(peer)
    acceptor = Acceptor(new_context(), peer.principal, credentials=creds_peer)
    initiator = Initiator(new_context())

    # GETTGT: the peer hands out its TGT; we get a ticket encrypted in its session key.
    ticket = creds_a.get_u2u_ticket(peer.principal, creds_peer.our_tgt())
    assert ticket.user_to_user
    assert (ticket.client, ticket.server) == (a.principal, peer.principal)
    assert creds_a.cached_ticket(peer.principal) is ticket
    ap_req, ctx = initiator.make_ap_req(ticket)
    assert is_user_to_user(ap_req)
    accepted = acceptor.accept(ap_req)
    assert accepted.user_to_user
    assert accepted.session_key == ticket.session_key  # the ticket's, not the TGT's
    assert accepted.session_key not in creds_peer.user_to_user_keys()
    assert accepted.client_principal == a.principal
    assert initiator.verify_ap_rep(ctx, acceptor.make_ap_rep(accepted)) == ticket.session_key
    with pytest.raises(Krb5Error) as e:
        acceptor.accept(ap_req)
    assert e.value.protocol_code == KRB_AP_ERR_REPEAT


def test_user_to_user_in_another_encoding(
    peer: Host,
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    """An AP-REQ outside the usual DER form is read field by field (replay tag, then
    use-session-key) and accepted with the TGT session key all the same."""
    creds_a, creds_peer = credentials_for(new_host()), credentials_for(peer)
    acceptor = Acceptor(new_context(), peer.principal, credentials=creds_peer)
    ticket = creds_a.get_u2u_ticket(peer.principal, creds_peer.our_tgt())
    ap_req, _ = Initiator(new_context()).make_ap_req(ticket)
    assert ap_req[1] == 0x82  # [APPLICATION 14] with a two-octet length: make it four
    longer = ap_req[:1] + b"\x84\x00\x00" + ap_req[2:]
    assert _der.usual_head(ap_req) is not None and _der.usual_head(longer) is None
    accepted = acceptor.accept(longer)
    assert accepted.user_to_user and accepted.session_key == ticket.session_key
    with pytest.raises(Krb5Error) as e:
        acceptor.accept(ap_req)  # the same authenticator in the usual form: one tag
    assert e.value.protocol_code == KRB_AP_ERR_REPEAT


def test_responder_without_keytab_requires_user_to_user(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    a, b = new_host(), new_host()  # b could take ordinary tickets, but has no keytab to
    ticket = credentials_for(a).get_ticket(b.principal)
    acceptor = Acceptor(new_context(), b.principal, credentials=credentials_for(b))
    ap_req, _ = Initiator(new_context()).make_ap_req(ticket)
    with pytest.raises(Krb5Error) as e:
        acceptor.accept(ap_req)
    assert e.value.protocol_code == KRB_AP_ERR_USER_TO_USER_REQUIRED
    with pytest.raises(ValueError):
        Acceptor(new_context(), b.principal)


def test_tickets_survive_a_tgt_renewal(
    peer: Host,
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    creds_a, creds_peer = credentials_for(new_host()), credentials_for(peer)
    acceptor = Acceptor(new_context(), peer.principal, credentials=creds_peer)
    initiator = Initiator(new_context())
    old_ticket = creds_a.get_u2u_ticket(peer.principal, creds_peer.our_tgt())
    creds_peer.acquire()  # the peer renews its TGT
    new_ticket = creds_a.get_u2u_ticket(peer.principal, creds_peer.our_tgt())
    for ticket in (old_ticket, new_ticket):
        ap_req, _ = initiator.make_ap_req(ticket)
        assert acceptor.accept(ap_req).session_key == ticket.session_key


def test_responder_that_lost_its_tgt(
    peer: Host,
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    """RFC 4430 §3.7.1: the responder detects the case and answers with its new TGT; the
    initiator keeps its old ticket until a new one is obtained, then retries."""
    creds_a = credentials_for(new_host())
    old_ticket = creds_a.get_u2u_ticket(peer.principal, credentials_for(peer).our_tgt())
    restarted = credentials_for(peer)  # a new TGT, the old one forgotten
    acceptor = Acceptor(new_context(), peer.principal, credentials=restarted)
    initiator = Initiator(new_context())
    ap_req, _ = initiator.make_ap_req(old_ticket)
    with pytest.raises(Krb5Error) as e:
        acceptor.accept(ap_req)
    assert e.value.protocol_code == KRB_AP_ERR_BAD_INTEGRITY
    assert is_user_to_user(ap_req)
    new_ticket = creds_a.get_u2u_ticket(peer.principal, restarted.our_tgt())
    assert creds_a.cached_ticket(peer.principal) is new_ticket
    ap_req, _ = initiator.make_ap_req(new_ticket)
    assert acceptor.accept(ap_req).session_key == new_ticket.session_key


def test_user_to_user_ticket_refresh_reuses_the_peer_tgt(
    peer: Host, new_host: Callable[..., Host], credentials_for: Callable[[Host], Credentials]
) -> None:
    creds_a, creds_peer = credentials_for(new_host()), credentials_for(peer)
    ticket = creds_a.get_u2u_ticket(peer.principal, creds_peer.our_tgt())
    renewed = creds_a.get_ticket(peer.principal, ticket.endtime - 600)
    assert renewed.user_to_user
    assert renewed.session_key != ticket.session_key


def test_user_to_user_clock_skew_is_authenticated(
    peer: Host,
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    creds_a, creds_peer = credentials_for(new_host()), credentials_for(peer)
    ticket = creds_a.get_u2u_ticket(peer.principal, creds_peer.our_tgt())
    responder_context = new_context()
    now, usec = responder_context.now()
    responder_context.raw.set_real_time(now + 1000, usec)
    acceptor = Acceptor(responder_context, peer.principal, credentials=creds_peer)
    initiator = Initiator(new_context())
    ap_req, ctx = initiator.make_ap_req(ticket)
    with pytest.raises(Krb5Error) as e:
        acceptor.accept(ap_req)
    assert e.value.protocol_code == KRB_AP_ERR_SKEW
    accepted = e.value.accepted
    assert accepted is not None and accepted.user_to_user
    assert accepted.session_key == ticket.session_key
    assert initiator.verify_ap_rep(ctx, acceptor.make_ap_rep(accepted)) == ticket.session_key


def test_kdc_checks_the_peer_tgt(
    peer: Host, new_host: Callable[..., Host], credentials_for: Callable[[Host], Credentials]
) -> None:
    """RFC 4430 §4.2.4: the TGT must be the requested principal's (its cname is encrypted,
    so the KDC is the one to check); a failed attempt keeps the ticket we had (§3.7.1)."""
    creds_a, creds_peer = credentials_for(new_host()), credentials_for(peer)
    ticket = creds_a.get_u2u_ticket(peer.principal, creds_peer.our_tgt())
    impostor = credentials_for(new_host())
    with pytest.raises(Krb5Error) as e:
        creds_a.get_u2u_ticket(peer.principal, impostor.our_tgt())
    assert e.value.protocol_code == KDC_ERR_SERVER_NOMATCH
    assert creds_a.cached_ticket(peer.principal) is ticket
    with pytest.raises(Krb5Error):
        creds_a.get_u2u_ticket(peer.principal, b"\x61\x03\x30\x01\x00")
    assert creds_a.cached_ticket(peer.principal) is ticket
