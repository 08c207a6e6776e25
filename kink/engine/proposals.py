"""SA proposals (RFC 4430 §3.2, §5.1-§5.2; RFC 2408 §4.2; RFC 2407 §4.5): what the initiator
offers, what the responder picks, and the initiator's check of the pick.

A proposal of the configuration is a bundle (one Proposal payload per protocol, all with one
number); each carries one transform. The responder goes through the initiator's bundles in
the initiator's order and takes the first it supports; lifetimes are the shorter of the two
(the responder may lower them, never raise them: §3.2).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby

from kink.crypto.algorithms import TransformParams
from kink.engine.config import PeerConfig, ProposalSpec, TransformSpec
from kink.wire import Attribute, Proposal, ProtocolError, SaPayload, Transform, lifetimes
from kink.wire.ipsec_doi import (
    DEFAULT_LIFETIME_SECONDS,
    AttributeType,
    EncapsulationMode,
    LifeType,
    NotifyType,
)
from kink.wire.isakmp import shared

_LIFE = (AttributeType.SA_LIFE_TYPE, AttributeType.SA_LIFE_DURATION)
_MODES = {"transport": EncapsulationMode.TRANSPORT, "tunnel": EncapsulationMode.TUNNEL}


class NoProposal(Exception):
    """No acceptable proposal: answered / reported as NO-PROPOSAL-CHOSEN (§5.5)."""

    notify = NotifyType.NO_PROPOSAL_CHOSEN


@dataclass(frozen=True, slots=True)
class Lifetime:
    seconds: int  # 0: none
    kilobytes: int  # 0: none

    def shorter(self, other: "Lifetime") -> "Lifetime":
        return Lifetime(
            _min_life(self.seconds, other.seconds), _min_life(self.kilobytes, other.kilobytes)
        )


def _min_life(a: int, b: int) -> int:
    if not a or not b:
        return a or b
    return min(a, b)


# Negotiated and Choice are not frozen: built per exchange and only read after that, while a
# frozen dataclass pays object.__setattr__ for every field (issue 4).
@dataclass(slots=True)
class Negotiated:
    """One protocol of the chosen bundle: its transform and the peer's (inbound) SPI."""

    protocol: int
    peer_spi: int
    transform: Transform
    params: TransformParams


@dataclass(slots=True)
class Choice:
    """The chosen bundle: `number`, one Negotiated per protocol, the lifetime in force, and
    whether it is the initiator's optimistic proposal (first bundle, first transforms)."""

    number: int
    protocols: tuple[Negotiated, ...]
    lifetime: Lifetime
    optimistic: bool


def life_attributes(life: Lifetime) -> tuple[Attribute, ...]:
    attrs: list[Attribute] = []
    if life.seconds:
        attrs.append(Attribute(AttributeType.SA_LIFE_TYPE, LifeType.SECONDS, True))
        attrs.append(Attribute.of_int(AttributeType.SA_LIFE_DURATION, life.seconds))
    if life.kilobytes:
        attrs.append(Attribute(AttributeType.SA_LIFE_TYPE, LifeType.KILOBYTES, True))
        attrs.append(Attribute.of_int(AttributeType.SA_LIFE_DURATION, life.kilobytes))
    return tuple(attrs)


def _attributes(spec: TransformSpec, mode: str, group: int | None) -> tuple[Attribute, ...]:
    attrs: list[Attribute] = []
    if group is not None:
        attrs.append(Attribute(AttributeType.GROUP_DESCRIPTION, group, True))
    attrs.append(Attribute(AttributeType.ENCAPSULATION_MODE, _MODES[mode], True))
    if spec.auth_algorithm is not None:
        attrs.append(Attribute(AttributeType.AUTHENTICATION_ALGORITHM, spec.auth_algorithm, True))
    if spec.key_length is not None:
        attrs.append(Attribute(AttributeType.KEY_LENGTH, spec.key_length, True))
    return tuple(attrs)


def configured_life(peer: PeerConfig) -> Lifetime:
    return _lifetime(peer.lifetime_seconds, peer.lifetime_kilobytes)


