"""Kerberos cost of a KINK exchange through kink.krb5, against a throwaway MIT KDC.

Figures: AP-REQ creation with a cached ticket (initiator, every CREATE/DELETE/STATUS and
every retransmission), AP-REQ verification with FILE keytab and replay cache plus the
AP-REP (responder), and AP-REP verification (initiator). Session key aes256-cts-hmac-sha1-96.
"""

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import emit, rate
from kink.krb5.acceptor import Acceptor
from kink.krb5.context import Context
from kink.krb5.credentials import Credentials
from kink.krb5.initiator import ApReqContext, Initiator
from tests.support.kdc import Realm

# Each verification needs a distinct AP-REQ (the replay cache refuses repeats): made first.
VERIFICATIONS = 30_000


def _per_second(items: list[bytes], fn: Callable[[bytes], object]) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, Realm.start(Path(tmp) / "realm") as realm:
        initiator_principal, initiator_keytab = realm.add_host("initiator.kink.bench")
        responder_principal, responder_keytab = realm.add_host("responder.kink.bench")
        creds = Credentials(Context(realm.krb5_conf), initiator_principal, str(initiator_keytab))
        ticket = creds.get_ticket(responder_principal)
        initiator = Initiator(Context(realm.krb5_conf))
        acceptor = Acceptor(
            Context(realm.krb5_conf, rcache_dir=tmp),
            responder_principal,
            keytab=str(responder_keytab),
        )
        enctype = ticket.session_key.enctype

        emit(
            "krb5_ap_req_create",
            rate(lambda: initiator.make_ap_req(ticket)),
            "ops/s",
            enctype=enctype,
        )

        made = [initiator.make_ap_req(ticket) for _ in range(VERIFICATIONS)]
        contexts: dict[bytes, ApReqContext] = dict(made)
        replies: list[bytes] = []

        def accept_and_reply(ap_req: bytes) -> None:
            replies.append(acceptor.make_ap_rep(acceptor.accept(ap_req)))

        emit(
            "krb5_ap_req_verify_and_ap_rep",
            _per_second(list(contexts), accept_and_reply),
            "ops/s",
            enctype=enctype,
            replay_cache="kink.krb5.replay",
            keytab="FILE",
        )

        pairs = dict(zip(replies, contexts.values(), strict=True))
        emit(
            "krb5_ap_rep_verify",
            _per_second(list(pairs), lambda rep: initiator.verify_ap_rep(pairs[rep], rep)),
            "ops/s",
            enctype=enctype,
        )


if __name__ == "__main__":
    main()
