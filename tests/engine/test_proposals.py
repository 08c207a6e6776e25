"""The SA proposals of kink.engine.proposals as values: what is offered, picked and checked
follows the configuration in force, however the offer and the pick are cached."""

import dataclasses

import pytest

from kink.engine.config import PeerConfig, ProposalSpec, TransformSpec
from kink.engine.proposals import Lifetime, NoProposal, check_reply, offer, select, with_spis
from kink.wire import Attribute, SaPayload, Transform, decode_qm, encode_qm
from kink.wire.ipsec_doi import AuthAlgorithm, EspTransform, GroupDescription, ProtocolId

ESP_AES128_SHA1 = ProposalSpec(
    (TransformSpec(ProtocolId.ESP, EspTransform.AES_CBC, AuthAlgorithm.HMAC_SHA1, 128),)
)
PEER = PeerConfig("b", "192.0.2.2", "host/b@KINK.TEST", (), (ESP_AES128_SHA1,))


def _wire(sa: SaPayload) -> SaPayload:
    """What the other side reads of `sa`."""
    (decoded,) = decode_qm(encode_qm([sa]), sa.payload_type)
    assert isinstance(decoded, SaPayload)
    return decoded


def test_a_changed_configuration_changes_the_offer() -> None:
    first = offer(PEER, {ProtocolId.ESP: 0x1000}, None)
    shorter = dataclasses.replace(PEER, lifetime_seconds=600)
    changed = offer(shorter, {ProtocolId.ESP: 0x1000}, None)
    assert first != changed
    assert select(_wire(changed), PEER, None)[0].lifetime == Lifetime(600, 0)
    assert select(_wire(first), PEER, None)[0].lifetime == Lifetime(PEER.lifetime_seconds, 0)
    # The same configuration offers the same transforms, with this CREATE's SPIs.
    again = offer(PEER, {ProtocolId.ESP: 0x2000}, None)
    assert again.proposals[0].transforms == first.proposals[0].transforms
    assert again.proposals[0].spi == (0x2000).to_bytes(4, "big")


def test_the_group_is_part_of_the_offer() -> None:
    group = GroupDescription.MODP_2048
    plain = offer(PEER, {ProtocolId.ESP: 1}, None)
    with_ke = offer(PEER, {ProtocolId.ESP: 1}, group)
    assert plain != with_ke
    pfs = dataclasses.replace(PEER, pfs_group=group)
    assert select(_wire(with_ke), pfs, group)[0].protocols[0].peer_spi == 1


def test_the_pick_carries_the_lifetime_in_force() -> None:
    shorter = dataclasses.replace(PEER, lifetime_seconds=300)
    offered = offer(PEER, {ProtocolId.ESP: 7}, None)
    for responder, seconds in ((PEER, PEER.lifetime_seconds), (shorter, 300)):
        choice, reply = select(_wire(offered), responder, None)
        reply = with_spis(reply, {ProtocolId.ESP: 9})
        checked = check_reply(offered, _wire(reply))
        assert checked.lifetime == choice.lifetime == Lifetime(seconds, 0)
        assert checked.protocols[0].peer_spi == 9


def test_picks_and_checks_of_one_shape_keep_their_own_spis() -> None:
    # select and check_reply keep their analysis per shape (transforms, not SPIs): each call
    # still answers with the SPIs of its own payloads.
    for spi in (0x100, 0x200, 0x100):
        offered = offer(PEER, {ProtocolId.ESP: spi}, None)
        choice, reply = select(_wire(offered), PEER, None)
        assert choice.protocols[0].peer_spi == spi
        assert reply.proposals[0].spi == bytes(4)
        checked = check_reply(offered, _wire(with_spis(reply, {ProtocolId.ESP: spi + 1})))
        assert checked.protocols[0].peer_spi == spi + 1
        assert checked.optimistic and choice.optimistic


def test_a_refusal_is_raised_again_for_the_same_shape() -> None:
    sha256 = ProposalSpec(
        (TransformSpec(ProtocolId.ESP, EspTransform.AES_CBC, AuthAlgorithm.HMAC_SHA2_256, 128),)
    )
    other = dataclasses.replace(PEER, proposals=(sha256,))
    offered = _wire(offer(other, {ProtocolId.ESP: 5}, None))
    for _ in range(2):
        with pytest.raises(NoProposal):
            select(offered, PEER, None)
    # The same payload for a configuration that has the transform: picked.
    assert select(offered, other, None)[0].protocols[0].peer_spi == 5
    # A reply naming a transform we did not offer is refused every time, too.
    _, reply = select(offered, other, None)
    for _ in range(2):
        with pytest.raises(NoProposal):
            check_reply(offer(PEER, {ProtocolId.ESP: 5}, None), _wire(with_spis(reply, {3: 1})))


def test_equal_transforms_that_are_distinct_objects_get_the_same_answers() -> None:
    # A transform equal to a shared one but another object (not passed through
    # kink.wire.shared) gets the answers of the shared one, whatever the caches keep.
    def unshared(sa: SaPayload) -> SaPayload:
        return SaPayload(
            tuple(
                dataclasses.replace(
                    p, transforms=tuple(Transform(*_fields(t)) for t in p.transforms)
                )
                for p in sa.proposals
            )
        )

    offered = offer(PEER, {ProtocolId.ESP: 0x300}, None)
    copy = unshared(_wire(offered))
    assert copy == _wire(offered)
    assert copy.proposals[0].transforms[0] is not _wire(offered).proposals[0].transforms[0]
    choice, reply = select(copy, PEER, None)
    assert (choice, reply) == select(_wire(offered), PEER, None)
    replied = with_spis(reply, {ProtocolId.ESP: 0x301})
    checked = check_reply(unshared(offered), unshared(_wire(replied)))
    assert checked == check_reply(offered, _wire(replied))
    assert checked.protocols[0].peer_spi == 0x301


def _fields(transform: Transform) -> tuple[int, int, tuple[Attribute, ...]]:
    return transform.number, transform.transform_id, transform.attributes
