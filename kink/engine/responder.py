"""The answering side (RFC 4430 §3.2-§3.5, §6, §9, §10).

A command is authenticated (AP-REQ through the replay cache, then Cksum) before anything else;
the epoch in its AP-REQ is recorded (§3.7). Replies are cached per (authenticated client
principal, XID): a retransmitted command (new authenticator, same XID and content) gets the same
REPLY and never a second SA (§9). A REPLY with ACKREQ is retransmitted until the ACK comes; the
outbound SA of a 3-way CREATE is installed on the ACK (§3.2); if it never comes, the pair is
DELETEd, since the initiator may hold it. Selectors inside a configured policy are granted as
asked (narrowing); others are refused (§10). Kerberos failures are answered
authenticated when the ticket still decrypted (SKEW, TKT_EXPIRED, TKT_NYV: §3.5), else with a
lone KRB_ERROR; a user-to-user ticket we can no longer decrypt gets our TGT (§3.7.1).
"""

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Final

from kink.crypto.dh import DhExchange
from kink.crypto.entropy import random_bytes
from kink.crypto.errors import CryptoError
from kink.crypto.keymat import SaKeymat
from kink.crypto.seal import open_message, verify_cksum
from kink.engine import messages
from kink.engine.config import EngineConfig, Policy
from kink.engine.core import SPI_DRAWS, Timer
from kink.engine.events import (
    EEXIST,
    HelperResult,
    InstallSa,
    NegotiationFailed,
    SaSpec,
    Selector,
    SendDatagram,
)
from kink.engine.ids import selector_of, within
from kink.engine.initiator import Initiator, _delete_payloads, _notify_name, first_of
from kink.engine.kerberos import AcceptedRequest, KerberosError, KerberosPort
from kink.engine.keys import SaPlace, sa_spec, sa_transform
from kink.engine.proposals import Choice, NoProposal, select, with_spis
from kink.engine.sadb import Child, ChildState, PeerState, SaPair
from kink.wire import (
    ApReq,
    DecodeError,
    DeletePayload,
    ErrorPayload,
    IdPayload,
    Isakmp,
    IsakmpPayloadType,
    KePayload,
    KinkErrorCode,
    KrbError,
    Message,
    MessageType,
    NoncePayload,
    NotifyPayload,
    SaPayload,
    TgtRep,
    check_message,
)
from kink.wire.ipsec_doi import AttributeType, NotifyType
from kink.wire.isakmp import IsakmpPayload
from kink.wire.payloads import KinkPayload

# Enum members bound once: on Python 3.11 reading a member off its class goes through
# EnumType's __getattr__ hook, ~0.9 k instructions against ~0.1 k for a global, and the
# CREATE path reads about thirty per exchange (issue 4).
_ACK: Final = MessageType.ACK
_CREATE: Final = MessageType.CREATE

KRB_AP_ERR_BAD_INTEGRITY = 31
KRB_AP_ERR_REPEAT = 34
KRB_AP_ERR_NO_TGT = 67
KRB_ERR_GENERIC = 60


@dataclass(eq=False, slots=True)
class Answer:
    """A reply-cache entry: the command's decrypted content and our REPLY (None while the SA
    actions it waits for are under way)."""

    kind: int
    request: tuple[KinkPayload, ...] | None
    reply: bytes | None = None
    awaiting_ack: list[tuple[Child, list[SaSpec]]] = field(default_factory=list)
    attempts: int = 0
    timer: Timer | None = None


@dataclass(eq=False, slots=True)
class _Plan:
    """One KINK_ISAKMP of a received CREATE and what we make of it."""

    isakmp: Isakmp
    notify: NotifyPayload | None = None
    policy: Policy | None = None
    choice: Choice | None = None
    reply_sa: SaPayload | None = None
    ni: bytes = b""
    their_ke: bytes | None = None
    group: int | None = None
    ids: list[IdPayload] = field(default_factory=list)
    spis: dict[int, int] = field(default_factory=dict)
    child: Child | None = None
    outbound: list[SaSpec] = field(default_factory=list)
    nr: bytes | None = None
    our_ke: bytes | None = None
    keymat: SaKeymat | None = None  # the child's KEYMAT inputs (an SA re-keyed for a new SPI)
    installed: list[SaSpec] = field(default_factory=list)  # SAs in the kernel (deleted on failure)
    errors: list[str] = field(default_factory=list)


