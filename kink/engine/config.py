"""Engine and peer configuration: plain frozen dataclasses the daemon builds from TOML."""

from dataclasses import dataclass, field
from enum import Enum

from kink.crypto.profiles import AesPrf
from kink.engine.events import Selector
from kink.wire.ipsec_doi import DEFAULT_LIFETIME_SECONDS

# The reqids of the implicit host-to-host policies (peers without `policies`) start here: inside
# kink_privsep's default range 0x4B490000-0x4B49FFFF (kink_privsep.model.Config.reqid_range), at
# the offset the earlier fixed base 0x4B000 had in that range, so SAs already in a kernel keep
# matching their policies after an upgrade.
DEFAULT_REQID_BASE = 0x4B49_B000


class U2u(Enum):
    """User-to-user use towards a peer (RFC 4430 §3.1)."""

    NEVER = "never"
    ALLOW = "allow"  # switch on KRB_AP_ERR_USER_TO_USER_REQUIRED / KDC_ERR_MUST_USE_USER2USER
    REQUIRE = "require"  # always GETTGT first


class StartAction(Enum):
    NONE = "none"  # answer only
    TRAP = "trap"  # negotiate on ACQUIRE (the next ACQUIRE after a loss negotiates again)
    START = "start"  # negotiate at once, and keep the SAs up: again after any loss, with backoff


@dataclass(frozen=True, slots=True)
class TransformSpec:
    """One protocol of a proposal: the transform the kernel supports (kink.crypto.algorithms)."""

    protocol: int  # ProtocolId.ESP or ProtocolId.AH
    transform_id: int
    auth_algorithm: int | None = None
    key_length: int | None = None


@dataclass(frozen=True, slots=True)
class ProposalSpec:
    """One proposal: a bundle of one transform per protocol (e.g. AH + ESP), RFC 2408 §4.2."""

    transforms: tuple[TransformSpec, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    """A pair of selectors negotiated with a peer, with the reqid of its kernel policy.

    send_ids=False: no IDci/IDcr; the selectors are then the two addresses (RFC 4430 §5.3).

    Its hash is computed once, when it is made: policies key the SADB's and the initiator's
    indexes (issue 9), looked up several times per exchange, and hashing the two selectors'
    networks anew costs more than the lookups themselves."""

    local: Selector
    remote: Selector
    reqid: int
    send_ids: bool = True
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_hash", hash((self.local, self.remote, self.reqid, self.send_ids))
        )

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """One peer. `policies` are the selectors this principal may negotiate (RFC 4430 §10:
    anything else is refused); proposals in preference order, the first is the optimistic one."""

    name: str
    address: str
    principal: str
    policies: tuple[Policy, ...]
    proposals: tuple[ProposalSpec, ...]
    mode: str = "transport"
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS
    lifetime_kilobytes: int = 0
    pfs_group: int | None = None
    pfs_required: bool = False  # False: retry without KE on INVALID-PAYLOAD-TYPE (§3.2)
    u2u: U2u = U2u.NEVER
    give_tgt: bool = False  # answer GETTGT with our TGT (RFC 4430 §3.1, §6.6)
    start_action: StartAction = StartAction.TRAP
    port: int = 910


class ConfigChangeError(ValueError):
    """A configuration change the running engine cannot apply; the message says what."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Host-wide settings. Times in seconds.

    Engine.reconfigure applies a new one at run time, except for the FIXED_FIELDS (what the
    daemon's sockets, tickets and the kernel's policies are tied to): changing those needs a new
    Engine. Every other knob applies from its next use (the next timer T, rekey schedule, DPD
    sample, SA installed, reply cached)."""

    address: str
    principal: str
    peers: tuple[PeerConfig, ...] = ()
    port: int = 910  # RFC 4430 §9
    retransmit_initial: float = 1.0  # timer T (§9)
    retransmit_factor: float = 2.0
    retransmit_cap: float = 16.0
    max_attempts: int = 5  # racoon2: at most 5 authenticators per transaction
    max_outstanding: int = 4  # per peer; the rest are queued (issue 4)
    reply_cache_lifetime: float = 60.0
    delete_grace: float | None = None  # None: 2 x measured RTT (RFC 4430 §3.3)
    delete_grace_default: float = 2.0  # before any RTT is measured
    rekey_margin: float = 120.0  # T-rekey (§3.6); T-retrans is the retransmission cycle
    dpd_delay: float = 30.0  # outbound traffic without inbound for this long is suspicious
    replay_window: int = 32
    nonce_length: int = 16
    responder_nonce: bool = False  # always add Nr (forces the 3-way handshake, §3.2)
    aes_prf: AesPrf = field(default=AesPrf.LITERAL)  # racoon2's reading (kink.crypto.keymat)
    reqid_base: int = DEFAULT_REQID_BASE  # first reqid of the implicit host-to-host policies
    # start_action=start keeps SAs up: a failed renegotiation is retried after a delay doubling
    # from retry_backoff_initial to retry_backoff_cap, so a peer that is down sees no storm.
    retry_backoff_initial: float = 1.0
    retry_backoff_cap: float = 60.0
    # retransmit_cycle(), summed once when the configuration is made: every rekey scheduled
    # asks for it (§3.6), and the sum is a loop of max_attempts steps (issue 9).
    _retransmit_cycle: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        total, delay = 0.0, self.retransmit_initial
        for _ in range(self.max_attempts):
            total += delay
            delay = min(delay * self.retransmit_factor, self.retransmit_cap)
        object.__setattr__(self, "_retransmit_cycle", total)

    def retransmit_cycle(self) -> float:
        """T-retrans: the time a full retransmission cycle takes (§3.6, §9)."""
        return self._retransmit_cycle

    def retransmit_delay(self, attempt: int) -> float:
        """Timer T after the attempt-th transmission (1-based), truncated exponential."""
        return min(
            self.retransmit_initial * self.retransmit_factor ** (attempt - 1),
            self.retransmit_cap,
        )


FIXED_FIELDS = ("address", "principal", "port", "reqid_base")
