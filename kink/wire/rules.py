"""Which payloads a KINK message may carry: RFC 4430 §6 (with §4, §4.2.6, §4.2.7 and §5),
checked in one place, check_message().

decode() and decode_inner() only check structure. The receiver calls check_message() on the
message once KINK_ENCRYPT has been decrypted (msg.encrypted set), before acting on it. A
violation raises ProtocolError; its kink_error is the KINK_ERROR code to answer with, and when
the fault is inside a KINK_ISAKMP payload its notify is the ISAKMP Notify type RFC 4430 §5.5
says to send instead (INVALID-PAYLOAD-TYPE with the type octet as data, or PAYLOAD-MALFORMED).

Not checked here: the Cksum value and the Kerberos content (crypto and krb5 layers), whether a
REPLY fits the transaction (the engine passes the command type as `request` to get the
per-command reply forms checked), and the ACKREQ bit outside a REPLY, which the RFC forbids
senders to set (§4) but gives receivers no rule for: it is ignored.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kink.wire.constants import (
    QM_MAJOR_VERSION,
    QM_MINOR_VERSION,
    IsakmpPayloadType,
    KinkErrorCode,
    MessageType,
)
from kink.wire.errors import ProtocolError
from kink.wire.ipsec_doi import (
    BASIC_ATTRIBUTES,
    ID_DATA_LENGTHS,
    IPSEC_DOI,
    SIT_IDENTITY_ONLY,
    SPI_SIZES,
    NotifyType,
)
from kink.wire.isakmp import (
    DeletePayload,
    IdPayload,
    IsakmpPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    SaPayload,
    Transform,
    lifetimes,
)
from kink.wire.message import Message
from kink.wire.payloads import (
    ApRep,
    ApReq,
    ErrorPayload,
    Isakmp,
    KinkPayload,
    KrbError,
    RawPayload,
    TgtRep,
    TgtReq,
)

_MANY = 0xFFFF
_NONCE_MIN, _NONCE_MAX = 8, 256  # RFC 2409 §5: nonce data of 8 to 256 octets


@dataclass(frozen=True)
class _QuickMode:
    """What one KINK_ISAKMP payload may hold: ISAKMP type -> (min, max) count."""

    name: str
    counts: dict[int, tuple[int, int]]
    one_transform: bool = False  # a reply names the one transform chosen per proposal


_T = IsakmpPayloadType
_ID = int(_T.ID)  # for _check_qm: a member read off its class is slow on Python 3.11
# §6.3: SA, Ni, [KE], [IDci, IDcr], [N...]
_CREATE = _QuickMode(
    "CREATE", {_T.SA: (1, 1), _T.NONCE: (1, 1), _T.KE: (0, 1), _T.ID: (0, 2), _T.N: (0, _MANY)}
)
# §6.3: SA (one transform per proposal), [Nr], [KE], [IDci, IDcr], [N...]
_CREATE_REPLY = _QuickMode(
    "REPLY to CREATE",
    {_T.SA: (1, 1), _T.NONCE: (0, 1), _T.KE: (0, 1), _T.ID: (0, 2), _T.N: (0, _MANY)},
    one_transform=True,
)
# §6.3-§6.5 error forms and §6.5 STATUS: only Notifications
_NOTIFY_ONLY = _QuickMode("notification", {_T.N: (0, _MANY)})
# §6.4: D..., [N...]; its reply may be Notifications only
_DELETE = _QuickMode("DELETE", {_T.D: (1, _MANY), _T.N: (0, _MANY)})
_DELETE_REPLY = _QuickMode("REPLY to DELETE", {_T.D: (0, _MANY), _T.N: (0, _MANY)})
# A REPLY checked without knowing its command: the union of the reply forms.
_ANY_REPLY = _QuickMode(
    "REPLY",
    {
        _T.SA: (0, 1),
        _T.NONCE: (0, 1),
        _T.KE: (0, 1),
        _T.ID: (0, 2),
        _T.N: (0, _MANY),
        _T.D: (0, _MANY),
    },
)


_AUTH_TYPES = (ApReq, ApRep)  # a tuple: `ApReq | ApRep` would be built at every check


def check_message(msg: Message, request: int | None = None) -> None:
    """Raise ProtocolError unless msg carries the payloads RFC 4430 allows for its type.

    Call it on a received message after decryption (msg.encrypted holds the KINK_ENCRYPT
    content). For a REPLY, `request` may give the MessageType of the command it answers
    (CREATE, DELETE, STATUS or GETTGT) to check the reply forms of that command (§6.3-§6.6);
    without it only the forms common to all replies are checked. ValueError if `request` is
    not a command type.
    """
    if request is not None and request not in _REPLY_FORMS:
        raise ValueError(f"{request} is not a KINK command type")
    if msg.doi != IPSEC_DOI:
        raise ProtocolError(f"DOI {msg.doi} is not supported", kink_error=KinkErrorCode.INVDOI)
    encrypted = msg.encrypted
    if encrypted is None and msg.ciphertext is not None:
        raise ProtocolError("KINK_ENCRYPT has not been decrypted")
    # One pass over the payloads (this runs for every authenticated message, issue 4); the
    # faults are still reported in the order of the rules: unknown types, then AP_REQ/AP_REP
    # inside KINK_ENCRYPT, then more than one of them.
    auth: ApReq | ApRep | None = None
    auths = 0
    rest: list[KinkPayload] = []
    for payload in msg.payloads:
        if isinstance(payload, _AUTH_TYPES):
            auths += 1
            if auth is None:
                auth = payload
        elif isinstance(payload, RawPayload):
            raise _unknown(payload)
        else:
            rest.append(payload)
    inner_auth = False
    for payload in encrypted or ():
        if isinstance(payload, RawPayload):
            raise _unknown(payload)
        if isinstance(payload, _AUTH_TYPES):
            inner_auth = True
        else:
            rest.append(payload)
    if inner_auth:
        raise ProtocolError("KINK_AP_REQ/KINK_AP_REP inside KINK_ENCRYPT (§6)")
    if auths > 1:
        raise ProtocolError("more than one KINK_AP_REQ/KINK_AP_REP")
    if encrypted is not None and auth is None:
        raise ProtocolError("KINK_ENCRYPT without KINK_AP_REQ or KINK_AP_REP (§6)")
    if auth is not None and not msg.cksum:
        raise ProtocolError("no Cksum although KINK_AP_REQ/KINK_AP_REP gives a key (§4)")
    check = _BY_TYPE.get(msg.type)
    if check is None:
        raise ProtocolError(f"unknown message type {msg.type} (§4)")
    check(auth, rest, msg, request)


def _unknown(payload: RawPayload) -> ProtocolError:
    return ProtocolError(f"unknown KINK payload type {payload.payload_type} (§4.2)")


_Auth = ApReq | ApRep | None


def _command(name: str, auth: _Auth) -> None:
    if not isinstance(auth, ApReq):
        raise ProtocolError(f"{name} without KINK_AP_REQ (§6)")


def _isakmps(name: str, rest: Sequence[KinkPayload]) -> list[Isakmp]:
    found: list[Isakmp] = []
    for p in rest:
        if not isinstance(p, Isakmp):
            others = sorted({p.payload_type for p in rest if not isinstance(p, Isakmp)})
            raise ProtocolError(f"{name} carries KINK payload types {others} (§6)")
        found.append(p)
    return found


def _check_create(auth: _Auth, rest: Sequence[KinkPayload], msg: Message, _: int | None) -> None:
    _command("CREATE", auth)
    isakmps = _isakmps("CREATE", rest)
    if not isakmps:
        raise ProtocolError("CREATE without KINK_ISAKMP (§6.3)")
    for isakmp in isakmps:
        _check_qm(isakmp, _CREATE, msg.doi)


def _check_delete(auth: _Auth, rest: Sequence[KinkPayload], msg: Message, _: int | None) -> None:
    _command("DELETE", auth)
    isakmps = _isakmps("DELETE", rest)
    if not isakmps:
        raise ProtocolError("DELETE without KINK_ISAKMP (§6.4)")
    for isakmp in isakmps:
        _check_qm(isakmp, _DELETE, msg.doi)


def _check_status(auth: _Auth, rest: Sequence[KinkPayload], msg: Message, _: int | None) -> None:
    _command("STATUS", auth)
    isakmps = _isakmps("STATUS", rest)
    if len(isakmps) > 1:
        raise ProtocolError("STATUS with more than one KINK_ISAKMP (§6.5)")
    for isakmp in isakmps:
        _check_qm(isakmp, _NOTIFY_ONLY, msg.doi)


def _check_ack(auth: _Auth, rest: Sequence[KinkPayload], msg: Message, _: int | None) -> None:
    _command("ACK", auth)
    if rest or msg.encrypted is not None:
        raise ProtocolError("ACK with a payload other than KINK_AP_REQ (§6.2)")


def _check_gettgt(auth: _Auth, rest: Sequence[KinkPayload], msg: Message, _: int | None) -> None:
    if auth is not None or len(rest) != 1 or not isinstance(rest[0], TgtReq):
        raise ProtocolError("GETTGT must carry exactly one KINK_TGT_REQ (§6.6)")


def _check_reply(
    auth: _Auth, rest: Sequence[KinkPayload], msg: Message, request: int | None
) -> None:
    if isinstance(auth, ApReq):
        raise ProtocolError("REPLY with KINK_AP_REQ (§6.1)")
    krb_errors = errors = tgt_reps = 0
    isakmps: list[Isakmp] = []
    for p in rest:  # one pass: this runs for every REPLY (issue 4)
        if isinstance(p, Isakmp):
            isakmps.append(p)
        elif isinstance(p, KrbError):
            krb_errors += 1
        elif isinstance(p, ErrorPayload):
            errors += 1
        elif isinstance(p, TgtRep):
            tgt_reps += 1
        elif isinstance(p, TgtReq):
            raise ProtocolError("REPLY with KINK_TGT_REQ (§6.1)")
    if krb_errors > 1 or errors > 1:
        raise ProtocolError("REPLY with more than one KINK_KRB_ERROR or KINK_ERROR")
    if auth is None:
        # §6.3-§6.5: "a lone KINK_KRB_ERROR or KINK_ERROR"; §6.6 and §3.7.1: a lone TGT_REP.
        if not rest or isakmps or (tgt_reps and len(rest) != 1):
            raise ProtocolError(
                "REPLY without KINK_AP_REP must carry a lone KINK_KRB_ERROR, KINK_ERROR or "
                "KINK_TGT_REP (§6.1, §6.3-§6.6)"
            )
        return
    if tgt_reps:
        raise ProtocolError("KINK_TGT_REP with KINK_AP_REP (§6.6)")
    if krb_errors and len(rest) != 1:
        raise ProtocolError("KINK_KRB_ERROR with other payloads after KINK_AP_REP (§6.3)")
    _REPLY_FORMS[request](rest, isakmps, msg.doi)


def _reply_any(rest: Sequence[KinkPayload], isakmps: list[Isakmp], doi: int) -> None:
    for isakmp in isakmps:
        _check_qm(isakmp, _ANY_REPLY, doi)


def _reply_to_create(rest: Sequence[KinkPayload], isakmps: list[Isakmp], doi: int) -> None:
    if not rest:
        raise ProtocolError("REPLY to CREATE with neither KINK_ISAKMP nor an error (§6.3)")
    for isakmp in isakmps:
        form = _NOTIFY_ONLY
        for p in isakmp.payloads:
            if isinstance(p, SaPayload):
                form = _CREATE_REPLY
                break
        _check_qm(isakmp, form, doi)


def _reply_to_delete(rest: Sequence[KinkPayload], isakmps: list[Isakmp], doi: int) -> None:
    if not rest:
        raise ProtocolError("REPLY to DELETE with neither KINK_ISAKMP nor an error (§6.4)")
    for isakmp in isakmps:
        _check_qm(isakmp, _DELETE_REPLY, doi)


def _reply_to_status(rest: Sequence[KinkPayload], isakmps: list[Isakmp], doi: int) -> None:
    if len(isakmps) > 1:
        raise ProtocolError("REPLY to STATUS with more than one KINK_ISAKMP (§6.5)")
    for isakmp in isakmps:
        _check_qm(isakmp, _NOTIFY_ONLY, doi)


def _reply_to_gettgt(rest: Sequence[KinkPayload], isakmps: list[Isakmp], doi: int) -> None:
    raise ProtocolError("REPLY to GETTGT with KINK_AP_REP (§6.6)")


_REPLY_FORMS: dict[int | None, Callable[[Sequence[KinkPayload], list[Isakmp], int], None]] = {
    None: _reply_any,
    MessageType.CREATE: _reply_to_create,
    MessageType.DELETE: _reply_to_delete,
    MessageType.STATUS: _reply_to_status,
    MessageType.GETTGT: _reply_to_gettgt,
}

_BY_TYPE: dict[int, Callable[[_Auth, Sequence[KinkPayload], Message, int | None], None]] = {
    MessageType.CREATE: _check_create,
    MessageType.DELETE: _check_delete,
    MessageType.REPLY: _check_reply,
    MessageType.GETTGT: _check_gettgt,
    MessageType.ACK: _check_ack,
    MessageType.STATUS: _check_status,
}


# ------------------------------------------------------------------ inside one KINK_ISAKMP


def _malformed(reason: str) -> ProtocolError:
    return ProtocolError(reason, notify=NotifyType.PAYLOAD_MALFORMED)


def _check_qm(isakmp: Isakmp, form: _QuickMode, doi: int) -> None:
    if isakmp.qm_major != QM_MAJOR_VERSION or isakmp.qm_minor != QM_MINOR_VERSION:
        raise ProtocolError(
            f"Quick Mode version {isakmp.qm_major}.{isakmp.qm_minor} (§4.2.6)",
            kink_error=KinkErrorCode.BADQMVERS,
        )
    counts: dict[int, int] = {}
    for payload in isakmp.payloads:
        kind = payload.payload_type
        if kind not in form.counts:
            # §5.5: INVALID-PAYLOAD-TYPE, "Notification Data MUST contain the one-octet
            # payload type"; §5: no HASH, no phase 1 payloads.
            raise ProtocolError(
                f"ISAKMP payload type {kind} not allowed in a {form.name}",
                notify=NotifyType.INVALID_PAYLOAD_TYPE,
                notify_data=bytes((kind & 0xFF,)),
            )
        counts[kind] = counts.get(kind, 0) + 1
        _check_isakmp_payload(payload, form, doi)
    for kind, (low, high) in form.counts.items():
        count = counts.get(kind, 0)
        if count < low or count > high:
            raise _malformed(f"{count} ISAKMP payloads of type {kind} in a {form.name}")
    if counts.get(_ID, 0) == 1:
        raise _malformed("one ID payload: IDci and IDcr go in pairs (RFC 2409 §5.5)")


def _check_isakmp_payload(payload: IsakmpPayload, form: _QuickMode, doi: int) -> None:
    if isinstance(payload, SaPayload):
        _check_sa(payload, form, doi)
    elif isinstance(payload, NoncePayload):
        if not _NONCE_MIN <= len(payload.data) <= _NONCE_MAX:
            raise _malformed(f"Nonce of {len(payload.data)} octets (RFC 2409 §5: 8 to 256)")
    elif isinstance(payload, KePayload):
        if not payload.data:
            raise _malformed("empty KE payload")
    elif isinstance(payload, IdPayload):
        expected = ID_DATA_LENGTHS.get(payload.id_type)
        if expected is None:
            raise _malformed(f"ID type {payload.id_type} is not allowed by RFC 4430 §5.3")
        if len(payload.data) != expected:
            raise _malformed(f"ID type {payload.id_type} with {len(payload.data)} data octets")
    elif isinstance(payload, NotifyPayload):
        if payload.doi != doi:
            raise _malformed(f"Notification in DOI {payload.doi}, the header says {doi} (§4)")
    elif isinstance(payload, DeletePayload):
        if payload.doi != doi:
            raise _malformed(f"Delete in DOI {payload.doi}, the header says {doi} (§4)")
        sizes = SPI_SIZES.get(payload.protocol)
        if sizes is None:
            raise _malformed(f"Delete for protocol {payload.protocol}")
        if any(len(spi) not in sizes for spi in payload.spis):
            raise _malformed(f"Delete with SPIs of a wrong size for protocol {payload.protocol}")


def _check_sa(sa: SaPayload, form: _QuickMode, doi: int) -> None:
    if sa.doi != doi:
        raise _malformed(f"SA payload in DOI {sa.doi}, the header says {doi} (§4)")
    if sa.situation != SIT_IDENTITY_ONLY:
        raise _malformed(f"SA Situation {sa.situation}, not SIT_IDENTITY_ONLY (§5)")
    if not sa.proposals:
        raise _malformed("SA payload without a proposal (RFC 2408 §3.4, RFC 4430 §6.3)")
    previous = -1
    bundle: set[int] = set()
    for proposal in sa.proposals:
        # RFC 2408 §4.2: proposals of a bundle share a number and stay together; different
        # proposals have increasing numbers; one protocol per proposal within a bundle.
        if proposal.number < previous:
            raise _malformed("Proposal numbers decrease (RFC 2408 §4.2)")
        if proposal.number != previous:
            bundle = set()
        if proposal.protocol in bundle:
            raise _malformed(f"protocol {proposal.protocol} twice in proposal {proposal.number}")
        bundle.add(proposal.protocol)
        previous = proposal.number
        sizes = SPI_SIZES.get(proposal.protocol)
        if sizes is None:
            raise _malformed(f"proposal for protocol {proposal.protocol} (RFC 2407 §4.4.1)")
        if len(proposal.spi) not in sizes:
            raise _malformed(f"SPI of {len(proposal.spi)} octets for protocol {proposal.protocol}")
        if not proposal.transforms:
            raise _malformed(f"proposal {proposal.number} without a transform (RFC 2408 §4.2)")
        if form.one_transform and len(proposal.transforms) != 1:
            raise _malformed("a REPLY must name one transform per proposal (RFC 2408 §4.2)")
        last = -1
        for transform in proposal.transforms:
            if transform.number <= last:
                raise _malformed("Transform numbers do not increase (RFC 2408 §4.2)")
            last = transform.number
        for transform in proposal.transforms:
            if not transform._accepted:
                _check_transform(transform)


# A transform's verdict depends on the transform alone, and the same (shared) objects recur
# (see kink.wire.isakmp.TRANSFORM_CACHE_SIZE): an accepted one is marked so (a refusal raises,
# so it is never marked and is found again each time). A mark on the object, not a cache
# keyed by Transform, whose lookups would run its Python __hash__ (issue 4).
def _check_transform(transform: Transform) -> None:
    for attr in transform.attributes:
        if attr.type in BASIC_ATTRIBUTES and not attr.tv:
            raise _malformed(f"basic attribute {attr.type} sent as variable (RFC 2407 §4.5)")
    lifetimes(transform.attributes)
    object.__setattr__(transform, "_accepted", True)
