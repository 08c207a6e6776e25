"""The KINK protocol engine (RFC 4430 §3, §6, §9), sans-IO.

    engine = Engine(config, kerberos, epoch=..., now=...)
    engine.datagram_received(data, (host, port), now)   # and kernel_event, helper_result,
    while (action := engine.next_action()) is not None:  # ticket_result, request, handle_timer
        ...                                              # execute in order
    deadline = engine.next_timer()

Drain next_action() to None after a run of inputs (several inputs may come first): when the
actions run out, the negotiations the run started (ACQUIREs, rekeys) go together, as few
CREATEs per peer as fit a datagram. The pairs rekeyed away are DELETEd together, one DELETE
per peer, once 24 of them wait or DELETE_HOLD (50 ms) after the first (a timer: next_timer);
stop_holding(now) sends them at once and holds none from then on (a shutdown).

While it runs: add_peer / remove_peer / replace_peer / reconfigure; across a restart of the
daemon: child_records(now) -> restore(records, now, elapsed=...) (see kink.engine.lifecycle).

Modules: config (EngineConfig, PeerConfig), events (inputs, actions, notices), kerberos
(KerberosPort, Krb5Port), messages, proposals, keys, ids, sadb, initiator, responder,
records (ChildRecord), lifecycle (run-time changes, restore), engine.
"""

from kink.engine.config import (
    ConfigChangeError,
    EngineConfig,
    PeerConfig,
    Policy,
    ProposalSpec,
    StartAction,
    TransformSpec,
    U2u,
)
from kink.engine.engine import ChildView, Engine, EngineState, PeerView
from kink.engine.kerberos import KerberosPort, Krb5Port, NeedTicket
from kink.engine.lifecycle import Reconfigured
from kink.engine.records import ChildRecord, RecordError

__all__ = [
    "ChildRecord",
    "ChildView",
    "ConfigChangeError",
    "Engine",
    "EngineConfig",
    "EngineState",
    "KerberosPort",
    "Krb5Port",
    "NeedTicket",
    "PeerConfig",
    "PeerView",
    "Policy",
    "ProposalSpec",
    "Reconfigured",
    "RecordError",
    "StartAction",
    "TransformSpec",
    "U2u",
]
