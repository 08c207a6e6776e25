"""Changing a running engine, and taking over SAs after a restart.

Peers (a reload, SIGHUP / `kinkctl reload`, issue 6):
- add_peer(peer, now): the peer is known from now on; start_action=start negotiates at once.
- remove_peer(name, now): its commands under way are cancelled, its policies forgotten at once
  (no ACQUIRE, CREATE or DELETE of it is taken any more), its SAs DELETEd (RFC 4430 §3.3); a
  PeerRemoved notice follows once that DELETE is over and no SA of it is left.
- replace_peer(peer, now): new settings for a peer of that name. With another address,
  principal or mode it is remove_peer + add_peer (the SAs belong to the old ones: §10 binds the
  selectors to the principal). Otherwise the SAs stay until their rekey, which uses the new
  proposals, lifetimes, PFS group...; only SAs whose selectors no configured policy covers any
  more (and CREATEs under way for such selectors) are DELETEd; a policy keeps its reqid when it
  keeps its selectors (the host-to-host one of a peer without policies always does).
- reconfigure(config, now): a whole new EngineConfig: host knobs applied, peers added, removed
  and replaced as above; FIXED_FIELDS may not change (ConfigChangeError, before any change).

Restart (RFC 4430 §3.7, issue 6: a kinkd that finds its SAs still in the kernel keeps its epoch
and its SAs): child_records(now) in the old process, saved with a wall-clock time; in the new
one Engine(..., epoch=<the same epoch>), then restore(records, now, elapsed=<wall-clock seconds
since they were saved>), then start(now). restore installs nothing, and sends nothing but the
DELETE of responder children whose 3-way CREATE was never ACKed (RFC 4430 §3.2, §3.3).

A daemon that saves after every batch of exchanges asks for record_changes(now) instead: the
records of the children that changed since its last call and the ids of those no longer to be
saved, at the cost of the changes, not of every child (issue 9: 10,000s of children, a save per
batch). A child's record changes when it is added or removed (Sadb.add / remove), established
(installed, its rekey time set) or starts going (delete_outbound: a DYING child, or one about
to be removed, is no longer taken over); nothing else in a record changes but its age and time
to rekey, which run with the clock.
"""

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, replace

from kink.engine.config import FIXED_FIELDS, ConfigChangeError, EngineConfig, PeerConfig, Policy
from kink.engine.core import effective_policies
from kink.engine.ids import within
from kink.engine.proposals import Lifetime
from kink.engine.records import ChildRecord
from kink.engine.responder import Responder
from kink.engine.sadb import Child, ChildState, PeerState, Sadb, SaPair


