"""The offline KINK dissector behind `kinkctl decode`: datagrams of a capture (or one raw
message) taken apart and, given keytabs, opened the way the two peers opened them.

For each message: the header and payloads (kink.wire); the ticket of every KINK_AP_REQ
decrypted with a keytab, without clock checks since captures are old (kink.krb5.offline); the
Cksum verified and KINK_ENCRYPT decrypted with that ticket's session key, the only key KINK
uses (RFC 4430 §4, §4.2.7, §7, §8); the §6 payload rules checked (kink.wire.rules); the
payloads of every KINK_KRB_ERROR decoded. A REPLY has no ticket of its own: it is opened with
the session key of the command with the same XID between the same two addresses, reversed
(§4, §6); an ACK with its own AP-REQ, else with that command's key. For a REPLY to a CREATE,
the keys each SA of the pair gets (RFC 4430 §7 KEYMAT, split as kink.crypto.algorithms does
for the kernel).

Nothing here prints: kink.ctl.render turns the results into text or JSON. Keys end up in the
results only because the operator gave keytabs; `Dissector.wipe()` zeroes them afterwards.
"""

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from kink.crypto.algorithms import SaKeys, TransformParams, derive_sa_keys
from kink.crypto.errors import CryptoError
from kink.crypto.profiles import AesPrf
from kink.crypto.rfc3961 import KEY_USAGE_KINK_ENCRYPT, Key, decrypt
from kink.crypto.seal import verify_cksum
from kink.krb5.context import Context
from kink.krb5.errors import KRB5_KT_NOTFOUND, KRB5KRB_AP_WRONG_PRINC, Krb5Error
from kink.krb5.initiator import Initiator, KrbErrorInfo
from kink.krb5.offline import OfflineTicket, decrypt_ticket_offline
from kink.wire import (
    ApRep,
    ApReq,
    DecodeError,
    ErrorPayload,
    Header,
    Isakmp,
    KePayload,
    KinkPayload,
    KrbError,
    Message,
    MessageType,
    NoncePayload,
    RawPayload,
    SaPayload,
    TgtRep,
    TgtReq,
    Transform,
    check_message,
    decode,
    decode_inner,
)
from kink.wire.header import HEADER
from kink.wire.ipsec_doi import AttributeType
from kink.wire.pcap import read_capture

# Commands open a transaction that the REPLY and ACK with the same XID belong to (RFC 4430
# §4: "A transaction is defined as a command, a reply, and an optional acknowledgement").
_COMMANDS = frozenset(
    {MessageType.CREATE, MessageType.DELETE, MessageType.STATUS, MessageType.GETTGT}
)

# aes128/256-cts-hmac-sha1-96: the enctypes whose PRF RFC 3962 §6 lets be read two ways.
_AES_SHA1 = frozenset({17, 18})


class InputError(Exception):
    """The input is neither a pcap/pcapng capture nor one KINK message."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Datagram:
    """One KINK datagram to dissect. A raw single-message input has no time and no
    addresses; `truncated` means the capture's snap length cut it short."""

    frame: int
    time: float | None
    src: Endpoint | None
    dst: Endpoint | None
    payload: bytes
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Source:
    """The datagrams of the input, in order. `fault`: the capture is malformed past the last
    datagram listed (e.g. a file copied while tcpdump was still writing it)."""

    datagrams: tuple[Datagram, ...]
    fault: DecodeError | None = None


def read_input(data: bytes) -> Source:
    """The KINK datagrams (UDP port 910) of a pcap or pcapng capture, or `data` itself when it
    is one KINK message. InputError when it is neither."""
    found: list[Datagram] = []
    try:
        for d in read_capture(data):
            found.append(
                Datagram(
                    d.frame,
                    d.time,
                    Endpoint(d.src, d.sport),
                    Endpoint(d.dst, d.dport),
                    d.payload,
                    d.truncated,
                )
            )
    except DecodeError as fault:
        # A fault past offset 0 means the file header was recognised: a damaged capture.
        if found or fault.offset > 0:
            return Source(tuple(found), fault)
        try:
            decode(data)
        except DecodeError as not_kink:
            raise InputError(
                f"not a capture: {fault.reason}; not a KINK message: {not_kink}"
            ) from None
        return Source((Datagram(1, None, None, None, data),))
    return Source(tuple(found))


