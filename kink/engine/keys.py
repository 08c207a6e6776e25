"""KEYMAT per SA through kink.crypto (RFC 4430 §7: SKEYID_d is the ticket session key).

Each SA is keyed with the SPI its receiver chose, so both peers compute the same octets for one
SA: the initiator's inbound SA and the responder's outbound SA use the initiator's SPI, and the
other way round. Nr is left out when the REPLY had none (optimistic CREATE), g^xy is in when KE
payloads were exchanged.
"""

from dataclasses import dataclass
from functools import lru_cache

from kink.crypto.algorithms import TransformParams, sa_algorithms
from kink.crypto.keymat import SaKeymat
from kink.engine.events import SaLifetimes, SaSpec, SaTransform, Selector


# SaPlace is not frozen: built per negotiation and only read after that, while a
# frozen dataclass pays object.__setattr__ for every field (issue 4).
@dataclass(slots=True)
class SaPlace:
    """Where an SA goes and what it protects (everything of SaSpec but keys and lifetimes)."""

    src: str
    dst: str
    inbound: bool
    mode: str
    reqid: int
    src_selector: Selector
    dst_selector: Selector


def sa_spec(
    keymat: SaKeymat,
    protocol: int,
    spi: int,
    params: TransformParams,
    place: SaPlace,
    life: SaLifetimes,
    replay_window: int,
) -> SaSpec:
    """The SaSpec of one SA with its keys. UnsupportedTransform (a CryptoError) if the
    transform cannot be keyed."""
    alg = sa_algorithms(protocol, params)
    enc_key, auth_key = keymat.keys(
        protocol, spi.to_bytes(4, "big"), alg.enc_key_length, alg.auth_key_length
    )
    # Positional: SaSpec has twenty fields, and binding them by keyword costs more than the
    # rest of this function but the KEYMAT.
    return SaSpec(
        place.src,
        place.dst,
        protocol,
        spi,
        place.inbound,
        place.mode,
        place.reqid,
        place.src_selector,
        place.dst_selector,
        alg.encryption,
        enc_key,
        alg.aead_icv_bits,
        alg.authentication,
        auth_key,
        alg.auth_trunc_bits,
        life.soft_seconds,
        life.hard_seconds,
        life.soft_bytes,
        life.hard_bytes,
        replay_window,
    )


# Every child records its transforms, and a configuration has a handful: the (immutable)
# answers are kept. Failures (UnsupportedTransform) are not cached.
@lru_cache(maxsize=256)
def sa_transform(protocol: int, params: TransformParams) -> SaTransform:
    """The names of a negotiated transform, for kinkctl and restart records (no keys)."""
    alg = sa_algorithms(protocol, params)
    enc_bits = params.key_length
    if enc_bits is None and alg.encryption is not None:
        enc_bits = alg.enc_key_length * 8  # a fixed-length key (no Key Length attribute)
    return SaTransform(
        protocol,
        alg.encryption,
        enc_bits if alg.encryption is not None else None,
        alg.aead_icv_bits,
        alg.authentication,
        alg.auth_trunc_bits,
    )