@dataclass(frozen=True, slots=True)
class Reconfigured:
    """What reconfigure() did, by peer name."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RecordChanges:
    """What record_changes() found: the records of the children to save anew, by child id
    (ids are never reused within an engine), and the ids of children saved before that are
    no longer to be saved (some may never have been saved: a failed negotiation's)."""

    records: dict[int, ChildRecord]
    gone: list[int]


class _NotingSadb(Sadb):
    """The SA database, noting every child added or removed for record_changes(), and
    counting each peer's children (has_children)."""

    def __init__(self) -> None:
        super().__init__()
        # The ids of the children whose record may have changed since the last
        # record_changes(); None until its first call (an engine whose records nobody asks
        # for keeps nothing).
        self.touched: set[int] | None = None
        self.counts: dict[str, int] = {}  # children by peer name

    def touch(self, child: Child) -> None:
        if self.touched is not None:
            self.touched.add(child.id)

    def add(self, child: Child) -> None:
        if child.id not in self.children:
            name = child.peer.config.name
            self.counts[name] = self.counts.get(name, 0) + 1
        super().add(child)
        self.touch(child)

    def remove(self, child: Child) -> None:
        if self.children.get(child.id) is child:
            name = child.peer.config.name
            left = self.counts[name] - 1
            if left:
                self.counts[name] = left
            else:
                del self.counts[name]
        super().remove(child)
        self.touch(child)


class Lifecycle(Responder):
    SADB = _NotingSadb
    sadb: _NotingSadb

    def has_children(self, peer: str) -> bool:
        """Whether any child (in any state) is of a peer of that name, at no cost per
        child."""
        return peer in self.sadb.counts

    # ----------------------------------------------------------------------------- peers

    def add_peer(self, peer: PeerConfig, now: float) -> None:
        """Know `peer` from now on (ValueError if its name, address or a configured reqid is
        taken). A peer without policies gets the host-to-host one under the lowest free reqid
        from config.reqid_base (see peer_policies). start_action=start negotiates at once."""
        state = PeerState(peer)
        self.register(state)
        self.sync_config()
        self.keep_up(state, now)

    def remove_peer(self, name: str, now: float) -> None:
        """Forget the peer `name` (ValueError if unknown) and DELETE its SAs (§3.3)."""
        state = self._peer(name)
        self.unregister(state)
        self.cancel_commands(state, now, keep=lambda txn: False)
        children = [c for c in self.sadb.of_peer(name) if c.peer is state]
        for child in children:  # a removed peer's children are not saved (child_records)
            self.sadb.touch(child)
        self.start_delete(children, now)
        self.start_held_deletes(now, state)  # held ones, if start_delete found none to take
        self.forget_if_done(state)

    def replace_peer(self, peer: PeerConfig, now: float) -> None:
        """New settings for the peer named peer.name (ValueError if unknown, or if the new
        address or reqids are another peer's); the rule is in the module docstring."""
        state = self._peer(peer.name)
        old = state.config
        if peer == old:
            return
        self.check_free(peer, replacing=state)
        implicit = None if old.policies else self.peer_policies[old.name][0].reqid
        if _moved(old, peer):
            self.remove_peer(old.name, now)
            self.register(PeerState(peer), None if peer.policies else implicit)
            self.sync_config()
            self.keep_up(self.peers[peer.name], now)
            return
        reqid = implicit if implicit is not None else self.free_reqid()
        policies = effective_policies(peer, self.config.address, reqid)
        state.config = peer
        self.set_policies(state, policies)
        self.sync_config()

        def stale(policy: Policy) -> bool:
            return not any(_covers(p, policy) for p in policies)

        self.cancel_commands(
            state,
            now,
            keep=lambda txn: not any(stale(n.policy) for n in txn.negotiations),
        )
        gone = [
            c
            for c in self.sadb.of_peer(peer.name)
            if c.peer is state and c.state is not ChildState.DYING and stale(c.policy)
        ]
        self.start_delete(gone, now)
        self.keep_up(state, now)

    def reconfigure(self, config: EngineConfig, now: float) -> Reconfigured:
        """Apply a new configuration: the host-wide knobs from their next use, and its peers
        through add_peer, remove_peer and replace_peer (unchanged peers are not touched).
        ConfigChangeError, with nothing changed, if a FIXED_FIELDS value differs or the peers
        clash (a name, address or reqid twice)."""
        fixed = [f for f in FIXED_FIELDS if getattr(config, f) != getattr(self.config, f)]
        if fixed:
            raise ConfigChangeError(
                f"{', '.join(fixed)} cannot change while the engine runs (it needs a restart)"
            )
        old = {name: state.config for name, state in self.peers.items()}
        new = {p.name: p for p in config.peers}
        removed = [n for n in old if n not in new]
        added = [n for n in new if n not in old]
        changed = [n for n in new if n in old and new[n] != old[n]]
        unchanged = [n for n in new if n in old and new[n] == old[n]]
        moved = [n for n in changed if _moved(old[n], new[n])]
        kept_implicit = {
            self.peer_policies[n][0].reqid
            for n in unchanged + changed
            if n not in moved and not old[n].policies and not new[n].policies
        }
        _check_peers(config.peers, kept_implicit)
        self.config = replace(config, peers=self.config.peers)
        for name in removed + moved:
            self.remove_peer(name, now)
        for name in changed:
            if name not in moved:
                self.replace_peer(new[name], now)
        for peer in config.peers:
            if peer.name in added or peer.name in moved:
                self.add_peer(peer, now)
        return Reconfigured(tuple(added), tuple(removed), tuple(changed), tuple(unchanged))

    def _peer(self, name: str) -> PeerState:
        state = self.peers.get(name)
        if state is None:
            raise ValueError(f"no peer {name!r}")
        return state

    # --------------------------------------------------------------------------- restart

    def child_records(self, now: float) -> list[ChildRecord]:
        """A record of every installed child and of every responder child awaiting its ACK
        (not those being negotiated otherwise or deleted, nor a removed peer's), for restore()
        in the next process. No keys."""
        records = (_record(c, now) for c in self.sadb.children.values())
        return [record for record in records if record is not None]

    def record_changes(self, now: float, also: Iterable[int] = ()) -> RecordChanges:
        """What changed in child_records(now) since the last call, and the records of the
        children `also` (ids) if they are to be saved. The first call gives every record:
        the engine notes changes from then on. The caller applies the changes in order to
        what it saved before."""
        touched = self.sadb.touched
        self.sadb.touched = set()
        ids = self.sadb.children.keys() if touched is None else touched.union(also)
        records: dict[int, ChildRecord] = {}
        gone: list[int] = []
        for child_id in ids:
            child = self.sadb.children.get(child_id)
            record = None if child is None else _record(child, now)
            if record is not None:
                records[child_id] = record
            elif touched is not None:
                gone.append(child_id)
        return RecordChanges(records, gone)

    def established(self, child: Child, now: float) -> None:
        super().established(child, now)
        self.sadb.touch(child)  # installed, and its rekey time set (settle)

    def delete_outbound(self, child: Child) -> None:
        # Every DELETE and every removal starts here: a child going is no longer saved.
        self.sadb.touch(child)
        super().delete_outbound(child)

    def restore(
        self, records: Iterable[ChildRecord], now: float, *, elapsed: float = 0.0
    ) -> list[ChildRecord]:
        """Know again the children of `records`, whose SAs are still in the kernel: nothing is
        sent or installed. Pass only records whose SAs the kernel still has (a helper dump);
        `elapsed`: seconds between child_records() and now (wall clock), which the children
        aged meanwhile. The children are then matched by kernel events and sa_activity,
        rekeyed by us at their soft lifetime if we initiated them (at once if it passed), and
        DELETEd on Terminate or when their peer is removed. A peer's epoch is taken from its
        newest record, so that a peer that restarted meanwhile is noticed (§3.7). A child
        whose ACK never came (awaiting_ack: its exchange died with the old process) is known
        again and DELETEd at once (§3.3), so that the initiator, which may hold the pair, drops
        it too; its inbound SAs go as in any DELETE.

        Returns the records not restored: their peer is unknown, no configured policy of it
        covers their selectors any more, or an SPI is known already. The daemon should delete
        those SAs from the kernel itself."""
        left: list[ChildRecord] = []
        unacked: list[Child] = []
        newest: dict[str, ChildRecord] = {}
        for record in records:
            state = self.peers.get(record.peer)
            policy = self._restored_policy(state, record) if state is not None else None
            if state is None or policy is None or self._known(record):
                left.append(record)
                continue
            age = record.age + elapsed
            child = Child(
                self.sadb.new_id(),
                state,
                policy,
                record.initiator,
                [
                    SaPair(p, spi_in, spi_out, True, not record.awaiting_ack)
                    for p, spi_in, spi_out in record.spis
                ],
                Lifetime(record.life.hard_seconds, record.life.hard_bytes // 1024),
                record.peer_epoch,
                now - age,
                three_way=record.awaiting_ack,
                state=ChildState.LARVAL if record.awaiting_ack else ChildState.INSTALLED,
                mode=record.mode,
                transforms=record.transforms,
                life=record.life,
                pfs_group=record.pfs_group,
            )
            self.sadb.add(child)
            if record.awaiting_ack:
                unacked.append(child)
            elif record.initiator and record.rekey_in is not None:
                child.rekey_at = now + max(0.0, record.rekey_in - elapsed)
                child.rekey_timer = self.schedule(child.rekey_at, self._rekey_call, child)
            best = newest.get(record.peer)
            if best is None or record.age < best.age:
                newest[record.peer] = record
        for name, record in newest.items():
            state = self.peers[name]
            if state.epoch is None:
                state.epoch = record.peer_epoch
        self.start_delete(unacked, now)
        return left

    def _known(self, record: ChildRecord) -> bool:
        return any(
            self.sadb.by_inbound(p, spi_in) is not None
            or self.sadb.by_outbound(record.peer, p, spi_out) is not None
            for p, spi_in, spi_out in record.spis
        )

    def _restored_policy(self, state: PeerState, record: ChildRecord) -> Policy | None:
        """The configured policy that covers a record's selectors (§10), as the responder
        grants narrower ones. The host-to-host policy of a peer without policies takes the
        record's reqid if free, so that it goes on matching the SAs in the kernel. The policy
        of the record's reqid is tried first: with 10,000s of policies, a walk of them all per
        record made restoring as many children quadratic (issue 9)."""
        own = self.policies.get(record.reqid)
        first = (own[1],) if own is not None and own[0] is state else ()
        if first and (first[0].send_ids, first[0].local, first[0].remote) == (
            record.send_ids,
            record.local,
            record.remote,
        ):
            return first[0]  # the usual case, without subnet_of's arithmetic
        for policy in itertools.chain(first, self.peer_policies[state.config.name]):
            if policy.send_ids != record.send_ids:
                continue
            if not (within(record.local, policy.local) and within(record.remote, policy.remote)):
                continue
            if (
                policy.reqid != record.reqid
                and not state.config.policies
                and record.reqid not in self.policies
            ):
                policy = replace(policy, reqid=record.reqid)
                self.set_policies(state, (policy,))
            if (policy.local, policy.remote) == (record.local, record.remote):
                return policy
            return Policy(record.local, record.remote, policy.reqid)
        return None


def _record(c: Child, now: float) -> ChildRecord | None:
    """The record of an installed child or of a responder child awaiting its ACK; None for
    the others (being negotiated otherwise or deleted, a removed peer's)."""
    if c.peer.removed or c.life is None:
        return None
    # A 3-way CREATE we answered (§3.2): our inbound SAs are in the kernel, and the initiator
    # may have installed the pair on our REPLY already.
    awaiting_ack = c.state is ChildState.LARVAL and c.three_way and not c.initiator
    if c.state is not ChildState.INSTALLED and not awaiting_ack:
        return None
    return ChildRecord(
        peer=c.peer.config.name,
        initiator=c.initiator,
        spis=c.spis(),
        mode=c.mode,
        reqid=c.policy.reqid,
        local=c.policy.local,
        remote=c.policy.remote,
        send_ids=c.policy.send_ids,
        transforms=c.transforms,
        life=c.life,
        pfs_group=c.pfs_group,
        peer_epoch=c.peer_epoch,
        age=now - c.created,
        rekey_in=None if c.rekey_at is None else c.rekey_at - now,
        awaiting_ack=awaiting_ack,
    )


def _moved(old: PeerConfig, new: PeerConfig) -> bool:
    """A change its SAs cannot outlive: another address, principal (§10) or mode."""
    return (old.address, old.principal, old.mode) != (new.address, new.principal, new.mode)


def _covers(configured: Policy, policy: Policy) -> bool:
    """`policy` (a child's) lies within `configured`, under the same reqid and ID use."""
    return (
        configured.reqid == policy.reqid
        and configured.send_ids == policy.send_ids
        and within(policy.local, configured.local)
        and within(policy.remote, configured.remote)
    )


def _check_peers(peers: tuple[PeerConfig, ...], implicit: set[int]) -> None:
    names: set[str] = set()
    addresses: set[str] = set()
    reqids: set[int] = set(implicit)
    for peer in peers:
        if peer.name in names:
            raise ConfigChangeError(f"peer {peer.name!r} twice")
        if peer.address in addresses:
            raise ConfigChangeError(f"address {peer.address} twice (peer {peer.name!r})")
        for policy in peer.policies:
            if policy.reqid in reqids:
                raise ConfigChangeError(f"reqid {policy.reqid:#x} twice (peer {peer.name!r})")
            reqids.add(policy.reqid)
        names.add(peer.name)
        addresses.add(peer.address)
