"""The KINK protocol engine (RFC 4430 §3, §6, §9), sans-IO.

    engine = Engine(config, kerberos, epoch=..., now=...)
    engine.datagram_received(data, (host, port), now)   # and kernel_event, helper_result,
    while (action := engine.next_action()) is not None:  # ticket_result, request, handle_timer
        ...                                              # execute in order
    deadline = engine.next_timer()

Modules: config (EngineConfig, PeerConfig), events (inputs, actions, notices), kerberos
(KerberosPort, Krb5Port), messages, proposals, keys, ids, sadb, initiator, responder, engine.
"""

from kink.engine.config import (
    EngineConfig,
    PeerConfig,
    Policy,
    ProposalSpec,
    StartAction,
    TransformSpec,
    U2u,
)
from kink.engine.engine import Engine, EngineState
from kink.engine.kerberos import KerberosPort, Krb5Port, NeedTicket

__all__ = [
    "Engine",
    "EngineConfig",
    "EngineState",
    "KerberosPort",
    "Krb5Port",
    "NeedTicket",
    "PeerConfig",
    "Policy",
    "ProposalSpec",
    "StartAction",
    "TransformSpec",
    "U2u",
]
