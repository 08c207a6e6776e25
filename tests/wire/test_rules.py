"""check_message(): the payloads each message type may carry (RFC 4430 §6, with §4, §4.2.6,
§4.2.7, §5), the KINK_ERROR code of a violation and the ISAKMP Notify that answers it."""

import dataclasses
from typing import NamedTuple

import pytest

from kink.wire import (
    ApRep,
    ApReq,
    Attribute,
    DecodeError,
    DeletePayload,
    ErrorPayload,
    IdPayload,
    Isakmp,
    IsakmpPayload,
    KePayload,
    KinkErrorCode,
    KinkPayload,
    KrbError,
    Message,
    MessageType,
    NoncePayload,
    NotifyPayload,
    Proposal,
    ProtocolError,
    RawIsakmpPayload,
    RawPayload,
    SaPayload,
    TgtRep,
    TgtReq,
    Transform,
    check_message,
)
from kink.wire.ipsec_doi import AttributeType, IdType, NotifyType, ProtocolId

C, D, R, G, A, S = (
    MessageType.CREATE,
    MessageType.DELETE,
    MessageType.REPLY,
    MessageType.GETTGT,
    MessageType.ACK,
    MessageType.STATUS,
)
AP_REQ, AP_REP = ApReq(1, b"req"), ApRep(2, b"rep")
SPI = b"\x01\x02\x03\x04"
LIFE = (
    Attribute(AttributeType.SA_LIFE_TYPE, 1, True),
    Attribute(AttributeType.SA_LIFE_DURATION, 600, True),
)


def proposal(number: int = 1, protocol: int = ProtocolId.ESP, *transforms: Transform) -> Proposal:
    return Proposal(number, protocol, SPI, transforms or (Transform(1, 12, LIFE),))


SA = SaPayload((proposal(),))
NI = NoncePayload(b"n" * 16)
N = NotifyPayload(NotifyType.INITIAL_CONTACT, ProtocolId.ESP, b"", b"")
DEL = DeletePayload(ProtocolId.ESP, (SPI,))
ID = IdPayload(IdType.IPV4_ADDR, 0, 0, bytes(4))


def qm(*payloads: IsakmpPayload) -> Isakmp:
    return Isakmp(payloads)


def message(
    kind: int,
    outer: tuple[KinkPayload, ...],
    inner: tuple[KinkPayload, ...] | None = None,
    *,
    cksum: bytes | None = None,
    ackreq: bool = False,
    doi: int = 1,
) -> Message:
    authenticated = any(isinstance(p, ApReq | ApRep) for p in outer)
    if cksum is None:
        cksum = b"c" * 12 if authenticated else b""
    return Message(kind, 1, outer, inner, ackreq=ackreq, doi=doi, cksum=cksum)


class Ok(NamedTuple):
    msg: Message
    request: int | None = None


