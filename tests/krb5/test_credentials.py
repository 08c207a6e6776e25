"""Host credentials: TGT from a keytab in a private ccache, cached service tickets."""

import gc
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from kink.krb5.acceptor import Acceptor
from kink.krb5.context import Context
from kink.krb5.credentials import Credentials, Ticket
from kink.krb5.errors import KDC_ERR_S_PRINCIPAL_UNKNOWN, KRB_AP_ERR_NO_TGT, Krb5Error
from kink.krb5.initiator import Initiator
from tests.krb5.conftest import Host
from tests.support.kdc import Realm

pytestmark = pytest.mark.kdc


def test_acquire_gets_a_tgt_into_a_private_ccache(
    realm: Realm, new_host: Callable[..., Host], new_context: Callable[[], Context]
) -> None:
    a = new_host()
    creds = Credentials(new_context(), a.principal, str(a.keytab))
    assert creds.tgt is None
    with pytest.raises(Krb5Error) as e:
        creds.our_tgt()
    assert e.value.protocol_code == KRB_AP_ERR_NO_TGT
    assert creds.user_to_user_keys() == []
    tgt = creds.acquire()
    assert creds.tgt is tgt
    assert (tgt.client, tgt.server) == (a.principal, f"krbtgt/{realm.name}@{realm.name}")
    assert not tgt.user_to_user
    assert creds.our_tgt() == tgt.der and tgt.der[0] == 0x61  # DER Ticket [APPLICATION 1]
    assert creds.ccache_name.startswith("MEMORY:kink-")
    assert creds.user_to_user_keys() == [tgt.session_key]
    assert tgt.session_key.material.hex() not in repr(tgt)


def test_file_ccache_lives_in_the_given_directory(
    new_host: Callable[..., Host], new_context: Callable[[], Context], tmp_path: Path
) -> None:
    a = new_host()
    ccache_dir = tmp_path / "ccache"
    ccache_dir.mkdir()
    creds = Credentials(new_context(), a.principal, str(a.keytab), ccache_dir=ccache_dir)
    creds.acquire()
    [path] = ccache_dir.iterdir()
    assert creds.ccache_name == f"FILE:{path}"
    del creds
    gc.collect()
    assert list(ccache_dir.iterdir()) == []  # destroyed with its Credentials


def test_refresh_if_needed(
    new_host: Callable[..., Host], new_context: Callable[[], Context]
) -> None:
    a = new_host()
    creds = Credentials(new_context(), a.principal, str(a.keytab), lifetime=3600)
    assert creds.refresh_if_needed() is True  # no TGT yet
    first = creds.tgt
    assert first is not None
    # The client asks for till = its clock + 3600 and the KDC stamps authtime by its own clock
    # (RFC 4120 §3.1.3); libkrb5 corrects its clock by the KDC's stime to the microsecond, so
    # the two whole seconds can differ by one either way (CI saw 3601).
    assert 3599 <= first.endtime - first.authtime <= 3601
    assert creds.refresh_if_needed(first.endtime - 601) is False
    assert creds.refresh_if_needed(first.endtime - 600) is True  # inside the 600 s margin
    second = creds.tgt
    assert second is not None and second.session_key != first.session_key
    # The replaced TGT still decrypts user-to-user tickets until it expires.
    assert creds.user_to_user_keys() == [second.session_key, first.session_key]
    assert creds.user_to_user_keys(first.endtime) == [second.session_key]


def test_service_tickets_are_cached_and_refreshed(
    new_host: Callable[..., Host],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    a, b = new_host(), new_host()
    creds = credentials_for(a)
    assert creds.cached_ticket(b.principal) is None
    ticket = creds.get_ticket(b.principal)
    assert (ticket.client, ticket.server) == (a.principal, b.principal)
    assert creds.get_ticket(b.principal) is ticket
    assert creds.cached_ticket(b.principal) is ticket
    assert creds.cached_ticket(b.principal, ticket.endtime - 600) is None  # due for refresh
    renewed = creds.get_ticket(b.principal, ticket.endtime - 600)
    assert renewed.session_key != ticket.session_key
    creds.forget_ticket(b.principal)  # e.g. after KRB_AP_ERR_TKT_EXPIRED (RFC 4430 §9)
    assert creds.cached_ticket(b.principal) is None
    assert creds.get_ticket(b.principal).session_key != renewed.session_key


def test_short_tickets_are_not_refetched_on_every_use(
    new_host: Callable[..., Host],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    """The refresh margin is capped at half the ticket's lifetime."""
    a, b = new_host(), new_host(maxlife=60)
    creds = credentials_for(a)
    ticket = creds.get_ticket(b.principal)
    assert creds.cached_ticket(b.principal, ticket.starttime + 29) is ticket
    assert creds.cached_ticket(b.principal, ticket.starttime + 31) is None


def test_unknown_service(
    realm: Realm, new_host: Callable[..., Host], credentials_for: Callable[[Host], Credentials]
) -> None:
    creds = credentials_for(new_host())
    with pytest.raises(Krb5Error) as e:
        creds.get_ticket(f"kink/nowhere.kink.test@{realm.name}")
    assert e.value.protocol_code == KDC_ERR_S_PRINCIPAL_UNKNOWN


def test_keytab_without_the_principal(
    new_host: Callable[..., Host], new_context: Callable[[], Context]
) -> None:
    a, b = new_host(), new_host()
    with pytest.raises(Krb5Error):
        Credentials(new_context(), a.principal, str(b.keytab)).acquire()


def test_tickets_from_a_worker_thread_serve_another_context(
    new_host: Callable[..., Host], new_context: Callable[[], Context]
) -> None:
    """The daemon's shape: KDC calls on a worker thread with its own Context, AP-REQs on the
    main thread with another."""
    a, b = new_host(), new_host()
    creds = Credentials(new_context(), a.principal, str(a.keytab))
    result: list[Ticket] = []
    worker = threading.Thread(target=lambda: result.append(creds.get_ticket(b.principal)))
    worker.start()
    worker.join()
    [ticket] = result
    initiator = Initiator(new_context())
    acceptor = Acceptor(new_context(), b.principal, keytab=str(b.keytab))
    ap_req, ctx = initiator.make_ap_req(ticket)
    assert initiator.verify_ap_rep(ctx, acceptor.make_ap_rep(acceptor.accept(ap_req))) == (
        ticket.session_key
    )