# Each CREATE reads its peer's configured lifetime on both sides, and a frozen Lifetime costs
# ~4.8 k instructions to build against ~1.2 k for this lookup (issue 4); a configuration has a
# handful of lifetimes.
@lru_cache(maxsize=256)
def _lifetime(seconds: int, kilobytes: int) -> Lifetime:
    return Lifetime(seconds, kilobytes)


def offer(peer: PeerConfig, spis: dict[int, int], group: int | None) -> SaPayload:
    """The initiator's SA payload: every configured bundle, numbered from 1, with our inbound
    SPI of each protocol (one SPI per protocol across the proposals, as racoon does)."""
    return SaPayload(
        tuple(
            Proposal(number, protocol, spis[protocol].to_bytes(4, "big"), (transform,))
            for number, protocol, transform in _offered(peer, group)
        )
    )


_Offered = tuple[tuple[int, int, Transform], ...]  # (proposal number, protocol, transform)
# Every CREATE offers the same transforms for a peer configuration: they are built once per
# (configuration, group). Keyed by the configuration's identity (a PeerConfig is a large value
# to hash): the entry holds the configuration itself, so its id cannot be reused meanwhile.
# Room for two entries (with and without KE) for each of a large configuration's peers.
_OFFER_CACHE = 2048
_offers: dict[tuple[int, int | None], tuple[PeerConfig, _Offered]] = {}


def _offered(peer: PeerConfig, group: int | None) -> _Offered:
    key = (id(peer), group)
    hit = _offers.get(key)
    if hit is not None:
        return hit[1]
    life = life_attributes(configured_life(peer))
    offered = tuple(
        (
            number,
            spec.protocol,
            shared(Transform(1, spec.transform_id, life + _attributes(spec, peer.mode, group))),
        )
        for number, bundle in enumerate(peer.proposals, start=1)
        for spec in bundle.transforms
    )
    if len(_offers) >= _OFFER_CACHE:
        _offers.clear()
    _offers[key] = (peer, offered)
    return offered


def protocols_of(peer: PeerConfig) -> list[int]:
    """The protocols the offer needs an inbound SPI for, in first-seen order."""
    seen: dict[int, None] = {}
    for bundle in peer.proposals:
        for spec in bundle.transforms:
            seen.setdefault(spec.protocol, None)
    return list(seen)


def _bundles(proposals: tuple[Proposal, ...]) -> Iterator[tuple[int, tuple[Proposal, ...]]]:
    for number, group in groupby(proposals, key=lambda p: p.number):
        yield number, tuple(group)


# Transforms are frozen values and an exchange meets the same few again and again (the offer,
# the pick, the reply): their analysis is cached. Bounded, as transforms come from the wire.
_TRANSFORM_CACHE = 1024


@lru_cache(maxsize=_TRANSFORM_CACHE)
def _split(transform: Transform) -> tuple[Lifetime, frozenset[tuple[int, int | bytes]]]:
    """(lifetime, the other attributes) of a transform; ProtocolError if lifetimes conflict."""
    seconds = kilobytes = 0
    found = False
    for kind, value in lifetimes(transform.attributes):
        found = True
        if kind == LifeType.SECONDS:
            seconds = value
        elif kind == LifeType.KILOBYTES:
            kilobytes = value
    if not found:
        seconds = DEFAULT_LIFETIME_SECONDS  # RFC 2407 §4.5
    rest = frozenset((a.type, a.value) for a in transform.attributes if a.type not in _LIFE)
    return Lifetime(seconds, kilobytes), rest


@lru_cache(maxsize=_TRANSFORM_CACHE)
def params_of(transform: Transform) -> TransformParams:
    auth = key_length = None
    for attr in transform.attributes:
        if attr.type == AttributeType.AUTHENTICATION_ALGORITHM:
            auth = attr.as_int()
        elif attr.type == AttributeType.KEY_LENGTH:
            key_length = attr.as_int()
    return TransformParams(transform.transform_id, auth, key_length)


