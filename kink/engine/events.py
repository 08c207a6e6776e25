"""What goes in and out of the engine: plain dataclasses (the aioquic/h11 style).

Most are frozen. The ones every CREATE exchange builds by the dozen (SaSpec, SaLifetimes, the SA
actions, SendDatagram, SaEstablished, SaDeleted, HelperResult) are not: a frozen dataclass sets
each field through object.__setattr__ (~100 ns a field against ~10 for a plain slot store), ~25
us per exchange (issue 4). None of them is a dictionary key or cached, and the receiving side
only reads them. The one kind both sides hold is SaSpec: the engine keeps the specs of an
optimistic inbound SA and of a 3-way exchange's outbound SAs (until the ACK) and reads their
protocol, SPI and addresses again, so the daemon must not assign to an SaSpec's fields (zeroing
the key bytearrays in place, as before, is fine: the engine never reads the keys back).

Inputs the daemon passes in: KernelEvent (Acquire, Expire, SaGone), HelperResult (the answer
to an SA action, by token), TicketResult (the answer to FetchTicket / FetchU2uTicket),
LocalRequest (Initiate, Terminate, Rekey, Status). Outputs drained with Engine.next_action():
the SA and ticket actions, SendDatagram, and Notice events for logs and kinkctl.

Order: the daemon executes the SA actions in the order they come out; a failed action is
reported through helper_result and does not stop the ones after it. A datagram is emitted only
once the SA actions it depends on have their helper_result, so the daemon may send any datagram
as soon as it is emitted (subject only to its own write-ahead save). What depends on what: an
SA the peer will use once it gets the datagram must be in the kernel first (RFC 4430 §3.2):
- a CREATE: its optimistic inbound SAs installed, or with KE / outside the first bundle their
  SPIs reserved (AllocateSpi); an SPI the kernel refused (EEXIST) is drawn again before
  anything names it (§3.2 step 1);
- the REPLY to a CREATE: the responder's inbound SAs and, 2-way, its outbound ones (§3.2
  step 3);
- the ACK of a 3-way REPLY: every SA of that REPLY (inbound updated or filled, outbound),
  failed installs included (§3.2 steps 4-5: on the ACK the responder sends with its outbound
  SA); the DELETE of a pair such a REPLY's child replaces (§3.6) comes after the ACK;
- a DELETE and the REPLY to one depend on nothing: "has deleted or will shortly delete" (§6.4),
  and the inbound SAs go after the grace timer anyway (§3.3); a STATUS, its REPLY, a
  GETTGT, lone replies and retransmissions (the same bytes, or rebuilt, §9) neither.
"""

from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network

Address = tuple[str, int]  # (IP address text, UDP port)
Network = IPv4Network | IPv6Network


@dataclass(frozen=True, slots=True)
class Selector:
    """One side of a traffic selector: a network, an IP protocol (0 = any), a port (0 = any).

    Carried in IDci/IDcr (RFC 4430 §5.3, RFC 2407 §4.6.2). Hashed once: selectors key the
    ID payload caches and the responder's policy lookup at every CREATE, and an ipaddress
    network hashes in Python (issue 4)."""

    network: Network
    protocol: int = 0
    port: int = 0
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.network, self.protocol, self.port)))

    def __hash__(self) -> int:
        return self._hash


@dataclass(slots=True)
class SaLifetimes:
    """The limits an SA is installed with (0: none). The engine rekeys on time itself (a timer
    at a randomized soft lifetime, RFC 4430 §3.6), so soft_seconds is 0 on the SAs it installs;
    soft_bytes is randomized below hard_bytes and reported as a soft Expire."""

    soft_seconds: int
    hard_seconds: int
    soft_bytes: int
    hard_bytes: int


@dataclass(frozen=True, slots=True)
class SaTransform:
    """The negotiated transform of one protocol of a child, by name, without keys: the XFRM
    names of kink.crypto.algorithms, the encryption key length in bits (without the 4-octet
    salt of AES-GCM, RFC 4106 §8.1), the AEAD ICV or the authentication truncation in bits."""

    protocol: int
    encryption: str | None
    enc_key_bits: int | None
    aead_icv_bits: int | None
    authentication: str | None
    auth_trunc_bits: int | None
    # Hashed once (issue 4): every child's transforms are looked up in the SADB's table of
    # shared values (kink.engine.sadb), and the generated __hash__ would hash six fields anew.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash(self._values()))

    def _values(self) -> tuple[object, ...]:
        return (
            self.protocol,
            self.encryption,
            self.enc_key_bits,
            self.aead_icv_bits,
            self.authentication,
            self.auth_trunc_bits,
        )

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type["SaTransform"], tuple[object, ...]]:
        # Copies and pickles are built anew: a str hashes differently in another process
        # (PYTHONHASHSEED), so the cached hash must not travel.
        return SaTransform, self._values()


# ------------------------------------------------------------------------------- SA actions


@dataclass(slots=True)
class SaSpec:
    """Everything the helper needs to install one SA (one direction of one protocol).

    Algorithm names are the XFRM names of kink.crypto.algorithms; keys are bytearrays the
    daemon may zero once the helper has them. Lifetimes: 0 means none.
    """

    src: str
    dst: str
    protocol: int  # ProtocolId: 2 AH, 3 ESP
    spi: int
    inbound: bool
    mode: str  # "transport" or "tunnel"
    reqid: int
    src_selector: Selector
    dst_selector: Selector
    encryption: str | None
    enc_key: bytearray = field(repr=False)
    aead_icv_bits: int | None
    authentication: str | None
    auth_key: bytearray = field(repr=False)
    auth_trunc_bits: int | None
    soft_seconds: int
    hard_seconds: int
    soft_bytes: int
    hard_bytes: int
    replay_window: int