class CksumStatus(StrEnum):
    VERIFIED = "verified"
    BAD = "bad"  # wrong for the session key at hand
    ABSENT = "absent"  # CksumLen 0: an unauthenticated message (RFC 4430 §3.5)
    NO_KEY = "not checked"  # no session key known for this message


class EncryptStatus(StrEnum):
    DECRYPTED = "decrypted"
    FAILED = "failed"
    NO_KEY = "not decrypted"


@dataclass(frozen=True)
class ApReqView:
    """A KINK_AP_REQ; `ticket` once a keytab decrypted it, else `failure` says why not."""

    payload: ApReq
    ticket: OfflineTicket | None = None
    keytab: str | None = None
    failure: str | None = None


@dataclass(frozen=True)
class KrbErrorView:
    """A KINK_KRB_ERROR; `info` is its decoded KRB-ERROR, else `failure` says why not."""

    payload: KrbError
    info: KrbErrorInfo | None = None
    failure: str | None = None


@dataclass(frozen=True)
class EncryptView:
    """KINK_ENCRYPT: its inner payloads once decrypted (key usage 39, RFC 4430 §4.2.7).
    `plaintext` is kept only when the inner payloads could not be decoded."""

    ciphertext_length: int
    status: EncryptStatus
    payloads: tuple["PayloadView", ...] = ()
    failure: str | None = None
    plaintext: bytes | None = field(default=None, repr=False)


PayloadView = (
    ApReqView
    | KrbErrorView
    | EncryptView
    | ApRep
    | TgtReq
    | TgtRep
    | Isakmp
    | ErrorPayload
    | RawPayload
)


class Peer(StrEnum):
    """Whose inbound SA: the SPI in a side's SA payload is the one it receives on (§7)."""

    INITIATOR = "initiator"
    RESPONDER = "responder"


@dataclass(frozen=True)
class SaKeymat:
    """The keys of one SA of a CREATE/REPLY pair, as the kernel of either peer gets them.

    src -> dst is the direction of the traffic it protects (towards the peer `inbound`).
    `keys` is None when `failure` says why they cannot be derived. `aes_prf`: the PRF reading
    used, None for a session key whose enctype has only one PRF (RFC 8009).
    """

    inbound: Peer
    src: str | None
    dst: str | None
    protocol: int
    spi: bytes
    transform: Transform
    keys: SaKeys | None
    failure: str | None
    aes_prf: AesPrf | None


@dataclass(frozen=True)
class Answered:
    """The command a REPLY or ACK belongs to."""

    frame: int
    type: int


@dataclass(frozen=True)
class Dissected:
    """One datagram taken apart.

    `message` is None when it did not decode (`error` says where and why; `header` is set if
    its 16 header octets were there). `key_frame`: the frame whose AP-REQ gave the session key
    used for the Cksum and KINK_ENCRYPT. `rules`: None when the §6 rules were not checked
    (KINK_ENCRYPT still ciphertext), "" when they hold, else the violation.
    """

    datagram: Datagram
    header: Header | None
    message: Message | None
    error: DecodeError | None = None
    payloads: tuple[PayloadView, ...] = ()
    cksum: CksumStatus = CksumStatus.ABSENT
    cksum_failure: str | None = None
    key_frame: int | None = None
    answers: Answered | None = None
    rules: str | None = None
    keymat: tuple[SaKeymat, ...] = ()


@dataclass
class _Transaction:
    frame: int
    type: int
    key: Key | None
    isakmps: tuple[Isakmp, ...]