VALID = {
    "CREATE": Ok(message(C, (AP_REQ,), (qm(SA, NI),))),
    "CREATE in cleartext": Ok(message(C, (AP_REQ, qm(SA, NI)))),
    "CREATE with KE, IDs, N": Ok(
        message(C, (AP_REQ,), (qm(SA, NI, KePayload(b"g^x"), ID, ID, N, N),))
    ),
    "CREATE of two SAs": Ok(message(C, (AP_REQ,), (qm(SA, NI), qm(NI, SA)))),
    "CREATE with a bundle and IPComp": Ok(
        message(
            C,
            (AP_REQ,),
            (
                qm(
                    SaPayload(
                        (
                            proposal(1, ProtocolId.ESP),
                            Proposal(1, ProtocolId.IPCOMP, b"\x12\x34", (Transform(1, 2),)),
                            proposal(2, ProtocolId.AH),
                        )
                    ),
                    NI,
                ),
            ),
        )
    ),
    "REPLY to CREATE": Ok(message(R, (AP_REP,), (qm(SA),)), C),
    "REPLY to CREATE with Nr, ACKREQ": Ok(message(R, (AP_REP,), (qm(SA, NI),), ackreq=True), C),
    "REPLY to CREATE, error": Ok(
        message(R, (AP_REP,), (ErrorPayload(KinkErrorCode.INTERR), qm(N))), C
    ),
    "REPLY to CREATE, authenticated KRB_ERROR": Ok(message(R, (AP_REP,), (KrbError(b"e"),)), C),
    "REPLY, lone KRB_ERROR": Ok(message(R, (KrbError(b"e"),)), C),
    "REPLY, KRB_ERROR with Cksum (§4.2.3)": Ok(message(R, (KrbError(b"e"),), cksum=b"c"), C),
    "REPLY, lone KINK_ERROR": Ok(message(R, (ErrorPayload(KinkErrorCode.PROTOERR),)), D),
    "REPLY, KRB_ERROR and KINK_ERROR": Ok(message(R, (KrbError(b"e"), ErrorPayload(1)))),
    "REPLY, TGT_REP to a U2U command (§3.7.1)": Ok(message(R, (TgtRep(b"tgt"),)), C),
    "DELETE": Ok(message(D, (AP_REQ,), (qm(DEL, N),))),
    "REPLY to DELETE": Ok(message(R, (AP_REP,), (qm(DEL),)), D),
    "REPLY to DELETE, INVALID-SPI": Ok(message(R, (AP_REP,), (qm(N),)), D),
    "STATUS": Ok(message(S, (AP_REQ,))),
    "STATUS with notification": Ok(message(S, (AP_REQ,), (qm(N),))),
    "STATUS with empty KINK_ISAKMP": Ok(message(S, (AP_REQ,), (qm(),))),
    "REPLY to STATUS": Ok(message(R, (AP_REP,)), S),
    "REPLY to STATUS with notification": Ok(message(R, (AP_REP,), (qm(N),)), S),
    "ACK": Ok(message(A, (AP_REQ,))),
    "GETTGT": Ok(message(G, (TgtReq("kink/b@R"),))),
    "REPLY to GETTGT": Ok(message(R, (TgtRep(b"tgt"),)), G),
    "REPLY to GETTGT, denied": Ok(message(R, (ErrorPayload(KinkErrorCode.U2UDENIED),)), G),
    "REPLY to GETTGT, KRB_AP_ERR_NOT_US": Ok(message(R, (KrbError(b"e"),)), G),
    "REPLY of unknown command": Ok(message(R, (AP_REP,), (qm(SA, N, DEL),))),
}


@pytest.mark.parametrize("case", list(VALID.values()), ids=list(VALID))
def test_valid_forms(case: Ok) -> None:
    check_message(case.msg, case.request)
    if case.msg.type == R and case.request is not None:
        check_message(case.msg)  # what fits one command fits "some reply"


class Bad(NamedTuple):
    msg: Message
    request: int | None = None
    kink_error: int = KinkErrorCode.PROTOERR
    notify: int | None = None
    notify_data: bytes = b""


MALFORMED = NotifyType.PAYLOAD_MALFORMED
INVALID_TYPE = NotifyType.INVALID_PAYLOAD_TYPE


def create(*payloads: IsakmpPayload) -> Message:
    return message(C, (AP_REQ,), (qm(*payloads),))


def create_sa(*proposals: Proposal, **fields: int) -> Message:
    return create(SaPayload(proposals, **fields), NI)


def transforms(*attributes: Attribute) -> Proposal:
    return proposal(1, ProtocolId.ESP, Transform(1, 12, attributes))


