"""Adding and dropping peers of a running Engine, for a reload (SIGHUP, `kinkctl reload`).

The engine takes its peers from its config at construction; a reload must change them without
touching the state of the peers that stay (issue 6: unchanged peers untouched). This module is
the one place that edits the engine's peer tables. A peer is dropped only once its SAs are gone
(the daemon first sends DELETE for them, RFC 4430 §3.3, which needs the peer record).
"""

import dataclasses

from kink.engine import Engine, EngineConfig, PeerConfig
from kink.engine.core import _DEFAULT_REQID, effective_policies
from kink.engine.sadb import PeerState


def add_peer(engine: Engine, peer: PeerConfig, position: int) -> None:
    """Make `peer` known to the engine (`position`: its index in the new config, which numbers
    the implicit host-to-host policy as a fresh start would, when that reqid is free)."""
    state = PeerState(peer)
    state.next_xid = engine.rng.randrange(1 << 32)
    reqid = _DEFAULT_REQID + position
    while reqid in engine.policies:
        reqid += 1
    policies = effective_policies(peer, engine.config.address, reqid)
    engine.peers[peer.name] = state
    engine.peers_by_address[peer.address] = state
    engine.peer_policies[peer.name] = policies
    for policy in policies:
        engine.policies[policy.reqid] = (state, policy)
    _set_config_peers(engine)


def drop_peer(engine: Engine, name: str) -> None:
    """Forget a peer that has no SAs left."""
    state = engine.peers.pop(name, None)
    if state is None:
        return
    if engine.peers_by_address.get(state.config.address) is state:
        del engine.peers_by_address[state.config.address]
    for policy in engine.peer_policies.pop(name, ()):
        engine.policies.pop(policy.reqid, None)
    _set_config_peers(engine)


def busy(engine: Engine, name: str) -> bool:
    """The peer still has SAs or transactions (its DELETE is not done)."""
    if name not in engine.peers:
        return False
    snapshot = engine.snapshot()
    if any(child.peer == name for child in snapshot.children):
        return True
    return any(p.name == name and (p.transactions or p.queued) for p in snapshot.peers)


def _set_config_peers(engine: Engine) -> None:
    peers = tuple(state.config for state in engine.peers.values())
    engine.config = dataclasses.replace(engine.config, peers=peers)


def same_host_settings(old: EngineConfig, new: EngineConfig) -> bool:
    """Whether everything but the peers is unchanged (else a reload cannot apply it live)."""
    return dataclasses.replace(old, peers=()) == dataclasses.replace(new, peers=())