# A reply-cache entry with its key (client principal, XID), as its expiry timer holds it.
_Cached = tuple[tuple[str, int], Answer]


def _notify(kind: int, data: bytes = b"", protocol: int = 0, spi: bytes = b"") -> NotifyPayload:
    return NotifyPayload(kind, protocol, spi, data)


class Responder(Initiator):
    def __init__(
        self,
        config: EngineConfig,
        kerberos: KerberosPort,
        *,
        epoch: int,
        now: float,
        rng: random.Random | None = None,
        spi_rng: random.Random | None = None,
    ) -> None:
        super().__init__(config, kerberos, epoch=epoch, now=now, rng=rng, spi_rng=spi_rng)
        # the reply cache (§9), by (authenticated client principal, XID)
        self.answers: dict[tuple[str, int], Answer] = {}
        # Its expiry timer's callback, bound once: each timer holds it and its (key, entry),
        # not a closure of its own (kink.engine.core.Timer; a call and a closure less per
        # command answered, issue 9).
        self._expire_call: Callable[[_Cached, float], None] = self._expire_answer

    # ------------------------------------------------------------------------ commands

    def on_command(self, peer: PeerState, msg: Message, data: bytes, now: float) -> None:
        addr = self.address(peer)
        ap_req = first_of(msg.payloads, ApReq)
        if ap_req is None:
            # §6: a command without AP_REQ cannot be authenticated; answer without crypto.
            if msg.type is not _ACK and self.may_answer_unauthenticated(addr, now):
                err = ErrorPayload(KinkErrorCode.PROTOERR)
                self.emit(SendDatagram(messages.lone_reply(msg.xid, err), addr))
            self.drop("command-without-ap-req", addr)
            return
        try:
            accepted = self.kerberos.accept(ap_req.ap_req)
        except KerberosError as exc:
            self.kerberos_refusal(peer, msg.type, msg.xid, data, exc, now)
            return
        try:
            msg = open_message(msg, accepted.key)
        except CryptoError:
            self.drop("bad-cksum", addr)  # §4: "the message MUST be dropped"
            return
        except DecodeError as exc:
            self._answer_error(peer, msg, accepted, exc, now)
            return
        if accepted.client != peer.config.principal:
            # §10: only the principal configured for this peer may speak for its selectors.
            self.emit(
                NegotiationFailed(
                    peer.config.name,
                    MessageType(msg.type).name,
                    f"principal {accepted.client} is not {peer.config.principal}",
                    "INVALID-ID-INFORMATION",
                )
            )
            if msg.type is not _ACK:
                notify = Isakmp((_notify(NotifyType.INVALID_ID_INFORMATION),))
                self._send_reply(peer, msg.xid, accepted, (notify,))
            return
        self.saw_epoch(peer, ap_req.epoch, now)
        if msg.type is _ACK:
            self._on_ack(peer, accepted, msg, now)
            return
        cache_key = (accepted.client, msg.xid)
        entry = self.answers.get(cache_key)
        if entry is not None:
            if entry.kind == msg.type and entry.request == msg.encrypted:
                self.count("retransmitted-command")
                if entry.reply is not None:
                    self.emit(SendDatagram(entry.reply, addr))
            else:
                self.drop("xid-reused", addr)
            return
        entry = Answer(msg.type, msg.encrypted)
        self.answers[cache_key] = entry
        self.schedule(now + self.config.reply_cache_lifetime, self._expire_call, (cache_key, entry))
        if msg.type is _CREATE:
            self._answer_create(peer, accepted, msg, entry, now)
        elif msg.type is MessageType.DELETE:
            self._answer_delete(peer, accepted, msg, entry, now)
        else:
            self._answer_status(peer, accepted, msg, entry, now)

    def _send_reply(
        self,
        peer: PeerState,
        xid: int,
        accepted: AcceptedRequest,
        inner: tuple[KinkPayload, ...],
        *,
        ackreq: bool = False,
    ) -> bytes:
        ap_rep = self.kerberos.make_ap_rep(accepted)
        data = messages.reply(xid, self.epoch, ap_rep, accepted.key, inner, ackreq=ackreq)
        self.emit(SendDatagram(data, self.address(peer)))
        return data

    def _answer_error(
        self,
        peer: PeerState,
        msg: Message,
        accepted: AcceptedRequest,
        exc: DecodeError,
        now: float,
    ) -> None:
        """An authenticated command that breaks the rules (§3.5, §5.5): an ISAKMP Notify when
        the fault is inside KINK_ISAKMP, else a KINK_ERROR."""
        self.drop("malformed-command", self.address(peer))
        if msg.type is _ACK:
            return
        inner: tuple[KinkPayload, ...]
        if exc.notify is not None:
            inner = (Isakmp((_notify(exc.notify, exc.notify_data),)),)
        else:
            inner = (ErrorPayload(exc.kink_error),)
        self._send_reply(peer, msg.xid, accepted, inner)

    def kerberos_refusal(
        self,
        peer: PeerState,
        mtype: int,
        xid: int,
        data: bytes,
        exc: KerberosError,
        now: float,
    ) -> None:
        """A command of `mtype` and `xid` (datagram `data`) whose AP-REQ Kerberos refused:
        counted by its error, and answered as §3.5 says (no state either way)."""
        addr = self.address(peer)
        self.drop(f"krb5:{exc.name}", addr)
        if mtype == _ACK or exc.code == KRB_AP_ERR_REPEAT:
            return  # nothing answers an ACK; a replay gets no help (§10)
        accepted = exc.accepted
        if accepted is not None and exc.code is not None:
            # §3.5: we could read the ticket: an authenticated KRB_ERROR with the client time.
            try:
                verify_cksum(data, accepted.key)
            except CryptoError:
                return
            krb_error = self.kerberos.make_krb_error(exc.code, accepted)
            self._send_reply(peer, xid, accepted, (KrbError(krb_error),))
            return
        if not self.may_answer_unauthenticated(addr, now):
            return
        u2u_lost = exc.code in (KRB_AP_ERR_BAD_INTEGRITY, KRB_AP_ERR_NO_TGT)
        # §3.7.1: a user-to-user ticket under a TGT we no longer have: our current TGT.
        # user_to_user parses the AP-REQ again: asked last (issue 9, every forged ticket).
        if u2u_lost and peer.config.give_tgt and exc.user_to_user:
            try:
                tgt = self.kerberos.our_tgt()
            except KerberosError:
                return
            self.emit(SendDatagram(messages.lone_reply(xid, TgtRep(tgt)), addr))
            return
        code = exc.code if exc.code is not None else KRB_ERR_GENERIC
        krb_error = self.kerberos.make_krb_error(code, None)
        self.emit(SendDatagram(messages.lone_reply(xid, KrbError(krb_error)), addr))

    # -------------------------------------------------------------------------- CREATE

    def _answer_create(
        self, peer: PeerState, accepted: AcceptedRequest, msg: Message, entry: Answer, now: float
    ) -> None:
        """Each KINK_ISAKMP chosen gets inbound SPIs drawn here (no kernel round trip: every
        key of the responder's SAs is known now, Nr and g^xy being ours to make) and its child
        installed; the REPLY, naming those SPIs, is built once every install is over."""
        plans = [_Plan(p) for p in (msg.encrypted or ()) if isinstance(p, Isakmp)]
        installs: list[tuple[_Plan, SaSpec]] = []
        for plan in plans:
            self._plan(peer, plan)
            if plan.choice is None:
                continue
            for n in plan.choice.protocols:
                plan.spis[n.protocol] = self.draw_spi(n.protocol)
            installs += self._child_for(peer, accepted, plan, now)
        self._create_spis(peer, accepted, msg.xid, entry, plans, installs, 1, now)

    def _plan(self, peer: PeerState, plan: _Plan) -> None:
        """Choose for one KINK_ISAKMP, or set the Notify that refuses it (§5.5)."""
        sa = ke = None
        for p in plan.isakmp.payloads:
            if isinstance(p, SaPayload):
                sa = p
            elif isinstance(p, NoncePayload):
                plan.ni = p.data
            elif isinstance(p, KePayload):
                ke = p
            elif isinstance(p, IdPayload):
                plan.ids.append(p)
        assert sa is not None  # check_message: one SA per CREATE's KINK_ISAKMP
        if ke is not None:
            plan.group = _group_of(sa)
            if peer.config.pfs_group is None or plan.group != peer.config.pfs_group:
                # §3.2: an unsupported KE is refused with INVALID-PAYLOAD-TYPE naming KE.
                plan.notify = _notify(
                    NotifyType.INVALID_PAYLOAD_TYPE, bytes((IsakmpPayloadType.KE,))
                )
                return
            plan.their_ke = ke.data
        plan.policy = self._authorize(peer, plan.ids)
        if plan.policy is None:
            plan.notify = _notify(NotifyType.INVALID_ID_INFORMATION)
            return
        try:
            plan.choice, plan.reply_sa = select(sa, peer.config, plan.group)
        except NoProposal:
            plan.notify = _notify(NotifyType.NO_PROPOSAL_CHOSEN)
            return
        for n in plan.choice.protocols:
            if self.sadb.by_outbound(peer.config.name, n.protocol, n.peer_spi) is not None:
                # §3.2: "When a CREATE command contains an existing SPI, the responder MUST
                # reject it and SHOULD return ... INVALID-SPI".
                plan.notify = _notify(
                    NotifyType.INVALID_SPI, protocol=n.protocol, spi=n.peer_spi.to_bytes(4, "big")
                )
                plan.choice = None
                return

    def _authorize(self, peer: PeerState, ids: list[IdPayload]) -> Policy | None:
        """§10: the selectors asked for must be ones configured for this peer (its principal
        was checked already). Without IDs they are the two addresses (§5.3)."""
        policies = self.peer_policies[peer.config.name]
        if not ids:
            for policy in policies:
                if not policy.send_ids:
                    return policy
            here = _host(self.config.address)
            there = _host(peer.config.address)
            for policy in policies:
                if policy.local == here and policy.remote == there:
                    return policy
            return None
        try:
            theirs, ours = selector_of(ids[0]), selector_of(ids[1])
        except ValueError:
            return None
        exact = self.policies_by_ids[peer.config.name].get((ours, theirs))
        if exact is not None:
            return exact
        configured = [p for p in policies if p.send_ids]
        # Narrowing (as strongSwan does): selectors inside a configured policy are granted as
        # asked, under that policy's reqid; anything reaching outside is refused (§10).
        for policy in configured:
            if within(ours, policy.local) and within(theirs, policy.remote):
                return Policy(ours, theirs, policy.reqid)
        return None

    def _create_spis(
        self,
        peer: PeerState,
        accepted: AcceptedRequest,
        xid: int,
        entry: Answer,
        plans: list[_Plan],
        installs: list[tuple[_Plan, SaSpec]],
        draw: int,
        now: float,
    ) -> None:
        """Install the SAs (inbound ones with their `draw`-th SPI), then answer. An inbound SA
        whose SPI the kernel finds taken (EEXIST: an SA under way, someone else's) gets another
        SPI and its keys anew (KEYMAT covers the SPI, RFC 4430 §7), SPI_DRAWS times at most;
        an outbound one's EEXIST is the initiator's SPI taken here (INVALID-SPI, §3.2)."""
        if not installs:
            self._create_installed(peer, accepted, xid, entry, plans, now)
            return
        left = [len(installs)]
        again: list[tuple[_Plan, SaSpec]] = []

        # One closure per round, bound to each SA by a partial (C): a factory of closures
        # would cost a Python call more per SA (issue 4).
        def done(plan: _Plan, spec: SaSpec, result: HelperResult, now: float) -> None:
            if result.error is None:
                plan.installed.append(spec)
            elif result.error == EEXIST and spec.inbound and draw < SPI_DRAWS:
                again.append((plan, spec))
            else:
                plan.errors.append(result.error)
            left[0] -= 1
            if left[0] == 0:
                redrawn = [(p, self._redrawn_inbound(p, s)) for p, s in again if not p.errors]
                self._create_spis(peer, accepted, xid, entry, plans, redrawn, draw + 1, now)

        for plan, spec in installs:
            self.emit(InstallSa(self.token(partial(done, plan, spec)), spec))

    def _redrawn_inbound(self, plan: _Plan, taken: SaSpec) -> SaSpec:
        """The inbound SA `taken` with a new SPI, in the plan's child and REPLY too."""
        child = plan.child
        assert child is not None and child.life is not None
        assert plan.choice is not None and plan.keymat is not None
        protocol = taken.protocol
        spi = plan.spis[protocol] = self.draw_spi(protocol)
        for pair in child.sas:
            if pair.protocol == protocol:
                pair.inbound_spi = spi
        params = next(n.params for n in plan.choice.protocols if n.protocol == protocol)
        place = SaPlace(
            taken.src,
            taken.dst,
            True,
            taken.mode,
            taken.reqid,
            taken.src_selector,
            taken.dst_selector,
        )
        return sa_spec(plan.keymat, protocol, spi, params, place, child.life, taken.replay_window)

    def _child_for(
        self, peer: PeerState, accepted: AcceptedRequest, plan: _Plan, now: float
    ) -> list[tuple[_Plan, SaSpec]]:
        choice = plan.choice
        assert choice is not None and plan.policy is not None
        gxy = None
        if plan.their_ke is not None:
            assert plan.group is not None
            dh = DhExchange(plan.group)
            try:
                gxy = dh.shared_secret(plan.their_ke)
            except CryptoError:
                plan.notify = _notify(NotifyType.INVALID_KEY_INFORMATION)
                return []
            plan.our_ke = dh.public_bytes()
        # §3.2: another proposal, a KE or our own nonce make it 3-way; we then add Nr (§6.3).
        three_way = not choice.optimistic or gxy is not None or self.config.responder_nonce
        if three_way:
            plan.nr = random_bytes(self.config.nonce_length)  # kink.crypto.entropy: single-use
        inputs = plan.keymat = SaKeymat(accepted.key, plan.ni, plan.nr, gxy, self.config.aes_prf)
        life = self._life(choice.lifetime.seconds, choice.lifetime.kilobytes)
        child = Child(
            self.sadb.new_id(),
            peer,
            plan.policy,
            False,
            [SaPair(n.protocol, plan.spis[n.protocol], n.peer_spi) for n in choice.protocols],
            choice.lifetime,
            peer.epoch,
            now,
            three_way=three_way,
            mode=peer.config.mode,
            transforms=tuple(sa_transform(n.protocol, n.params) for n in choice.protocols),
            life=life,
            pfs_group=plan.group if gxy is not None else None,
        )
        plan.child = child
        inbound = self._place(peer, plan.policy, inbound=True)
        outbound = self._place(peer, plan.policy, inbound=False)
        specs: list[tuple[_Plan, SaSpec]] = []
        window = self.config.replay_window
        for n, pair in zip(choice.protocols, child.sas, strict=True):
            specs.append(
                (
                    plan,
                    sa_spec(inputs, n.protocol, pair.inbound_spi, n.params, inbound, life, window),
                )
            )
            out = sa_spec(inputs, n.protocol, pair.outbound_spi, n.params, outbound, life, window)
            if three_way:
                plan.outbound.append(out)  # installed on the ACK (§3.2 step 6)
            else:
                specs.append((plan, out))
        return specs

    def _create_installed(
        self,
        peer: PeerState,
        accepted: AcceptedRequest,
        xid: int,
        entry: Answer,
        plans: list[_Plan],
        now: float,
    ) -> None:
        inner: list[KinkPayload] = []
        ackreq = False
        for plan in plans:
            child = plan.child
            if child is not None and plan.errors:
                # An outbound EEXIST: the initiator's SPI is taken here after all (§3.2
                # INVALID-SPI); any other failure is answered alike, as the initiator's
                # answer to it is the one wanted: a new CREATE, new SPIs on both sides. What
                # went in goes (an SPI that was EEXIST is another SA's: left alone).
                for spec in plan.installed:
                    self.delete_sa(spec.protocol, spec.spi, spec.src, spec.dst)
                first = child.sas[0]
                plan.notify = _notify(
                    NotifyType.INVALID_SPI,
                    protocol=first.protocol,
                    spi=first.outbound_spi.to_bytes(4, "big"),
                )
                plan.child = child = None
            if child is None:
                assert plan.notify is not None
                self.emit(
                    NegotiationFailed(
                        peer.config.name,
                        "CREATE",
                        "refused",
                        _notify_name(plan.notify.notify_type),
                    )
                )
                inner.append(Isakmp((plan.notify,)))
                continue
            for pair in child.sas:
                pair.inbound = True
                pair.outbound = not child.three_way
            self.sadb.add(child)
            assert plan.reply_sa is not None
            payloads: list[IsakmpPayload] = [with_spis(plan.reply_sa, plan.spis)]
            if plan.nr is not None:
                payloads.append(NoncePayload(plan.nr))
            if plan.our_ke is not None:
                payloads.append(KePayload(plan.our_ke))
            payloads += plan.ids
            inner.append(Isakmp(tuple(payloads)))
            if child.three_way:
                ackreq = True
                entry.awaiting_ack.append((child, plan.outbound))
            else:
                self.established(child, now)
        entry.reply = self._send_reply(peer, xid, accepted, tuple(inner), ackreq=ackreq)
        if ackreq:
            entry.attempts = 1
            entry.timer = self.schedule(
                now + self.config.retransmit_delay(1), _resend(self, peer, entry)
            )

    def resend_reply(self, peer: PeerState, entry: Answer, now: float) -> None:
        """§9: a REPLY with ACKREQ is on timer T until its ACK arrives."""
        # Children the initiator deleted meanwhile (it rejected our REPLY) need no ACK.
        entry.awaiting_ack = [(c, o) for c, o in entry.awaiting_ack if _larval(self, c)]
        if not entry.awaiting_ack or entry.reply is None:
            return
        if entry.attempts >= self.config.max_attempts:
            waiting, entry.awaiting_ack = entry.awaiting_ack, []
            # A retransmitted CREATE must not get the REPLY now: the initiator would install
            # a pair we no longer have.
            entry.reply = None
            self.emit(NegotiationFailed(peer.config.name, "CREATE", "no ACK", None))
            # The initiator may hold the pair, its ACKs lost (§9): an authenticated DELETE
            # takes it down on both sides instead of leaving it half-open there.
            self.start_delete([child for child, _ in waiting], now)
            return
        entry.attempts += 1
        self.emit(SendDatagram(entry.reply, self.address(peer)))
        entry.timer = self.schedule(
            now + self.config.retransmit_delay(entry.attempts), _resend(self, peer, entry)
        )

    def _on_ack(self, peer: PeerState, accepted: AcceptedRequest, msg: Message, now: float) -> None:
        entry = self.answers.get((accepted.client, msg.xid))
        if entry is None or not entry.awaiting_ack:
            self.drop("unexpected-ack", self.address(peer))
            return
        if entry.timer is not None:
            entry.timer.cancel()
        waiting, entry.awaiting_ack = entry.awaiting_ack, []
        for child, outbound in waiting:
            if not _larval(self, child):
                continue  # deleted meanwhile (a DELETE from the initiator)
            for spec in outbound:
                self.install(spec, child)
            for pair in child.sas:
                pair.outbound = True
            self.established(child, now)

    # -------------------------------------------------------------------------- DELETE

    def _answer_delete(
        self, peer: PeerState, accepted: AcceptedRequest, msg: Message, entry: Answer, now: float
    ) -> None:
        """§3.3: both directions go (inbound after the grace timer); the REPLY lists our
        inbound SPIs, or INVALID-SPI for SPIs we do not have."""
        found: list[Child] = []
        missing: list[NotifyPayload] = []
        for isakmp in (p for p in (msg.encrypted or ()) if isinstance(p, Isakmp)):
            for d in isakmp.payloads:
                if not isinstance(d, DeletePayload):
                    continue
                for spi in d.spis:
                    child = self.sadb.by_outbound(
                        peer.config.name, d.protocol, int.from_bytes(spi, "big")
                    )
                    if child is None:
                        missing.append(
                            _notify(NotifyType.INVALID_SPI, protocol=d.protocol, spi=spi)
                        )
                    elif child not in found:
                        found.append(child)
        payloads: list[IsakmpPayload] = list(_delete_payloads(found, inbound=True))
        payloads += missing
        for child in found:
            child.state = ChildState.DYING
            self.delete_outbound(child)
            self.schedule(now + self.grace(peer), self._reap_call, child)
        entry.reply = self._send_reply(peer, msg.xid, accepted, (Isakmp(tuple(payloads)),))
        if found:
            self.keep_up(peer, now)  # start_action=start: the peer took our SAs down

    # -------------------------------------------------------------------------- STATUS

    def _answer_status(
        self, peer: PeerState, accepted: AcceptedRequest, msg: Message, entry: Answer, now: float
    ) -> None:
        """§3.4, §3.7: the REPLY itself carries our epoch; Notifications are only logged."""
        for isakmp in (p for p in (msg.encrypted or ()) if isinstance(p, Isakmp)):
            for n in isakmp.payloads:
                if isinstance(n, NotifyPayload):
                    self.count(f"status-notify.{n.notify_type}")
        entry.reply = self._send_reply(peer, msg.xid, accepted, ())

    # -------------------------------------------------------------------------- GETTGT

    def on_gettgt(self, peer: PeerState, msg: Message, now: float) -> None:
        """§3.1, §6.6: unauthenticated by nature; costs a dictionary read."""
        addr = self.address(peer)
        try:
            check_message(msg)
        except DecodeError:
            self.drop("malformed-gettgt", addr)
            return
        if not self.may_answer_unauthenticated(addr, now):
            return
        payload: KinkPayload
        if peer.config.give_tgt:
            try:
                payload = TgtRep(self.kerberos.our_tgt())
            except KerberosError:
                payload = ErrorPayload(KinkErrorCode.INTERR)
        else:
            payload = ErrorPayload(KinkErrorCode.U2UDENIED)
        self.emit(SendDatagram(messages.lone_reply(msg.xid, payload), addr))

    def _expire_answer(self, cached: _Cached, now: float) -> None:
        """A reply-cache entry's lifetime is over (§9): forgotten, or kept for another
        lifetime while it awaits its ACK."""
        key, entry = cached
        if entry.awaiting_ack:
            self.schedule(now + self.config.reply_cache_lifetime, self._expire_call, cached)
            return
        self._forget_answer(key, entry)

    def _forget_answer(self, key: tuple[str, int], entry: Answer) -> None:
        if self.answers.get(key) is entry:
            if entry.awaiting_ack:
                return  # kept until the ACK or the last retransmission
            del self.answers[key]


def _larval(engine: Responder, child: Child) -> bool:
    return child.state is ChildState.LARVAL and child.id in engine.sadb.children


def _resend(engine: Responder, peer: PeerState, entry: Answer) -> Callable[[float], None]:
    return lambda now: engine.resend_reply(peer, entry, now)


def _group_of(sa: SaPayload) -> int | None:
    for proposal in sa.proposals:
        for transform in proposal.transforms:
            for attr in transform.attributes:
                if attr.type == AttributeType.GROUP_DESCRIPTION:
                    return attr.as_int()
    return None


def _host(address: str) -> Selector:
    from ipaddress import ip_network

    return Selector(ip_network(address))