INVALID = {
    # Message level (§4, §4.2.7, §6 introduction)
    "ciphertext not decrypted": Bad(Message(C, 1, (AP_REQ,), ciphertext=b"x", cksum=b"c")),
    "DOI 2": Bad(message(C, (AP_REQ,), (qm(SA, NI),), doi=2), kink_error=KinkErrorCode.INVDOI),
    "unknown KINK payload": Bad(message(C, (AP_REQ, RawPayload(9, b"")), (qm(SA, NI),))),
    "unknown KINK payload inside": Bad(message(C, (AP_REQ,), (qm(SA, NI), RawPayload(200, b"")))),
    "AP_REQ inside KINK_ENCRYPT": Bad(message(C, (AP_REQ,), (AP_REQ, qm(SA, NI)))),
    "AP_REP inside KINK_ENCRYPT": Bad(message(R, (AP_REP,), (AP_REP,))),
    "two AP_REQ": Bad(message(C, (AP_REQ, AP_REQ), (qm(SA, NI),))),
    "AP_REQ and AP_REP": Bad(message(C, (AP_REQ, AP_REP), (qm(SA, NI),))),
    "KINK_ENCRYPT without AP": Bad(message(R, (KrbError(b""),), (qm(N),))),
    "no Cksum with AP_REQ": Bad(message(C, (AP_REQ,), (qm(SA, NI),), cksum=b"")),
    "unknown message type": Bad(message(7, (AP_REQ,))),
    "message type 0": Bad(message(0, (AP_REQ,))),
    # CREATE (§6.3)
    "CREATE without AP_REQ": Bad(message(C, (qm(SA, NI),))),
    "CREATE with AP_REP": Bad(message(C, (AP_REP,), (qm(SA, NI),))),
    "CREATE without KINK_ISAKMP": Bad(message(C, (AP_REQ,))),
    "CREATE with KINK_ERROR": Bad(message(C, (AP_REQ,), (ErrorPayload(1), qm(SA, NI)))),
    "CREATE without Ni": Bad(create(SA), notify=MALFORMED),
    "CREATE without SA": Bad(create(NI), notify=MALFORMED),
    "CREATE with two SA": Bad(create(SA, SA, NI), notify=MALFORMED),
    "CREATE with two KE": Bad(create(SA, NI, KePayload(b"1"), KePayload(b"2")), notify=MALFORMED),
    "CREATE with HASH": Bad(
        create(SA, NI, RawIsakmpPayload(8, b"h")), None, 1, INVALID_TYPE, b"\x08"
    ),
    "CREATE with Delete": Bad(create(SA, NI, DEL), None, 1, INVALID_TYPE, b"\x0c"),
    "CREATE with one ID": Bad(create(SA, NI, ID), notify=MALFORMED),
    "CREATE with three IDs": Bad(create(SA, NI, ID, ID, ID), notify=MALFORMED),
    "Quick Mode 2.0": Bad(
        message(C, (AP_REQ,), (Isakmp((SA, NI), 2, 0),)), kink_error=KinkErrorCode.BADQMVERS
    ),
    # SA content (§4, §5, RFC 2407 §4.5-4.6, RFC 2408 §4.2)
    "SA in DOI 2": Bad(create_sa(proposal(), doi=2), notify=MALFORMED),
    "SA situation 3": Bad(create_sa(proposal(), situation=3), notify=MALFORMED),
    "SA without proposal": Bad(create_sa(), notify=MALFORMED),
    "proposal numbers decrease": Bad(create_sa(proposal(2), proposal(1)), notify=MALFORMED),
    "protocol twice in a bundle": Bad(create_sa(proposal(1), proposal(1)), notify=MALFORMED),
    "proposal for ISAKMP": Bad(create_sa(proposal(1, ProtocolId.ISAKMP)), notify=MALFORMED),
    "ESP SPI of 3 octets": Bad(
        create_sa(Proposal(1, ProtocolId.ESP, b"abc", (Transform(1, 12),))), notify=MALFORMED
    ),
    "proposal without transform": Bad(
        create_sa(Proposal(1, ProtocolId.ESP, SPI, ())), notify=MALFORMED
    ),
    "transform numbers repeat": Bad(
        create_sa(proposal(1, ProtocolId.ESP, Transform(1, 12), Transform(1, 3))),
        notify=MALFORMED,
    ),
    "basic attribute as variable": Bad(
        create_sa(transforms(Attribute(AttributeType.KEY_LENGTH, b"\x00\x80", False))),
        notify=MALFORMED,
    ),
    "life duration without type": Bad(
        create_sa(transforms(Attribute(AttributeType.SA_LIFE_DURATION, 60, True))),
        notify=MALFORMED,
    ),
    "conflicting lifetimes": Bad(
        create_sa(transforms(*LIFE, *LIFE)), notify=NotifyType.ATTRIBUTES_NOT_SUPPORTED
    ),
    # Other ISAKMP payloads
    "Nonce of 7 octets": Bad(create(SA, NoncePayload(b"n" * 7)), notify=MALFORMED),
    "Nonce of 257 octets": Bad(create(SA, NoncePayload(b"n" * 257)), notify=MALFORMED),
    "empty KE": Bad(create(SA, NI, KePayload(b"")), notify=MALFORMED),
    "ID_FQDN": Bad(create(SA, NI, IdPayload(IdType.FQDN, 0, 0, b"a.b"), ID), notify=MALFORMED),
    "ID of the wrong length": Bad(
        create(SA, NI, IdPayload(IdType.IPV6_ADDR, 0, 0, bytes(4)), ID), notify=MALFORMED
    ),
    "Notification in DOI 0": Bad(
        create(SA, NI, NotifyPayload(24578, 3, b"", b"", 0)), notify=MALFORMED
    ),
    "Delete in DOI 2": Bad(
        message(D, (AP_REQ,), (qm(DeletePayload(3, (SPI,), 2)),)), notify=MALFORMED
    ),
    "Delete for ISAKMP": Bad(
        message(D, (AP_REQ,), (qm(DeletePayload(1, (bytes(16),))),)), notify=MALFORMED
    ),
    "Delete with 2-octet ESP SPI": Bad(
        message(D, (AP_REQ,), (qm(DeletePayload(3, (b"12",))),)), notify=MALFORMED
    ),
    # DELETE, STATUS, ACK, GETTGT (§6.2, §6.4-§6.6)
    "DELETE without KINK_ISAKMP": Bad(message(D, (AP_REQ,))),
    "DELETE without Delete payload": Bad(message(D, (AP_REQ,), (qm(N),)), notify=MALFORMED),
    "DELETE with SA": Bad(message(D, (AP_REQ,), (qm(DEL, SA),)), None, 1, INVALID_TYPE, b"\x01"),
    "STATUS with two KINK_ISAKMP": Bad(message(S, (AP_REQ,), (qm(N), qm(N)))),
    "STATUS with SA": Bad(message(S, (AP_REQ,), (qm(SA),)), None, 1, INVALID_TYPE, b"\x01"),
    "STATUS without AP_REQ": Bad(message(S, (qm(N),))),
    "ACK with KINK_ISAKMP": Bad(message(A, (AP_REQ,), (qm(N),))),
    "ACK with empty KINK_ENCRYPT": Bad(message(A, (AP_REQ,), ())),
    "ACK without AP_REQ": Bad(message(A, ())),
    "GETTGT with AP_REQ": Bad(message(G, (AP_REQ, TgtReq("a@R")))),
    "GETTGT with two TGT_REQ": Bad(message(G, (TgtReq("a@R"), TgtReq("b@R")))),
    "empty GETTGT": Bad(message(G, ())),
    # REPLY (§6.1, §6.3-§6.6)
    "REPLY with AP_REQ": Bad(message(R, (AP_REQ,))),
    "REPLY with TGT_REQ": Bad(message(R, (TgtReq("a@R"),))),
    "empty REPLY": Bad(message(R, ())),
    "unauthenticated REPLY with KINK_ISAKMP": Bad(message(R, (ErrorPayload(1), qm(N)))),
    "TGT_REP with KRB_ERROR": Bad(message(R, (TgtRep(b"t"), KrbError(b"e")))),
    "TGT_REP with AP_REP": Bad(message(R, (AP_REP, TgtRep(b"t")))),
    "two KRB_ERROR": Bad(message(R, (KrbError(b"e"), KrbError(b"e")))),
    "two KINK_ERROR": Bad(message(R, (AP_REP,), (ErrorPayload(1), ErrorPayload(2)))),
    "KRB_ERROR with KINK_ISAKMP": Bad(message(R, (AP_REP,), (KrbError(b"e"), qm(N)))),
    "REPLY to CREATE with nothing": Bad(message(R, (AP_REP,)), C),
    "REPLY to CREATE with two transforms": Bad(
        message(
            R, (AP_REP,), (qm(SaPayload((proposal(1, 3, Transform(1, 12), Transform(2, 3)),))),)
        ),
        C,
        notify=MALFORMED,
    ),
    "REPLY to CREATE with Delete": Bad(
        message(R, (AP_REP,), (qm(SA, DEL),)), C, notify=INVALID_TYPE, notify_data=b"\x0c"
    ),
    "REPLY to CREATE, error with Nonce": Bad(
        message(R, (AP_REP,), (qm(NI, N),)), C, notify=INVALID_TYPE, notify_data=b"\x0a"
    ),
    "REPLY to DELETE with nothing": Bad(message(R, (AP_REP,)), D),
    "REPLY to DELETE with SA": Bad(message(R, (AP_REP,), (qm(SA),)), D, 1, INVALID_TYPE, b"\x01"),
    "REPLY to STATUS with Delete": Bad(
        message(R, (AP_REP,), (qm(DEL),)), S, 1, INVALID_TYPE, b"\x0c"
    ),
    "REPLY to STATUS with two KINK_ISAKMP": Bad(message(R, (AP_REP,), (qm(N), qm(N))), S),
    "REPLY to GETTGT with AP_REP": Bad(message(R, (AP_REP,)), G),
    "REPLY with KE twice": Bad(
        message(R, (AP_REP,), (qm(SA, KePayload(b"1"), KePayload(b"2")),)), notify=MALFORMED
    ),
}