# One protocol of a selection: (position of its Proposal in the SA payload, the transform
# picked, its parameters, the reply's copy of it).
_Pick = tuple[int, Transform, TransformParams, Transform]
# number, picks, lifetime in force, optimistic
_Selection = tuple[int, tuple[_Pick, ...], Lifetime, bool]
# What the responder picks depends only on the configuration, the DH group and the SA
# payload's shape (proposal numbers, protocols, SPI sizes and transforms), not on the SPIs:
# an exchange meets the same shapes again and again (decoded transforms are shared objects),
# so the analysis is kept. Keyed by the configuration's identity, the entry holding the
# configuration itself (as for _offers); a shape holds its transforms. Bounded: shapes come
# from authenticated peers, but from the wire.
_SELECTION_CACHE = 1024
_Shape = tuple[tuple[int, int, int, tuple[Transform, ...]], ...]
_selections: dict[tuple[int, int | None, _Shape], tuple[PeerConfig, _Selection | None]] = {}


def select(sa: SaPayload, peer: PeerConfig, group: int | None) -> tuple[Choice, SaPayload]:
    """The responder's pick from the initiator's SA payload, and the reply's SA payload with
    zero SPIs in place of ours (the caller fills them in with `with_spis`). `group` is the DH
    group of the initiator's KE payload, None without KE. NoProposal if nothing fits."""
    proposals = sa.proposals
    key = (id(peer), group, _shape(proposals))
    hit = _selections.get(key)
    if hit is None or hit[0] is not peer:
        if len(_selections) >= _SELECTION_CACHE:
            _selections.clear()
        hit = _selections[key] = (peer, _select(proposals, peer, group))
    selection = hit[1]
    if selection is None:
        raise NoProposal("no proposal matches the configuration")
    number, picks, life, optimistic = selection
    chosen: list[Negotiated] = []
    reply: list[Proposal] = []
    for index, transform, params, picked in picks:
        proposal = proposals[index]
        peer_spi = int.from_bytes(proposal.spi, "big")
        chosen.append(Negotiated(proposal.protocol, peer_spi, transform, params))
        reply.append(Proposal(number, proposal.protocol, bytes(4), (picked,)))
    return Choice(number, tuple(chosen), life, optimistic), SaPayload(tuple(reply))


def _select(
    proposals: tuple[Proposal, ...], peer: PeerConfig, group: int | None
) -> _Selection | None:
    ours = configured_life(peer)
    first = True
    position = 0
    for number, bundle in _bundles(proposals):
        for spec in peer.proposals:
            picked = _match_bundle(bundle, spec, peer.mode, group)
            if picked is None:
                continue
            life = ours
            optimistic = first
            for index, transform in picked:
                theirs, _ = _split(transform)
                life = life.shorter(theirs)
                optimistic = optimistic and index == 0
            picks = tuple(
                (position + i, transform, params_of(transform), _picked(transform, life))
                for i, (_, transform) in enumerate(picked)
            )
            return number, picks, life, optimistic
        first = False
        position += len(bundle)
    return None


@lru_cache(maxsize=_TRANSFORM_CACHE)
def _picked(transform: Transform, life: Lifetime) -> Transform:
    """The reply's copy of a chosen transform: its attributes with the lifetime in force."""
    attrs = life_attributes(life) + tuple(a for a in transform.attributes if a.type not in _LIFE)
    return shared(Transform(transform.number, transform.transform_id, attrs))


def with_spis(sa: SaPayload, spis: dict[int, int]) -> SaPayload:
    return SaPayload(
        tuple(
            Proposal(p.number, p.protocol, spis[p.protocol].to_bytes(4, "big"), p.transforms)
            for p in sa.proposals
        ),
        sa.doi,
        sa.situation,
    )


def _match_bundle(
    bundle: tuple[Proposal, ...], spec: ProposalSpec, mode: str, group: int | None
) -> list[tuple[int, Transform]] | None:
    if len(bundle) != len(spec.transforms):
        return None
    picked: list[tuple[int, Transform]] = []
    for proposal, ours in zip(bundle, spec.transforms, strict=True):
        if proposal.protocol != ours.protocol or len(proposal.spi) != 4:
            return None
        wanted = _wanted(ours, mode, group)
        for index, transform in enumerate(proposal.transforms):
            if transform.transform_id != ours.transform_id:
                continue
            try:
                _, rest = _split(transform)
            except ProtocolError:
                continue
            if rest == wanted:
                picked.append((index, transform))
                break
        else:
            return None
    return picked


