"""Everything libkrb5 allocates per exchange is freed: 100,000 full AP exchanges in constant RSS.

The acceptor's replay cache keeps each tag for the clock skew (kink.krb5.replay), so the
acceptor here runs with a one-second skew: its live tags stay a few seconds' worth.
"""

from collections.abc import Callable
from pathlib import Path

import pytest

from kink.krb5.acceptor import Acceptor
from kink.krb5.context import Context
from kink.krb5.credentials import Credentials
from kink.krb5.initiator import Initiator
from tests.krb5.conftest import Host
from tests.support.kdc import Realm

pytestmark = pytest.mark.kdc

ROUND_TRIPS = 100_000
WARM_UP = 5_000
MAX_GROWTH_KIB = 5 * 1024


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_ap_exchanges_do_not_leak(
    realm: Realm,
    tmp_path: Path,
    new_host: Callable[..., Host],
    new_context: Callable[[], Context],
    credentials_for: Callable[[Host], Credentials],
) -> None:
    a, b = new_host(), new_host()
    ticket = credentials_for(a).get_ticket(b.principal)
    initiator = Initiator(new_context())
    short_skew = tmp_path / "skew.conf"
    short_skew.write_text("[libdefaults]\n\tclockskew = 1\n")
    acceptor_context = Context(f"{short_skew}:{realm.krb5_conf}", rcache_dir=tmp_path)
    acceptor = Acceptor(acceptor_context, b.principal, keytab=str(b.keytab))

    def round_trip() -> None:
        ap_req, ctx = initiator.make_ap_req(ticket)
        accepted = acceptor.accept(ap_req)
        assert initiator.verify_ap_rep(ctx, acceptor.make_ap_rep(accepted)) == ticket.session_key
        assert ctx.ctime == accepted.ctime  # the lazily decrypted authenticator, too
        error = acceptor.make_krb_error(60, ctime=accepted.ctime, cusec=accepted.cusec)
        assert initiator.parse_krb_error(error).echoes(ctx)

    for _ in range(WARM_UP):
        round_trip()
    before = rss_kib()
    for _ in range(ROUND_TRIPS):
        round_trip()
    assert rss_kib() - before < MAX_GROWTH_KIB