@pytest.mark.parametrize("case", list(INVALID.values()), ids=list(INVALID))
def test_invalid_forms(case: Bad) -> None:
    with pytest.raises(ProtocolError) as info:
        check_message(case.msg, case.request)
    error = info.value
    assert isinstance(error, DecodeError)
    assert (error.kink_error, error.notify, error.notify_data) == (
        case.kink_error,
        case.notify,
        case.notify_data,
    ), str(error)
    assert error.offset == -1 and str(error) == error.reason


@pytest.mark.parametrize("request_type", [MessageType.REPLY, MessageType.ACK, 0, 99])
def test_request_must_be_a_command(request_type: int) -> None:
    with pytest.raises(ValueError):
        check_message(VALID["REPLY to CREATE"].msg, request_type)


def test_a_refused_transform_is_refused_every_time_and_an_accepted_one_stays_accepted() -> None:
    # kink.wire.rules marks a transform that passed its checks; a refused one is never marked,
    # and a changed copy of an accepted one is checked anew.
    good = transforms(Attribute(AttributeType.KEY_LENGTH, 128, True))
    for _ in range(2):
        check_message(create_sa(good))
    accepted = good.transforms[0]
    bad = dataclasses.replace(
        accepted, attributes=(Attribute(AttributeType.KEY_LENGTH, b"\x00\x80", False),)
    )
    for _ in range(2):
        with pytest.raises(ProtocolError, match="basic attribute"):
            check_message(create_sa(proposal(1, ProtocolId.ESP, bad)))
    check_message(create_sa(good))
