"""The Acceptor's check of a ticket before krb5_rd_req (kink.krb5.ticket_check, issue 9): a
forged ticket is refused as rd_req refuses it, without reaching rd_req; everything else goes
to rd_req and is accepted or refused exactly as before. Against a real MIT KDC."""

from collections.abc import Callable
from typing import Any

import pytest

from kink.krb5 import _der, replay
from kink.krb5.acceptor import Acceptor
from kink.krb5.context import Context
from kink.krb5.credentials import Credentials, Ticket
from kink.krb5.errors import (
    KRB5_KT_NOTFOUND,
    KRB_AP_ERR_BAD_INTEGRITY,
    KRB_AP_ERR_BADKEYVER,
    KRB_AP_ERR_REPEAT,
    Krb5Error,
)
from kink.krb5.initiator import Initiator
from kink.krb5.session_key import SessionKey
from kink.krb5.ticket_check import TicketCheck
from tests.krb5.conftest import Host
from tests.support.kdc import Realm

pytestmark = pytest.mark.kdc


class Calls:
    """Counts the calls of one RawContext method (or module function), and what each returned
    (or raised)."""

    def __init__(self, raw: object, name: str, monkeypatch: pytest.MonkeyPatch):
        self.results: list[object] = []
        method = getattr(raw, name)

        def counted(*args: Any) -> Any:
            try:
                result = method(*args)
            except Krb5Error as e:
                self.results.append(e.protocol_code)
                raise
            self.results.append(result)
            return result

        monkeypatch.setattr(raw, name, counted)


def _forged(ap_req: bytes, ticket: Ticket) -> bytes:
    """The AP-REQ with one octet of its ticket's enc-part cipher (its HMAC, which ends the
    Ticket, RFC 4120 §5.3) flipped: what bench_flood sends."""
    at = ap_req.index(ticket.der) + len(ticket.der) - 4
    return ap_req[:at] + bytes([ap_req[at] ^ 0xFF]) + ap_req[at + 1 :]


