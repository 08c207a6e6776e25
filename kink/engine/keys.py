"""KEYMAT per SA through kink.crypto (RFC 4430 §7: SKEYID_d is the ticket session key).

Each SA is keyed with the SPI its receiver chose, so both peers compute the same octets for one
SA: the initiator's inbound SA and the responder's outbound SA use the initiator's SPI, and the
other way round. Nr is left out when the REPLY had none (optimistic CREATE), g^xy is in when KE
payloads were exchanged.
"""

from dataclasses import dataclass

from kink.crypto.algorithms import TransformParams, derive_sa_keys
from kink.crypto.profiles import AesPrf
from kink.crypto.rfc3961 import Key
from kink.engine.events import SaSpec, Selector


@dataclass(frozen=True, slots=True)
class SaPlace:
    """Where an SA goes and what it protects (everything of SaSpec but keys and lifetimes)."""

    src: str
    dst: str
    inbound: bool
    mode: str
    reqid: int
    src_selector: Selector
    dst_selector: Selector


@dataclass(frozen=True, slots=True)
class KeyInput:
    """The inputs of KEYMAT shared by every SA of one negotiation (RFC 4430 §7)."""

    key: Key
    ni: bytes
    nr: bytes | None
    gxy: bytes | None
    aes_prf: AesPrf


@dataclass(frozen=True, slots=True)
class Life:
    soft_seconds: int
    hard_seconds: int
    soft_bytes: int
    hard_bytes: int


def sa_spec(
    inputs: KeyInput,
    protocol: int,
    spi: int,
    params: TransformParams,
    place: SaPlace,
    life: Life,
    replay_window: int,
) -> SaSpec:
    """The SaSpec of one SA with its keys. UnsupportedTransform (a CryptoError) if the
    transform cannot be keyed."""
    keys = derive_sa_keys(
        inputs.key,
        protocol,
        spi.to_bytes(4, "big"),
        inputs.ni,
        inputs.nr,
        inputs.gxy,
        params,
        aes_prf=inputs.aes_prf,
    )
    alg = keys.algorithms
    return SaSpec(
        src=place.src,
        dst=place.dst,
        protocol=protocol,
        spi=spi,
        inbound=place.inbound,
        mode=place.mode,
        reqid=place.reqid,
        src_selector=place.src_selector,
        dst_selector=place.dst_selector,
        encryption=alg.encryption,
        enc_key=keys.enc_key,
        aead_icv_bits=alg.aead_icv_bits,
        authentication=alg.authentication,
        auth_key=keys.auth_key,
        auth_trunc_bits=alg.auth_trunc_bits,
        soft_seconds=life.soft_seconds,
        hard_seconds=life.hard_seconds,
        soft_bytes=life.soft_bytes,
        hard_bytes=life.hard_bytes,
        replay_window=replay_window,
    )
