"""The acceptor's replay cache (kink.krb5.replay): against a real KDC, and its file on its own."""

import gc
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from kink.krb5 import _der
from kink.krb5.acceptor import Acceptor
from kink.krb5.context import Context
from kink.krb5.credentials import Credentials, Ticket
from kink.krb5.errors import (
    ERROR_TABLE_BASE_KRB5,
    KRB5_RC_PARSE,
    KRB_AP_ERR_BAD_INTEGRITY,
    KRB_AP_ERR_MODIFIED,
    KRB_AP_ERR_REPEAT,
    Krb5Error,
)
from kink.krb5.initiator import Initiator
from kink.krb5.replay import ReplayCache, authenticator_tag
from tests.krb5.conftest import Host
from tests.support.kdc import Realm

HEADER = 8
RECORD = 24
KRB5_NOPERM_ETYPE = ERROR_TABLE_BASE_KRB5 + 236
NOW = 1_700_000_000


def _tag(n: int) -> bytes:
    return n.to_bytes(16, "big")


# ---------------------------------------------------------------- with the KDC


@pytest.mark.kdc
def test_tag_is_the_hash_of_the_authenticator_ciphertext(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    a, b = new_host(), new_host()
    ap_req, _ = Initiator(new_context()).make_ap_req(credentials_for(a).get_ticket(b.principal))
    cipher = _der.parse_ap_req(ap_req).authenticator_cipher
    assert _der.authenticator_cipher(ap_req) == cipher
    assert authenticator_tag(ap_req) == hashlib.sha256(cipher).digest()[:16]


@pytest.mark.kdc
def test_replay_refused_after_restart(
    tmp_path: Path,
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    a, b = new_host(), new_host()
    ap_req, _ = Initiator(new_context()).make_ap_req(credentials_for(a).get_ticket(b.principal))
    acceptor = Acceptor(new_context(), b.principal, keytab=str(b.keytab))
    acceptor.accept(ap_req)
    cache_file = tmp_path / "kink.rcache"
    assert authenticator_tag(ap_req) in cache_file.read_bytes()
    del acceptor
    gc.collect()  # the process's cache for this directory is gone: the next one reads the file
    restarted = Acceptor(new_context(), b.principal, keytab=str(b.keytab))
    with pytest.raises(Krb5Error) as e:
        restarted.accept(ap_req)
    assert e.value.protocol_code == KRB_AP_ERR_REPEAT
    assert e.value.accepted is None


@pytest.mark.kdc
def test_re_encoded_envelope_is_still_a_replay(
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    """The tag covers the authenticator ciphertext, not the DER around it."""
    a, b = new_host(), new_host()
    ap_req, _ = Initiator(new_context()).make_ap_req(credentials_for(a).get_ticket(b.principal))
    acceptor = Acceptor(new_context(), b.principal, keytab=str(b.keytab))
    acceptor.accept(ap_req)
    assert ap_req[1] == 0x82  # [APPLICATION 14] with a two-octet length: make it four
    longer = ap_req[:1] + b"\x84\x00\x00" + ap_req[2:]
    assert authenticator_tag(longer) == authenticator_tag(ap_req)
    with pytest.raises(Krb5Error) as e:
        acceptor.accept(longer)
    assert e.value.protocol_code == KRB_AP_ERR_REPEAT


@pytest.mark.kdc
def test_forged_ap_req_leaves_no_tag(
    tmp_path: Path,
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    a, b = new_host(), new_host()
    ticket = credentials_for(a).get_ticket(b.principal)
    ap_req, _ = Initiator(new_context()).make_ap_req(ticket)
    acceptor = Acceptor(new_context(), b.principal, keytab=str(b.keytab))
    bad_ticket = bytearray(ap_req)
    bad_ticket[ap_req.index(ticket.der) + len(ticket.der) - 20] ^= 0x10
    with pytest.raises(Krb5Error) as e:
        acceptor.accept(bytes(bad_ticket))
    assert e.value.protocol_code in (KRB_AP_ERR_BAD_INTEGRITY, KRB_AP_ERR_MODIFIED)
    with pytest.raises(Krb5Error):
        acceptor.accept(b"\x6e\x03\x30\x01\x00")
    assert (tmp_path / "kink.rcache").stat().st_size == HEADER
    # The genuine AP-REQ with the same authenticator is still accepted: nothing was stored.
    assert acceptor.accept(ap_req).session_key == ticket.session_key


@pytest.mark.kdc
def test_rd_req_opens_no_libkrb5_replay_cache(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    mit_dir = tmp_path / "mit"
    mit_dir.mkdir()
    monkeypatch.setenv("KRB5RCACHEDIR", str(mit_dir))  # where libkrb5's default cache would go
    a, b = new_host(), new_host()
    ap_req, _ = Initiator(new_context()).make_ap_req(credentials_for(a).get_ticket(b.principal))
    Acceptor(new_context(), b.principal, keytab=str(b.keytab)).accept(ap_req)
    assert list(mit_dir.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kink.rcache", "mit"]


@pytest.mark.kdc
def test_permitted_enctypes_still_apply(
    realm: Realm,
    tmp_path: Path,
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    """The acceptor lends its Context's permitted list to each auth context: a session key
    outside [libdefaults] permitted_enctypes is still refused."""
    a, b = new_host(), new_host(enctypes=[18])
    ticket = credentials_for(a).get_ticket(b.principal)
    assert ticket.session_key.enctype == 18
    initiator = Initiator(new_context())
    for permitted, allowed in (("aes128-cts-hmac-sha1-96", False), ("aes256-cts", True)):
        conf = tmp_path / f"{permitted}.conf"
        conf.write_text(f"[libdefaults]\n\tpermitted_enctypes = {permitted}\n")
        context = Context(f"{conf}:{realm.krb5_conf}", rcache_dir=tmp_path)
        acceptor = Acceptor(context, b.principal, keytab=str(b.keytab))
        _accepted_if(allowed, acceptor, initiator, ticket)


@pytest.mark.kdc
def test_ticket_enctype_still_checked_with_the_list_on_the_context(
    realm: Realm,
    tmp_path: Path,
    new_host: Callable[..., Host],
) -> None:
    """With permitted_enctypes and default_tgs_enctypes alike, the Context holds the list
    itself (no profile read per rd_req): a ticket encrypted in a service key enctype outside
    it is still refused, though its session key enctype is permitted."""
    a, b = new_host(), new_host(enctypes=[18, 17])
    # The client asks for aes128 session keys; the KDC encrypts the ticket in b's aes256 key.
    client_conf = tmp_path / "client.conf"
    client_conf.write_text("[libdefaults]\n\tdefault_tgs_enctypes = aes128-cts aes256-cts\n")
    client = Credentials(Context(f"{client_conf}:{realm.krb5_conf}"), a.principal, str(a.keytab))
    client.acquire()
    ticket = client.get_ticket(b.principal)
    assert ticket.session_key.enctype == 17
    initiator = Initiator(Context(realm.krb5_conf))
    for permitted, allowed in (("aes128-cts", False), ("aes128-cts aes256-cts", True)):
        conf = tmp_path / f"{len(permitted)}.conf"
        conf.write_text(
            f"[libdefaults]\n\tpermitted_enctypes = {permitted}\n"
            f"\tdefault_tgs_enctypes = {permitted}\n"
        )
        acceptor = Acceptor(
            Context(f"{conf}:{realm.krb5_conf}", rcache_dir=tmp_path),
            b.principal,
            keytab=str(b.keytab),
        )
        _accepted_if(allowed, acceptor, initiator, ticket)


def _accepted_if(allowed: bool, acceptor: Acceptor, initiator: Initiator, ticket: Ticket) -> None:
    """An AP-REQ for `ticket` is accepted (with its session key) if `allowed`, else refused
    for its enctype (KRB5_NOPERM_ETYPE)."""
    ap_req, _ = initiator.make_ap_req(ticket)
    if allowed:
        assert acceptor.accept(ap_req).session_key == ticket.session_key
    else:
        with pytest.raises(Krb5Error) as e:
            acceptor.accept(ap_req)
        assert e.value.code == KRB5_NOPERM_ETYPE


# ---------------------------------------------------------------- the file on its own


def test_expiry_is_inclusive_and_pruned(tmp_path: Path) -> None:
    cache = ReplayCache(tmp_path / "rc", NOW)
    assert cache.remember(_tag(1), NOW + 10, NOW)
    assert not cache.remember(_tag(1), NOW + 10, NOW)
    assert cache.seen(_tag(1), NOW + 10)
    assert not cache.seen(_tag(1), NOW + 11)
    assert len(cache) == 0
    assert cache.remember(_tag(2), NOW - 1, NOW)  # already past: its time check refuses it
    assert len(cache) == 0


def test_restart_drops_expired_entries(tmp_path: Path) -> None:
    path = tmp_path / "rc"
    cache = ReplayCache(path, NOW)
    for n in range(10):
        cache.remember(_tag(n), NOW + 100 * (n % 2), NOW)
    assert path.stat().st_size == HEADER + 10 * RECORD
    del cache
    reopened = ReplayCache(path, NOW + 50)
    assert len(reopened) == 5
    assert all(reopened.seen(_tag(n), NOW + 50) == bool(n % 2) for n in range(10))
    assert path.stat().st_size == HEADER + 5 * RECORD  # rewritten without the dead ones


def test_torn_last_record_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "rc"
    cache = ReplayCache(path, NOW)
    cache.remember(_tag(1), NOW + 100, NOW)
    cache.remember(_tag(2), NOW + 100, NOW)
    del cache
    data = path.read_bytes()
    path.write_bytes(data[: HEADER + RECORD + 11])  # a crash in the middle of the second write
    reopened = ReplayCache(path, NOW)
    assert reopened.seen(_tag(1), NOW)
    assert not reopened.seen(_tag(2), NOW)
    assert path.stat().st_size == HEADER + RECORD
    reopened.remember(_tag(3), NOW + 100, NOW)  # appends stay aligned
    del reopened
    assert len(ReplayCache(path, NOW)) == 2


def test_header_cut_short_or_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "rc"
    path.write_bytes(b"KINK")
    assert len(ReplayCache(path, NOW)) == 0
    path.write_bytes(b"\x00" * 40)  # e.g. MIT's file2 cache: not read as ours
    with pytest.raises(Krb5Error) as e:
        ReplayCache(path, NOW)
    assert e.value.code == KRB5_RC_PARSE


def test_compaction_keeps_live_tags(tmp_path: Path) -> None:
    path = tmp_path / "rc"
    cache = ReplayCache(path, NOW)
    live = [_tag(n) for n in range(100)]
    for tag in live:
        cache.remember(tag, NOW + 1000, NOW)
    for n in range(2000):
        cache.remember(_tag(10_000 + n), NOW + 1, NOW)
    assert path.stat().st_size == HEADER + 2100 * RECORD  # all live: no reason to compact
    # At NOW + 2 the 2,000 have expired: the next append finds 2,101 records for 101 live tags.
    live.append(_tag(99_999))
    cache.remember(live[-1], NOW + 1000, NOW + 2)
    assert len(cache) == 101
    assert path.stat().st_size == HEADER + 101 * RECORD
    cache.remember(_tag(100_000), NOW + 1000, NOW + 2)
    assert path.stat().st_size == HEADER + 102 * RECORD  # appending to the rewritten file
    del cache
    reopened = ReplayCache(path, NOW + 2)
    assert len(reopened) == 102
    assert all(reopened.seen(tag, NOW + 2) for tag in live)
