"""AP-REQ / AP-REP / KRB-ERROR between an Initiator and an Acceptor, against a real MIT KDC."""

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from kink.krb5 import _der
from kink.krb5.acceptor import Acceptor, is_user_to_user
from kink.krb5.context import Context
from kink.krb5.credentials import Credentials
from kink.krb5.errors import (
    KRB5_MUTUAL_FAILED,
    KRB_AP_ERR_BAD_INTEGRITY,
    KRB_AP_ERR_BADKEYVER,
    KRB_AP_ERR_MODIFIED,
    KRB_AP_ERR_NOT_US,
    KRB_AP_ERR_REPEAT,
    KRB_AP_ERR_SKEW,
    KRB_AP_ERR_TKT_EXPIRED,
    KRB_AP_ERR_TKT_NYV,
    Krb5Error,
)
from kink.krb5.initiator import Initiator
from kink.krb5.offline import decrypt_ticket_offline
from tests.krb5.conftest import Host
from tests.support.kdc import Realm

pytestmark = pytest.mark.kdc

KEY_LENGTHS = {17: 16, 18: 32, 19: 16, 20: 32}


def shift_clock(context: Context, seconds: int) -> None:
    """Move a context's clock (what a host with a wrong clock looks like to libkrb5)."""
    now, usec = context.now()
    context.raw.set_real_time(now + seconds, usec)


