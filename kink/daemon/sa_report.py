"""The `sas` answer of the control protocol (kink.daemon.control_protocol): the engine's view of
each child (selectors, transforms, lifetimes, PFS group) with the kernel's counters of its SAs.

Algorithms are named as kink.toml names them (aes-cbc, aes-gcm, hmac-sha256), not by their
XFRM names (cbc(aes), rfc4106(gcm(aes)), hmac(sha256)): operators compare the two.

An entry is made for every child at each `sas` (100,000s of them, issue 9), from values most
children share (their policy's selectors, their transforms and lifetimes: kink.engine.sadb):
the parts made of those are made once and shared between entries, which are encoded and never
changed.
"""

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from kink.daemon.helper_args import PROTOCOL_NAMES
from kink.engine import ChildView
from kink.engine.events import SaLifetimes, SaTransform, Selector
from kink.wire.ipsec_doi import GroupDescription

# kink.crypto.algorithms' XFRM names -> the names of the protocol (and of kink.toml).
ENC_NAMES = {"cbc(aes)": "aes-cbc", "rfc4106(gcm(aes))": "aes-gcm", "ecb(cipher_null)": "null"}
AUTH_NAMES = {
    "hmac(sha1)": "hmac-sha1",
    "hmac(sha256)": "hmac-sha256",
    "hmac(sha384)": "hmac-sha384",
    "hmac(sha512)": "hmac-sha512",
}

# The counters of each kernel SA by (protocol name, SPI, destination), as the helper's dump
# gives them: only they, not every SA's whole description (issue 9: 100,000s of SAs).
KernelSas = Mapping[tuple[str, int, str], Mapping[str, Any]]


_SHARED = 4096  # distinct selectors, transforms and lifetimes whose parts are kept


@lru_cache(maxsize=_SHARED)
def selector(sel: Selector | None) -> dict[str, Any] | None:
    if sel is None:
        return None
    return {"subnet": str(sel.network), "protocol": sel.protocol, "port": sel.port}


def group_name(group: int | None) -> str | None:
    """ "modp2048" for group 14, as kink.toml's pfs_group names it (RFC 3526)."""
    if group is None:
        return None
    try:
        return GroupDescription(group).name.lower().replace("_", "")
    except ValueError:
        return str(group)


def lifetimes(life: SaLifetimes | None) -> dict[str, int | None]:
    """The limits the SAs were installed with; 0 (none) becomes null."""
    if life is None:
        return _lifetimes(None)
    return _lifetimes((life.soft_seconds, life.hard_seconds, life.soft_bytes, life.hard_bytes))


@lru_cache(maxsize=_SHARED)
def _lifetimes(limits: tuple[int, int, int, int] | None) -> dict[str, int | None]:
    names = ("soft_seconds", "hard_seconds", "soft_bytes", "hard_bytes")
    if limits is None:
        return dict.fromkeys(names)
    return {name: limit or None for name, limit in zip(names, limits, strict=True)}


@lru_cache(maxsize=_SHARED)
def transform(t: SaTransform | None) -> dict[str, Any]:
    if t is None:
        return dict.fromkeys(("enc", "enc_key_bits", "icv_bits", "auth", "auth_trunc_bits"))
    enc, auth = t.encryption, t.authentication
    return {
        "enc": None if enc is None else ENC_NAMES.get(enc, enc),
        "enc_key_bits": t.enc_key_bits or None,
        "icv_bits": t.aead_icv_bits,
        "auth": None if auth is None else AUTH_NAMES.get(auth, auth),
        "auth_trunc_bits": t.auth_trunc_bits,
    }


def child_entry(
    child: ChildView, local: str, remote: str, kernel: KernelSas, now: float, wall: float
) -> dict[str, Any]:
    """One entry of `sas`: `local` / `remote` are our and the peer's addresses (the
    destinations of the inbound / outbound SAs), `now` the engine's time, `wall` Unix time."""
    transforms = {t.protocol: t for t in child.transforms}
    sas = []
    added: list[float] = []
    for protocol, spi_in, spi_out in child.spis:
        name = PROTOCOL_NAMES[protocol]
        c_in = kernel.get((name, spi_in, local), {})
        c_out = kernel.get((name, spi_out, remote), {})
        added += [c["add_time"] for c in (c_in, c_out) if c.get("add_time")]
        sas.append(
            {
                "protocol": name,
                "spi_in": spi_in,
                "spi_out": spi_out,
                **transform(transforms.get(protocol)),
                "bytes_in": c_in.get("bytes"),
                "packets_in": c_in.get("packets"),
                "bytes_out": c_out.get("bytes"),
                "packets_out": c_out.get("packets"),
            }
        )
    hard = child.life.hard_seconds if child.life else 0
    return {
        "child": child.id,
        "peer": child.peer,
        "state": child.state,
        "initiator": child.initiator,
        "mode": child.mode,
        "reqid": child.reqid,
        "peer_epoch": child.peer_epoch,
        "rekey_in": None if child.rekey_at is None else child.rekey_at - now,
        "expires_in": child.created + hard - now if hard else None,
        "age": wall - min(added) if added else None,
        "local": selector(child.local),
        "remote": selector(child.remote),
        "pfs_group": group_name(child.pfs_group),
        "life": lifetimes(child.life),
        "sas": sas,
    }