_Pair = tuple[str | None, str | None]
_P = TypeVar("_P", SaPayload, NoncePayload, KePayload)


class Dissector:
    """Dissects the datagrams of one capture in order, remembering the commands' session keys.

    keytabs: paths of keytab files tried in order on every AP-REQ. aes_prf: the PRF reading
    for KEYMAT with aes*-sha1 session keys (LITERAL is what racoon2 installs). context: the
    krb5 Context to use; by default one is created ($KRB5_CONFIG or /etc/krb5.conf) when the
    first AP-REQ or KRB-ERROR needs it.
    """

    def __init__(
        self,
        keytabs: Sequence[str] = (),
        *,
        aes_prf: AesPrf = AesPrf.LITERAL,
        context: Context | None = None,
    ) -> None:
        self._keytabs = tuple(keytabs)
        self._aes_prf = aes_prf
        self._context = context
        self._transactions: dict[tuple[int, str | None, str | None], _Transaction] = {}
        self._keys: list[Key] = []
        self._sa_keys: list[SaKeys] = []

    def dissect_all(self, datagrams: Sequence[Datagram]) -> Iterator[Dissected]:
        for datagram in datagrams:
            yield self.dissect(datagram)

    def dissect(self, datagram: Datagram) -> Dissected:
        try:
            msg = decode(datagram.payload)
        except DecodeError as exc:
            return Dissected(datagram, exc.header, None, exc)
        header = Header._make(HEADER.unpack_from(datagram.payload))
        outer, own_key = self._outer(msg)
        pair = _initiator_pair(msg, datagram)
        transaction = self._transactions.get((msg.xid, *pair))
        key, key_frame = own_key, datagram.frame if own_key is not None else None
        answers = None
        if msg.type in (MessageType.REPLY, MessageType.ACK) and transaction is not None:
            answers = Answered(transaction.frame, transaction.type)
            if key is None and transaction.key is not None:
                key, key_frame = transaction.key, transaction.frame
        cksum, cksum_failure = _check_cksum(datagram.payload, msg, key)
        encrypt_view, opened = self._encrypted(msg, key)
        views = outer if encrypt_view is None else (*outer, encrypt_view)
        keymat: tuple[SaKeymat, ...] = ()
        if msg.type in _COMMANDS:
            self._transactions[(msg.xid, *pair)] = _Transaction(
                datagram.frame, msg.type, key, _isakmps(opened)
            )
        elif (
            msg.type == MessageType.REPLY
            and transaction is not None
            and transaction.type == MessageType.CREATE
            and key is not None
            and opened is not None
        ):
            keymat = self._keymat(key, transaction.isakmps, _isakmps(opened), pair)
        return Dissected(
            datagram,
            header,
            opened or msg,
            None,
            views,
            cksum,
            cksum_failure,
            key_frame,
            answers,
            _rules(opened, answers),
            keymat,
        )

    def wipe(self) -> None:
        """Zero the session keys and SA keys handed out so far (the results hold the SA keys)."""
        for key in self._keys:
            key.zero()
        for sa_keys in self._sa_keys:
            sa_keys.zero()
        self._keys.clear()
        self._sa_keys.clear()
        self._transactions.clear()

    # ------------------------------------------------------------------------------ payloads

    def _outer(self, msg: Message) -> tuple[tuple[PayloadView, ...], Key | None]:
        views: list[PayloadView] = []
        key: Key | None = None
        for payload in msg.payloads:
            view = self._view(payload)
            if isinstance(view, ApReqView) and view.ticket is not None and key is None:
                key, failure = self._session_key(view.ticket)
                if failure is not None:
                    view = dataclasses.replace(view, failure=failure)
            views.append(view)
        return tuple(views), key

    def _view(self, payload: KinkPayload) -> PayloadView:
        if isinstance(payload, ApReq):
            return self._ap_req(payload)
        if isinstance(payload, KrbError):
            return self._krb_error(payload)
        return payload

    def _ap_req(self, payload: ApReq) -> ApReqView:
        if not self._keytabs:
            return ApReqView(payload, failure="no --keytab given")
        context, failure = self._krb5()
        if context is None:
            return ApReqView(payload, failure=failure)
        failures: list[str] = []
        for keytab in self._keytabs:
            try:
                ticket = decrypt_ticket_offline(context, payload.ap_req, f"FILE:{keytab}")
            except Krb5Error as exc:
                failures.append(f"{keytab}: {_ticket_failure(exc)}")
                continue
            return ApReqView(payload, ticket, keytab)
        return ApReqView(payload, failure="; ".join(failures))

    def _krb_error(self, payload: KrbError) -> KrbErrorView:
        context, failure = self._krb5()
        if context is None:
            return KrbErrorView(payload, failure=failure)
        try:
            return KrbErrorView(payload, Initiator(context).parse_krb_error(payload.krb_error))
        except Krb5Error as exc:
            return KrbErrorView(payload, failure=exc.message)

    def _krb5(self) -> tuple[Context | None, str]:
        if self._context is None:
            try:
                self._context = Context()
            except Krb5Error as exc:
                return None, f"no Kerberos context: {exc.message}"
        return self._context, ""

    def _session_key(self, ticket: OfflineTicket) -> tuple[Key | None, str | None]:
        session = ticket.session_key
        try:
            key = Key(session.enctype, session.material)
        except CryptoError as exc:
            return None, f"session key unusable for KINK: {exc}"
        self._keys.append(key)
        return key, None

    def _encrypted(
        self, msg: Message, key: Key | None
    ) -> tuple[EncryptView | None, Message | None]:
        """The KINK_ENCRYPT view and the message with its inner payloads (None if it still
        holds ciphertext)."""
        if msg.ciphertext is None:
            return None, msg
        length = len(msg.ciphertext)
        if key is None:
            return EncryptView(length, EncryptStatus.NO_KEY), None
        try:
            plaintext = decrypt(key, KEY_USAGE_KINK_ENCRYPT, msg.ciphertext)
        except CryptoError as exc:
            return EncryptView(length, EncryptStatus.FAILED, failure=str(exc)), None
        try:
            inner = decode_inner(plaintext)
        except DecodeError as exc:
            failure = f"inner payloads: {exc}"
            view = EncryptView(length, EncryptStatus.FAILED, failure=failure, plaintext=plaintext)
            return view, None
        views = tuple(self._view(p) for p in inner)
        return EncryptView(length, EncryptStatus.DECRYPTED, views), dataclasses.replace(
            msg, encrypted=inner
        )

    # -------------------------------------------------------------------------------- KEYMAT

    def _keymat(
        self, key: Key, request: tuple[Isakmp, ...], reply: tuple[Isakmp, ...], pair: _Pair
    ) -> tuple[SaKeymat, ...]:
        out: list[SaKeymat] = []
        # One SA negotiation per KINK_ISAKMP payload, in the same order in both messages.
        for create, answer in zip(request, reply, strict=False):
            out.extend(self._negotiation(key, create, answer, pair))
        return tuple(out)

    def _negotiation(
        self, key: Key, create: Isakmp, answer: Isakmp, pair: _Pair
    ) -> Iterator[SaKeymat]:
        initiator, responder = pair
        sa_i, sa_r = _first(create, SaPayload), _first(answer, SaPayload)
        if sa_i is None or sa_r is None:
            return
        ni, nr = _first(create, NoncePayload), _first(answer, NoncePayload)
        obstacle = None
        if ni is None:
            obstacle = "the CREATE has no Nonce"
        elif _first(create, KePayload) or _first(answer, KePayload):
            # RFC 4430 §7: with KE payloads KEYMAT includes g^xy, which only the peers'
            # private DH values give; a capture does not hold them.
            obstacle = "KE payloads (PFS): KEYMAT needs g^xy, which no capture holds"
        aes_prf = self._aes_prf if key.enctype in _AES_SHA1 else None
        ni_b = b"" if ni is None else ni.data
        nr_b = None if nr is None else nr.data
        for chosen in sa_r.proposals:
            if not chosen.transforms:
                continue
            # A REPLY names the one transform chosen for each proposal (RFC 2408 §4.2); the
            # initiator's SPI is in its proposal of the same number and protocol.
            transform = chosen.transforms[0]
            sides = [(Peer.RESPONDER, chosen.spi, initiator, responder)]
            for offered in sa_i.proposals:
                if (offered.number, offered.protocol) == (chosen.number, chosen.protocol):
                    sides.insert(0, (Peer.INITIATOR, offered.spi, responder, initiator))
                    break
            for peer, spi, src, dst in sides:
                keys, why = None, obstacle
                if obstacle is None:
                    keys, why = self._derive(key, chosen.protocol, spi, ni_b, nr_b, transform)
                yield SaKeymat(peer, src, dst, chosen.protocol, spi, transform, keys, why, aes_prf)

    def _derive(
        self, key: Key, protocol: int, spi: bytes, ni: bytes, nr: bytes | None, t: Transform
    ) -> tuple[SaKeys | None, str | None]:
        attrs = {a.type: a.as_int() for a in t.attributes}
        params = TransformParams(
            t.transform_id,
            attrs.get(AttributeType.AUTHENTICATION_ALGORITHM),
            attrs.get(AttributeType.KEY_LENGTH),
        )
        try:
            keys = derive_sa_keys(key, protocol, spi, ni, nr, None, params, aes_prf=self._aes_prf)
        except CryptoError as exc:
            return None, str(exc)
        self._sa_keys.append(keys)
        return keys, None