@pytest.mark.parametrize("enctype", [17, 18, 19, 20])
def test_round_trip_for_each_session_enctype(
    enctype: int,
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    a, b = new_host(), new_host(enctypes=[enctype])
    ticket = credentials_for(a).get_ticket(b.principal)
    assert ticket.session_key.enctype == enctype
    assert len(ticket.session_key.material) == KEY_LENGTHS[enctype]
    initiator = Initiator(new_context())
    acceptor = Acceptor(new_context(), b.principal, keytab=str(b.keytab))

    ap_req, ctx = initiator.make_ap_req(ticket)
    accepted = acceptor.accept(ap_req)
    assert accepted.session_key == ticket.session_key == ctx.session_key
    assert (accepted.client_principal, accepted.server_principal) == (a.principal, b.principal)
    assert (accepted.ctime, accepted.cusec) == (ctx.ctime, ctx.cusec)
    assert accepted.ticket_endtime == ticket.endtime
    assert not accepted.user_to_user
    assert accepted.session_key.material.hex() not in repr(accepted)

    ap_rep = acceptor.make_ap_rep(accepted)
    assert initiator.verify_ap_rep(ctx, ap_rep) == ticket.session_key


def test_ap_req_is_plain_mutual_without_subkey(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    """RFC 4430 §4.2.1, §7: mutual authentication requested, no subkey, no sequence number."""
    a, b = new_host(), new_host()
    ticket = credentials_for(a).get_ticket(b.principal)
    ap_req, ctx = Initiator(new_context()).make_ap_req(ticket)
    seen = decrypt_ticket_offline(new_context(), ap_req, str(b.keytab))
    assert seen.ap_options == 0x20000000
    assert (seen.subkey_enctype, seen.seq_number) == (None, None)
    assert (seen.ctime, seen.cusec) == (ctx.ctime, ctx.cusec)
    assert not is_user_to_user(ap_req)


def test_each_ap_req_has_a_fresh_authenticator(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    """RFC 4430 §9: retransmissions reuse the ticket with a new authenticator; the AP-REP of
    one answers only that one."""
    a, b = new_host(), new_host()
    ticket = credentials_for(a).get_ticket(b.principal)
    initiator = Initiator(new_context())
    acceptor = Acceptor(new_context(), b.principal, keytab=str(b.keytab))
    first, ctx1 = initiator.make_ap_req(ticket)
    second, ctx2 = initiator.make_ap_req(ticket)
    assert _der.parse_ap_req(first).ticket == _der.parse_ap_req(second).ticket
    assert (ctx1.ctime, ctx1.cusec) != (ctx2.ctime, ctx2.cusec)
    rep2 = acceptor.make_ap_rep(acceptor.accept(second))
    rep1 = acceptor.make_ap_rep(acceptor.accept(first))
    with pytest.raises(Krb5Error) as e:
        initiator.verify_ap_rep(ctx1, rep2)
    assert e.value.code == KRB5_MUTUAL_FAILED
    assert initiator.verify_ap_rep(ctx2, rep2) == ticket.session_key
    assert initiator.verify_ap_rep(ctx1, rep1) == ticket.session_key
    with pytest.raises(Krb5Error):
        initiator.verify_ap_rep(ctx1, b"\x6f\x03\x30\x01\x00")


def test_replay_is_rejected(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    a, b = new_host(), new_host()
    ticket = credentials_for(a).get_ticket(b.principal)
    ap_req, _ = Initiator(new_context()).make_ap_req(ticket)
    acceptor = Acceptor(new_context(), b.principal, keytab=str(b.keytab))
    acceptor.accept(ap_req)
    with pytest.raises(Krb5Error) as e:
        acceptor.accept(ap_req)
    assert e.value.protocol_code == KRB_AP_ERR_REPEAT
    assert e.value.accepted is None
    # The replay cache is a file in the rcache directory: a restarted responder still knows.
    restarted = Acceptor(new_context(), b.principal, keytab=str(b.keytab))
    with pytest.raises(Krb5Error) as e:
        restarted.accept(ap_req)
    assert e.value.protocol_code == KRB_AP_ERR_REPEAT


def _flip(data: bytes, index: int) -> bytes:
    damaged = bytearray(data)
    damaged[index] ^= 0x10
    return bytes(damaged)


def test_damaged_ticket_or_authenticator(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    a, b = new_host(), new_host()
    ticket = credentials_for(a).get_ticket(b.principal)
    initiator = Initiator(new_context())
    acceptor = Acceptor(new_context(), b.principal, keytab=str(b.keytab))
    ap_req, _ = initiator.make_ap_req(ticket)
    ticket_end = ap_req.index(ticket.der) + len(ticket.der)
    for damaged in (_flip(ap_req, ticket_end - 20), _flip(ap_req, len(ap_req) - 20)):
        with pytest.raises(Krb5Error) as e:
            acceptor.accept(damaged)
        assert e.value.protocol_code in (KRB_AP_ERR_BAD_INTEGRITY, KRB_AP_ERR_MODIFIED)
    assert acceptor.accept(ap_req).session_key == ticket.session_key  # nothing was stored
    with pytest.raises(Krb5Error):
        acceptor.accept(b"\x6e\x00")


def test_ticket_for_another_principal(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    a, b, c = new_host(), new_host(), new_host()
    ticket = credentials_for(a).get_ticket(b.principal)
    ap_req, _ = Initiator(new_context()).make_ap_req(ticket)
    acceptor = Acceptor(new_context(), c.principal, keytab=str(c.keytab))
    with pytest.raises(Krb5Error) as e:
        acceptor.accept(ap_req)
    assert e.value.protocol_code == KRB_AP_ERR_NOT_US


def test_keytab_with_an_old_key_version(
    realm: Realm,
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    a, b = new_host(), new_host()
    realm.rekey(b.principal)  # tickets now use kvno 2; b's keytab holds kvno 1
    ticket = credentials_for(a).get_ticket(b.principal)
    ap_req, _ = Initiator(new_context()).make_ap_req(ticket)
    with pytest.raises(Krb5Error) as e:
        Acceptor(new_context(), b.principal, keytab=str(b.keytab)).accept(ap_req)
    assert e.value.protocol_code == KRB_AP_ERR_BADKEYVER
    assert e.value.accepted is None
    fresh_keytab = realm.keytab(b.principal, Path(str(b.keytab) + ".new"))
    acceptor = Acceptor(new_context(), b.principal, keytab=str(fresh_keytab))
    assert acceptor.accept(ap_req).session_key == ticket.session_key


def test_expired_ticket_gets_an_authenticated_error(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    """RFC 4430 §3.5: the responder still proves it read the AP-REQ (AP-REP + error)."""
    a, b = new_host(), new_host(maxlife=60)
    ticket = credentials_for(a).get_ticket(b.principal)
    assert ticket.endtime - ticket.starttime <= 60
    initiator = Initiator(new_context())
    ap_req, ctx = initiator.make_ap_req(ticket)
    responder_context = new_context()
    shift_clock(responder_context, 1000)  # past endtime + the 300 s clock skew allowance
    acceptor = Acceptor(responder_context, b.principal, keytab=str(b.keytab))
    with pytest.raises(Krb5Error) as e:
        acceptor.accept(ap_req)
    assert e.value.protocol_code == KRB_AP_ERR_TKT_EXPIRED
    accepted = e.value.accepted
    assert accepted is not None
    assert accepted.session_key == ticket.session_key
    assert (accepted.ctime, accepted.cusec) == (ctx.ctime, ctx.cusec)
    assert accepted.ticket_endtime == ticket.endtime

    ap_rep = acceptor.make_ap_rep(accepted)
    krb_error = acceptor.make_krb_error(
        KRB_AP_ERR_TKT_EXPIRED, ctime=accepted.ctime, cusec=accepted.cusec
    )
    assert initiator.verify_ap_rep(ctx, ap_rep) == ticket.session_key
    info = initiator.parse_krb_error(krb_error)
    assert info.error_code == KRB_AP_ERR_TKT_EXPIRED
    assert info.echoes(ctx)
    assert info.server == b.principal


def test_initiator_refuses_an_expired_ticket(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    a, b = new_host(), new_host(maxlife=60)
    creds = credentials_for(a)
    ticket = creds.get_ticket(b.principal)
    late = new_context()
    shift_clock(late, 1000)
    with pytest.raises(Krb5Error) as e:
        Initiator(late).make_ap_req(ticket)
    assert e.value.protocol_code == KRB_AP_ERR_TKT_EXPIRED
    early = new_context()
    shift_clock(early, -1000)
    with pytest.raises(Krb5Error) as e:
        Initiator(early).make_ap_req(ticket)
    assert e.value.protocol_code == KRB_AP_ERR_TKT_NYV


def test_clock_skew_authenticated_error_is_adopted(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    a, b = new_host(), new_host()
    ticket = credentials_for(a).get_ticket(b.principal)
    initiator_context = new_context()
    initiator = Initiator(initiator_context)
    responder_context = new_context()
    shift_clock(responder_context, 1000)  # ticket still valid there, authenticator too old
    acceptor = Acceptor(responder_context, b.principal, keytab=str(b.keytab))

    ap_req, ctx = initiator.make_ap_req(ticket)
    with pytest.raises(Krb5Error) as e:
        acceptor.accept(ap_req)
    assert e.value.protocol_code == KRB_AP_ERR_SKEW
    accepted = e.value.accepted
    assert accepted is not None and accepted.session_key == ticket.session_key
    ap_rep = acceptor.make_ap_rep(accepted)
    krb_error = acceptor.make_krb_error(KRB_AP_ERR_SKEW, ctime=accepted.ctime, cusec=accepted.cusec)

    # The initiator authenticates the reply, then adopts the responder's clock.
    assert initiator.verify_ap_rep(ctx, ap_rep) == ticket.session_key
    info = initiator.parse_krb_error(krb_error)
    assert info.echoes(ctx)
    assert 999 <= info.stime - ctx.ctime <= 1001
    initiator.adopt_clock_skew(info.stime, info.susec)
    ap_req2, ctx2 = initiator.make_ap_req(ticket)
    assert 999 <= ctx2.ctime - ctx.ctime <= 1001
    assert acceptor.accept(ap_req2).session_key == ticket.session_key


def test_clock_skew_unauthenticated_error_changes_nothing(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    """An attacker's KRB_AP_ERR_SKEW (no AP-REP, no Cksum) is only parsed, never adopted."""
    a, b = new_host(), new_host()
    ticket = credentials_for(a).get_ticket(b.principal)
    initiator_context = new_context()
    initiator = Initiator(initiator_context)
    liar_context = new_context()
    shift_clock(liar_context, 1000)
    liar = Acceptor(liar_context, b.principal, keytab=str(b.keytab))
    ap_req, ctx = initiator.make_ap_req(ticket)
    forged = liar.make_krb_error(KRB_AP_ERR_SKEW, ctime=ctx.ctime, cusec=ctx.cusec)
    info = initiator.parse_krb_error(forged)
    assert info.error_code == KRB_AP_ERR_SKEW
    assert initiator_context.time_offset() == (0, 0)
    _, ctx2 = initiator.make_ap_req(ticket)
    assert 0 <= ctx2.ctime - ctx.ctime <= 1
    with pytest.raises(Krb5Error) as e:  # so the skewed responder still refuses us
        liar.accept(ap_req)
    assert e.value.protocol_code == KRB_AP_ERR_SKEW


def test_replayed_skewed_ap_req_is_not_answered_with_authentication(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    a, b = new_host(), new_host()
    ticket = credentials_for(a).get_ticket(b.principal)
    responder_context = new_context()
    shift_clock(responder_context, -1000)
    acceptor = Acceptor(responder_context, b.principal, keytab=str(b.keytab))
    ap_req, _ = Initiator(new_context()).make_ap_req(ticket)
    with pytest.raises(Krb5Error) as e:
        acceptor.accept(ap_req)
    assert e.value.protocol_code in (KRB_AP_ERR_SKEW, KRB_AP_ERR_TKT_NYV)
    assert e.value.accepted is not None
    with pytest.raises(Krb5Error) as e:
        acceptor.accept(ap_req)
    assert e.value.protocol_code == KRB_AP_ERR_REPEAT
    assert e.value.accepted is None


def test_krb_error_fields(
    new_host: Callable[..., Host], new_context: Callable[[], Context]
) -> None:
    b = new_host()
    context = new_context()
    acceptor = Acceptor(context, b.principal, keytab=str(b.keytab))
    data = acceptor.make_krb_error(
        KRB_AP_ERR_NOT_US, client="someone@KINK.TEST", e_text="not here", e_data=b"\x01\x02"
    )
    info = Initiator(context).parse_krb_error(data)
    assert info.error_code == KRB_AP_ERR_NOT_US
    assert (info.ctime, info.cusec) == (None, None)
    assert (info.client, info.server) == ("someone@KINK.TEST", b.principal)
    assert (info.e_text, info.e_data) == ("not here", b"\x01\x02")
    assert abs(info.stime - context.now()[0]) <= 1
    with pytest.raises(ValueError):
        acceptor.make_krb_error(1000)
    with pytest.raises(Krb5Error):
        Initiator(context).parse_krb_error(data[:-3])


@pytest.mark.parametrize("how", ["append", "replace"])
def test_keytab_rotation_reaches_a_running_acceptor(
    how: str,
    realm: Realm,
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Acceptor keeps the keytab in memory, yet a new key written to its file (kadmin ktadd
    appending, or a new file renamed over it) is used by the next accept, even within the
    second in which it last looked at the file (its clock stopped here): a ticket whose key
    version the copy lacks makes it look again."""
    a, b = new_host(), new_host()
    context = new_context()
    acceptor = Acceptor(context, b.principal, keytab=str(b.keytab))
    stopped = context.raw.now()
    monkeypatch.setattr(context.raw, "now", lambda: stopped)
    initiator = Initiator(new_context())
    ticket = credentials_for(a).get_ticket(b.principal)
    assert acceptor.accept(initiator.make_ap_req(ticket)[0]).session_key == ticket.session_key
    realm.rekey(b.principal)
    ticket = credentials_for(a).get_ticket(b.principal)  # kvno 2
    with pytest.raises(Krb5Error) as e:
        acceptor.accept(initiator.make_ap_req(ticket)[0])
    assert e.value.protocol_code == KRB_AP_ERR_BADKEYVER
    if how == "append":
        realm.keytab(b.principal, b.keytab)
    else:
        staged = realm.keytab(b.principal, Path(str(b.keytab) + ".new"))
        staged.replace(b.keytab)
    assert acceptor.accept(initiator.make_ap_req(ticket)[0]).session_key == ticket.session_key


def test_forged_requests_look_at_the_keytab_file_once_a_second(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 9: the keytab's file is compared (a stat) at the first accept of a second, not at
    every one: a flood of AP-REQs whose ticket does not decrypt (one octet flipped) costs no
    system call each for it (rotation within the second: the test above)."""
    a, b = new_host(), new_host()
    acceptor = Acceptor(new_context(), b.principal, keytab=str(b.keytab))
    ticket = credentials_for(a).get_ticket(b.principal)
    raw, _ = Initiator(new_context()).make_ap_req(ticket)
    at = raw.index(ticket.der) + len(ticket.der) - 4  # the enc-part cipher's HMAC
    forged = raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :]
    looked: list[object] = []
    stat = os.stat

    def counted(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if str(path) == str(b.keytab):
            looked.append(path)
        return stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counted)
    for _ in range(20):
        with pytest.raises(Krb5Error) as e:
            acceptor.accept(forged)
        assert e.value.protocol_code == KRB_AP_ERR_BAD_INTEGRITY
    assert 1 <= len(looked) <= 2  # 20 accepts within a second, or across one second's end


def test_accepted_and_offline_readings_name_the_server_alike(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    """rd_req's ticket names its server by the principal it was given when
    krb5_principal_compare matches them, the offline reading by unparsing the ticket's own:
    the same text."""
    a, b = new_host(), new_host()
    ticket = credentials_for(a).get_ticket(b.principal)
    ap_req, _ = Initiator(new_context()).make_ap_req(ticket)
    accepted = Acceptor(new_context(), b.principal, keytab=str(b.keytab)).accept(ap_req)
    seen = decrypt_ticket_offline(new_context(), ap_req, str(b.keytab))
    assert accepted.server_principal == seen.server_principal == b.principal
    assert accepted.client_principal == seen.client_principal == a.principal


def test_ap_exchange_leaves_the_context_clock_running_with_its_offset(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    """rd_req and mk_req hold the context's clock at one reading for their call only: after
    them the clock runs again (MIT's microseconds strictly increase between readings) and
    keeps its offset, on a Context both sides share."""
    a, b = new_host(), new_host()
    ticket = credentials_for(a).get_ticket(b.principal)
    context = new_context()
    shift_clock(context, 1000)
    offset = context.time_offset()
    initiator = Initiator(context)
    acceptor = Acceptor(context, b.principal, keytab=str(b.keytab))
    ap_req, ctx = initiator.make_ap_req(ticket)
    assert context.time_offset() == offset
    assert acceptor.accept(ap_req).session_key == ticket.session_key
    assert context.time_offset() == offset
    first, second = context.now(), context.now()
    assert second > first
    _, ctx2 = initiator.make_ap_req(ticket)
    assert (ctx2.ctime, ctx2.cusec) > (ctx.ctime, ctx.cusec) and ctx2.ctime - ctx.ctime <= 1
    third = context.now()
    assert third > (ctx2.ctime, ctx2.cusec)
