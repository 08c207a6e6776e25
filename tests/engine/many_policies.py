"""What the tests of coalesced CREATEs and DELETEs share: two hosts with many policies between
them, the ticket's session key (to open what they sent) and the datagrams of one kind a host
sent."""

from ipaddress import ip_network

from kink.crypto.rfc3961 import Key
from kink.engine.config import Policy
from kink.engine.events import Selector
from kink.wire import MessageType, decode
from tests.engine.conftest import KerberosHostFactory
from tests.engine.harness import Host


def port_policies(here: str, there: str, count: int, *, ours: bool) -> tuple[Policy, ...]:
    """`count` host-to-host policies, one UDP port of a's each (the same reqids both sides)."""
    return tuple(
        Policy(
            Selector(ip_network(here), 17, 5000 + i if ours else 0),
            Selector(ip_network(there), 17, 0 if ours else 5000 + i),
            reqid=200 + i,
        )
        for i in range(count)
    )


def session_key(kerberos_host: KerberosHostFactory) -> Key:
    """The session key of a's ticket for b."""
    ticket = kerberos_host("a").credentials.cached_ticket(kerberos_host("b").principal)
    assert ticket is not None
    return Key(ticket.session_key.enctype, ticket.session_key.material)


def sent_of(host: Host, kind: MessageType) -> list[bytes]:
    """The datagrams of `kind` `host` sent."""
    return [data for data in host.sent if decode(data).type == kind]