@pytest.mark.parametrize("enctype", [17, 18, 19, 20])
def test_a_forged_ticket_is_refused_as_rd_req_refuses_it_without_reaching_it(
    enctype: int,
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = new_host(), new_host(enctypes=[enctype])
    ticket = credentials_for(a).get_ticket(b.principal)
    initiator = Initiator(new_context())
    context = new_context()
    acceptor = Acceptor(context, b.principal, keytab=str(b.keytab))
    forged = _forged(initiator.make_ap_req(ticket)[0], ticket)
    rd_req = Calls(context.raw, "rd_req", monkeypatch)
    with pytest.raises(Krb5Error) as refused:
        acceptor.accept(forged)
    assert rd_req.results == []
    assert refused.value.protocol_code == KRB_AP_ERR_BAD_INTEGRITY
    assert refused.value.accepted is None
    # What krb5_rd_req itself says of the same AP-REQ: the same code and text.
    monkeypatch.undo()
    raw = context.raw
    copy = raw.memory_copy(raw.keytab(str(b.keytab)))
    principal = raw.parse_principal(b.principal)
    with pytest.raises(Krb5Error) as by_rd_req:
        raw.rd_req(raw.auth_context(), forged, principal, copy, None, raw.now())
    assert (by_rd_req.value.code, by_rd_req.value.message) == (
        refused.value.code,
        refused.value.message,
    )


def test_a_forged_ticket_is_refused_before_the_replay_cache_is_asked(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An accepted AP-REQ sent again with its ticket forged (the same authenticator): refused
    as forged, as krb5_rd_req refuses it (it decrypts the ticket before its replay check),
    without the replay tag being made or looked up (issue 9); the AP-REQ as accepted is still
    a replay."""
    a, b = new_host(), new_host()
    ticket = credentials_for(a).get_ticket(b.principal)
    context = new_context()
    acceptor = Acceptor(context, b.principal, keytab=str(b.keytab))
    ap_req = Initiator(new_context()).make_ap_req(ticket)[0]
    acceptor.accept(ap_req)
    tags = Calls(replay, "cipher_tag", monkeypatch)
    with pytest.raises(Krb5Error) as refused:
        acceptor.accept(_forged(ap_req, ticket))
    assert refused.value.protocol_code == KRB_AP_ERR_BAD_INTEGRITY
    assert tags.results == []
    with pytest.raises(Krb5Error) as replayed:
        acceptor.accept(ap_req)
    assert replayed.value.protocol_code == KRB_AP_ERR_REPEAT
    assert len(tags.results) == 1


def test_a_valid_ticket_is_decrypted_here_once_then_only_by_rd_req(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer sends one ticket with every command: the check decrypts it the first time, then
    remembers it; rd_req accepts each AP-REQ as before."""
    a, b = new_host(), new_host()
    ticket = credentials_for(a).get_ticket(b.principal)
    initiator = Initiator(new_context())
    context = new_context()
    acceptor = Acceptor(context, b.principal, keytab=str(b.keytab))
    checked = Calls(context.raw, "check_ticket", monkeypatch)
    rd_req = Calls(context.raw, "rd_req", monkeypatch)
    for _ in range(3):
        accepted = acceptor.accept(initiator.make_ap_req(ticket)[0])
        assert accepted.session_key == ticket.session_key
        assert accepted.client_principal == a.principal
    assert checked.results == [0]
    assert len(rd_req.results) == 3
    # A forged copy of the same ticket is not the remembered one: refused here.
    with pytest.raises(Krb5Error) as refused:
        acceptor.accept(_forged(initiator.make_ap_req(ticket)[0], ticket))
    assert refused.value.protocol_code == KRB_AP_ERR_BAD_INTEGRITY
    assert len(checked.results) == 2 and len(rd_req.results) == 3


def test_an_unknown_key_version_goes_to_rd_req_and_a_rotated_keytab_is_checked(
    realm: Realm,
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ticket of a kvno the keytab copy lacks is not decided here: rd_req refuses it
    (KRB_AP_ERR_BADKEYVER) as before, and once the file holds the new key, rd_req accepts it
    and the check holds the new key too."""
    a, b = new_host(), new_host()
    context = new_context()
    acceptor = Acceptor(context, b.principal, keytab=str(b.keytab))
    stopped = context.raw.now()
    monkeypatch.setattr(context.raw, "now", lambda: stopped)  # all within one second
    initiator = Initiator(new_context())
    realm.rekey(b.principal)
    ticket = credentials_for(a).get_ticket(b.principal)  # kvno 2
    checked = Calls(context.raw, "check_ticket", monkeypatch)
    rd_req = Calls(context.raw, "rd_req", monkeypatch)
    with pytest.raises(Krb5Error) as e:
        acceptor.accept(initiator.make_ap_req(ticket)[0])
    assert e.value.protocol_code == KRB_AP_ERR_BADKEYVER
    assert checked.results == [KRB5_KT_NOTFOUND] and rd_req.results == [KRB_AP_ERR_BADKEYVER]
    realm.keytab(b.principal, b.keytab)  # kadmin ktadd appends kvno 2
    accepted = acceptor.accept(initiator.make_ap_req(ticket)[0])
    assert accepted.session_key == ticket.session_key
    # Not in the copy, so not checked; rd_req found no key, the file was read again, and
    # rd_req accepted it with the new key.
    assert checked.results == [KRB5_KT_NOTFOUND] * 2
    assert rd_req.results[:2] == [KRB_AP_ERR_BADKEYVER] * 2 and len(rd_req.results) == 3
    # The reloaded check knows kvno 2: a forged kvno 2 ticket stops here.
    with pytest.raises(Krb5Error) as refused:
        acceptor.accept(_forged(initiator.make_ap_req(ticket)[0], ticket))
    assert refused.value.protocol_code == KRB_AP_ERR_BAD_INTEGRITY
    assert len(rd_req.results) == 3 and len(checked.results) == 3


def test_a_keytab_entry_without_key_version_turns_the_check_off(
    new_host: Callable[..., Host], new_context: Callable[[], Context]
) -> None:
    """kvno 0 in a keytab: libkrb5's lookup may take that entry for a ticket of any kvno, so
    no ticket is decided here."""
    b = new_host()
    raw = new_context().raw
    principal = raw.parse_principal(b.principal)
    keytab = raw.memory_keytab(principal, [SessionKey(18, bytes(32))])  # entries of kvno 0
    assert not TicketCheck(raw, principal, keytab).active
    assert TicketCheck(raw, principal, raw.memory_copy(raw.keytab(str(b.keytab)))).active


def test_forged_tells_what_accept_would_and_accept_reads_no_request_twice(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Acceptor.forged (what the engine asks before it decodes a command, issue 9): True for a
    forged ticket, with no state; False for a genuine one, which the accept() after it then
    neither reads (usual_head) nor checks again, while any other AP-REQ is read and checked."""
    a, b = new_host(), new_host()
    ticket = credentials_for(a).get_ticket(b.principal)
    initiator = Initiator(new_context())
    context = new_context()
    acceptor = Acceptor(context, b.principal, keytab=str(b.keytab))
    genuine, other = initiator.make_ap_req(ticket)[0], initiator.make_ap_req(ticket)[0]
    assert acceptor.forged(_forged(genuine, ticket), 0)
    heads = Calls(_der, "usual_head", monkeypatch)
    checks = Calls(context.raw, "check_ticket", monkeypatch)
    assert not acceptor.forged(genuine, 0)
    assert len(heads.results) == 1 and checks.results == [0]  # the ticket decrypted
    copy = bytes(bytearray(genuine))  # equal octets, another object: as the engine has them
    assert copy is not genuine
    acceptor.accept(copy)
    assert len(heads.results) == 1 and checks.results == [0]
    assert not acceptor.forged(genuine, 0)  # remembered as decrypted: no second decryption
    acceptor.accept(other)  # not the one let through: read (and its ticket remembered)
    assert len(heads.results) == 3 and checks.results == [0]
    with pytest.raises(Krb5Error) as refused:
        acceptor.accept(genuine)
    assert refused.value.protocol_code == KRB_AP_ERR_REPEAT