# ---------------------------------------------------------------------------------- helpers


def _initiator_pair(msg: Message, datagram: Datagram) -> _Pair:
    """(initiator, responder) addresses of the transaction `msg` belongs to: a REPLY goes from
    the responder to the initiator, every other message the other way (RFC 4430 §3). Ports are
    left out: some peers answer to port 910, others to the command's source port."""
    src = None if datagram.src is None else datagram.src.address
    dst = None if datagram.dst is None else datagram.dst.address
    return (dst, src) if msg.type == MessageType.REPLY else (src, dst)


def _ticket_failure(exc: Krb5Error) -> str:
    # libkrb5 words a keytab without the ticket's server as "Wrong principal in request".
    if exc.code in (KRB5KRB_AP_WRONG_PRINC, KRB5_KT_NOTFOUND):
        return "no key for the ticket's server principal"
    return exc.message


def _check_cksum(data: bytes, msg: Message, key: Key | None) -> tuple[CksumStatus, str | None]:
    if not msg.cksum:
        return CksumStatus.ABSENT, None
    if key is None:
        return CksumStatus.NO_KEY, None
    try:
        verify_cksum(data, key)
    except CryptoError as exc:
        return CksumStatus.BAD, str(exc)
    return CksumStatus.VERIFIED, None


def _rules(opened: Message | None, answers: Answered | None) -> str | None:
    """The RFC 4430 §6 violation of an opened message, "" if none, None if not checkable."""
    if opened is None:
        return None
    request = None
    if opened.type == MessageType.REPLY and answers is not None:
        request = answers.type
    try:
        check_message(opened, request)
    except DecodeError as exc:
        return str(exc)
    return ""


def _isakmps(msg: Message | None) -> tuple[Isakmp, ...]:
    if msg is None:
        return ()
    return tuple(p for p in (*msg.payloads, *(msg.encrypted or ())) if isinstance(p, Isakmp))


def _first(isakmp: Isakmp, kind: type[_P]) -> _P | None:
    return next((p for p in isakmp.payloads if isinstance(p, kind)), None)