@dataclass(slots=True)
class SendDatagram:
    data: bytes
    peer: Address


@dataclass(slots=True)
class AllocateSpi:
    """Reserve an inbound SPI (XFRM ALLOCSPI: a larval SA src -> dst); the result's spi.

    Only for an inbound SA whose keys are known after the REPLY (the initiator's, with KE or
    outside the optimistic bundle, kink.engine.initiator): every other inbound SPI the engine
    draws itself and installs with InstallSa at once."""

    token: int
    protocol: int
    src: str
    dst: str


@dataclass(slots=True)
class InstallSa:
    """Install an SA: a new one (XFRM NEWSA; fails with EEXIST if anything, a larval SA
    included, holds its (dst, protocol, spi)), or with `fills` the larval SA of an AllocateSpi
    of this SPI (XFRM UPDSA: NEWSA there would be EEXIST).

    acquire_seq: set on the outbound SAs of an exchange a kernel ACQUIRE started (Acquire.seq):
    XFRM answers an ACQUIRE with the state carrying its seq, and the ACQUIRE's larval state is
    the outbound one (src us, dst the peer), which is why the inbound AllocateSpi never has it."""

    token: int
    spec: SaSpec
    acquire_seq: int | None = None
    fills: bool = False


@dataclass(slots=True)
class UpdateSa:
    """Replace the keys / lifetimes of an installed SA (RFC 4430 §3.2: the initiator's
    optimistic inbound SA when the exchange became 3-way)."""

    token: int
    spec: SaSpec


@dataclass(slots=True)
class DeleteSa:
    token: int
    protocol: int
    spi: int
    src: str
    dst: str


@dataclass(frozen=True, slots=True)
class FetchTicket:
    """Get a service ticket for `principal` from the KDC (blocking: run it in a thread)."""

    token: int
    principal: str


@dataclass(frozen=True, slots=True)
class FetchU2uTicket:
    """Get a user-to-user ticket for `principal` with its TGT (RFC 4430 §3.1)."""

    token: int
    principal: str
    peer_tgt: bytes = field(repr=False)


# ---------------------------------------------------------------------------------- notices


@dataclass(slots=True)
class SaEstablished:
    peer: str
    child: int
    initiator: bool
    spis: tuple[tuple[int, int, int], ...]  # (protocol, inbound spi, outbound spi)
    three_way: bool
    rekey_of: int | None


@dataclass(slots=True)
class SaDeleted:
    peer: str
    child: int
    reason: str


@dataclass(frozen=True, slots=True)
class PeerEpochChanged:
    peer: str
    old: int
    new: int


@dataclass(frozen=True, slots=True)
class PeerRemoved:
    """A peer given to Engine.remove_peer (or replaced with other addresses, principal or mode)
    is gone for good: its DELETE exchange is over and none of its SAs are left."""

    peer: str


@dataclass(frozen=True, slots=True)
class NegotiationFailed:
    """A command failed: reason in words, code the krb5 / KINK_ERROR / Notify name if any."""

    peer: str
    command: str
    reason: str
    code: str | None = None


# Not frozen (issue 9): one per datagram dropped, each of a flood of forged ones included.
@dataclass(slots=True)
class Dropped:
    """A received message that was dropped or only logged; counted per cause."""

    cause: str
    peer: Address


Notice = SaEstablished | SaDeleted | PeerEpochChanged | PeerRemoved | NegotiationFailed | Dropped
Action = (
    SendDatagram
    | AllocateSpi
    | InstallSa
    | UpdateSa
    | DeleteSa
    | FetchTicket
    | FetchU2uTicket
    | Notice
)

# ----------------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Acquire:
    """The kernel wants an SA for the trap policy with this reqid (XFRM_MSG_ACQUIRE); seq, the
    ACQUIRE's sequence number, comes back as InstallSa.acquire_seq on the SAs that answer it."""

    reqid: int
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Expire:
    """An SA reached its soft or hard lifetime (XFRM_MSG_EXPIRE)."""

    protocol: int
    spi: int
    dst: str
    hard: bool


@dataclass(frozen=True, slots=True)
class SaGone:
    """An SA disappeared without us asking (e.g. `ip xfrm state delete`)."""

    protocol: int
    spi: int
    dst: str


KernelEvent = Acquire | Expire | SaGone


EEXIST = "EEXIST"
"""HelperResult.error of an InstallSa whose (dst, protocol, spi) another SA holds: for an
inbound SA the SPI the engine drew is taken (it draws another), for an outbound one the peer's
SPI is (RFC 4430 §3.2 INVALID-SPI). The daemon gives the helper's "exists" this name."""


@dataclass(slots=True)
class HelperResult:
    """The outcome of an SA action. error: an errno name such as EEXIST when it failed."""

    token: int
    spi: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TicketResult:
    """The outcome of FetchTicket / FetchU2uTicket: ok, or the krb5 protocol error number."""

    token: int
    ok: bool
    krb5_code: int | None = None


@dataclass(frozen=True, slots=True)
class Initiate:
    peer: str


@dataclass(frozen=True, slots=True)
class Terminate:
    peer: str | None = None
    spi: int | None = None


@dataclass(frozen=True, slots=True)
class Rekey:
    peer: str | None = None
    spi: int | None = None


@dataclass(frozen=True, slots=True)
class Status:
    peer: str


LocalRequest = Initiate | Terminate | Rekey | Status