@lru_cache(maxsize=256)  # keyed by configuration: a handful of entries
def _wanted(
    spec: TransformSpec, mode: str, group: int | None
) -> frozenset[tuple[int, int | bytes]]:
    """What _split leaves of a transform matching `spec`: every attribute but lifetimes."""
    return frozenset((a.type, a.value) for a in _attributes(spec, mode, group))


# The initiator's check of a pick depends only on the shapes of its offer and of the reply
# (numbers, protocols, SPI sizes, transforms), not on the SPIs: cached like _selections, the
# verdict (a Choice without SPIs, or the reason for NoProposal) by both shapes.
_CHECK_CACHE = 1024
_Verdict = tuple[int, tuple[tuple[Transform, TransformParams], ...], Lifetime, bool] | str
_checks: dict[tuple[_Shape, _Shape], _Verdict] = {}


def check_reply(offered: SaPayload, reply: SaPayload) -> Choice:
    """The initiator's check of the responder's pick (§3.2): one of the offered bundles, each
    transform one we offered with identical attributes except lifetimes, which may only be
    lower. NoProposal otherwise."""
    key = (_shape(offered.proposals), _shape(reply.proposals))
    verdict = _checks.get(key)
    if verdict is None:
        try:
            verdict = _check_reply(offered.proposals, reply.proposals)
        except NoProposal as exc:
            verdict = str(exc)
        if len(_checks) >= _CHECK_CACHE:
            _checks.clear()
        _checks[key] = verdict
    if isinstance(verdict, str):
        raise NoProposal(verdict)
    number, picks, life, optimistic = verdict
    chosen = [
        Negotiated(theirs.protocol, int.from_bytes(theirs.spi, "big"), picked, params)
        for theirs, (picked, params) in zip(reply.proposals, picks, strict=True)
    ]
    return Choice(number, tuple(chosen), life, optimistic)


def _shape(proposals: tuple[Proposal, ...]) -> _Shape:
    return tuple([(p.number, p.protocol, len(p.spi), p.transforms) for p in proposals])


def _check_reply(
    offered: tuple[Proposal, ...], replied: tuple[Proposal, ...]
) -> tuple[int, tuple[tuple[Transform, TransformParams], ...], Lifetime, bool]:
    bundles = dict(_bundles(offered))
    first_number = offered[0].number
    numbers = {p.number for p in replied}
    if len(numbers) != 1:
        raise NoProposal("the reply names more than one proposal")
    number = numbers.pop()
    bundle = bundles.get(number)
    if bundle is None or len(bundle) != len(replied):
        raise NoProposal(f"the reply names proposal {number}, which was not offered as such")
    picks: list[tuple[Transform, TransformParams]] = []
    optimistic = number == first_number
    life: Lifetime | None = None
    for ours, theirs in zip(bundle, replied, strict=True):
        if ours.protocol != theirs.protocol or len(theirs.spi) != 4:
            raise NoProposal("the reply's protocols differ from the offer")
        (picked,) = theirs.transforms
        their_life, their_rest = _split(picked)
        index = -1
        for position, transform in enumerate(ours.transforms):
            our_life, our_rest = _split(transform)
            if transform.transform_id == picked.transform_id and our_rest == their_rest:
                index = position
                break
        else:
            raise NoProposal("the reply's transform was not offered")
        if _longer(their_life, our_life):
            raise NoProposal("the responder raised a lifetime (RFC 4430 §3.2)")
        optimistic = optimistic and index == 0
        life = their_life if life is None else life.shorter(their_life)
        picks.append((picked, params_of(picked)))
    assert life is not None
    return number, tuple(picks), life, optimistic


def _longer(theirs: Lifetime, ours: Lifetime) -> bool:
    return any(
        (o and (not t or t > o))
        for t, o in ((theirs.seconds, ours.seconds), (theirs.kilobytes, ours.kilobytes))
    )
