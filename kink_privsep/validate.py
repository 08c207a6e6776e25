"""Request arguments -> model commands, or a Refusal. Nothing reaches a backend before this.

Two stages: the schema of protocol.REQUESTS (types, ranges, unknown/missing fields), then the
rules a schema cannot say: one address family per object, key lengths that match the algorithm,
algorithm combinations, and kink's own reqid range and priority band (model.Config).
"""

from __future__ import annotations

from typing import Any

from kink_privsep import protocol as p
from kink_privsep.errors import Refusal
from kink_privsep.model import (
    ACTION_BLOCK,
    ACTIONS,
    DIRS,
    ENCAP_TYPES,
    INFINITE,
    IPPROTO_AH,
    MODE_TRANSPORT,
    MODE_TUNNEL,
    MODES,
    PROTOS,
    AddPolicy,
    AddSa,
    Command,
    Config,
    DeletePolicy,
    DeleteSa,
    Dump,
    Encap,
    Flush,
    GetSa,
    Hello,
    Lifetime,
    Mark,
    PolicyId,
    PolicySpec,
    ReadBytes,
    SaId,
    SaSpec,
    Selector,
    SpiRequest,
    Template,
)
from kink_privsep.schema import IPAddress, SchemaError, check


def _invalid(path: str, rule: str) -> Refusal:
    return Refusal(p.ERR_INVALID, f"{path}: {rule}")


def command(op: str, args: dict[str, Any], config: Config) -> Command:
    """The validated command for `op` (a key of protocol.REQUESTS); Refusal if not acceptable."""
    try:
        a = check(p.REQUESTS[op], args, op)
    except SchemaError as e:
        raise Refusal(p.ERR_INVALID, str(e)) from None
    if op == "hello":
        return Hello()
    if op == "alloc_spi":
        return _spi_request(a, config, op)
    if op in ("add_sa", "update_sa"):
        return AddSa(_sa(a, config, op), update=op == "update_sa")
    if op in ("get_sa", "delete_sa"):
        sa_id = _sa_id(a)
        return GetSa(sa_id) if op == "get_sa" else DeleteSa(sa_id)
    if op in ("add_policy", "update_policy"):
        return AddPolicy(_policy(a, config, op), update=op == "update_policy")
    if op == "delete_policy":
        return DeletePolicy(_policy_id(a, op))
    if op == "counters":
        return ReadBytes([_sa_id(sa) for sa in a["sas"]])
    sas, policies = a["what"] in ("all", "sa"), a["what"] in ("all", "policy")
    return Dump(sas, policies) if op == "dump" else Flush(sas, policies)


def _sa_id(a: dict[str, Any]) -> SaId:
    return SaId(a["dst"], a["spi"], PROTOS[a["proto"]], _mark(a))


def _mark(a: dict[str, Any]) -> Mark | None:
    m = a.get("mark")
    if m is None or m["value"] == m["mask"] == 0:
        return None  # the kernel reports a 0/0 mark as none: one spelling for "no mark"
    return Mark(m["value"], m["mask"])


def _lifetime(a: dict[str, Any]) -> Lifetime:
    limits = a.get("lifetime")
    return INFINITE if not limits else Lifetime(**limits)  # the one "no limits", shared


def _reqid(reqid: int, config: Config, path: str) -> int:
    if not config.owns_reqid(reqid):
        lo, hi = config.reqid_range
        raise Refusal(p.ERR_FORBIDDEN, f"{path}.reqid: {reqid} is outside kink's range {lo}..{hi}")
    return reqid


# Families are compared by type (IPv4Address or IPv6Address, IPv4Network or IPv6Network): the
# same test as comparing .version, without a property call in Python per address.
def _endpoints(src: IPAddress, dst: IPAddress, path: str) -> None:
    if type(src) is not type(dst):
        raise _invalid(path, "src and dst are of different address families")
    if src.is_unspecified or dst.is_unspecified:
        raise _invalid(path, "src and dst must be specified addresses")


def _selector(a: dict[str, Any], path: str) -> Selector:
    if type(a["src"]) is not type(a["dst"]):
        raise _invalid(path, "src and dst are of different address families")
    if (a["sport"] or a["dport"]) and not a["proto"]:
        raise _invalid(path, "ports need a protocol")
    return Selector(a["src"], a["dst"], a["proto"], a["sport"], a["dport"])


def _spi_request(a: dict[str, Any], config: Config, path: str) -> SpiRequest:
    _endpoints(a["src"], a["dst"], path)
    if a["spi_min"] > a["spi_max"]:
        raise _invalid(path, "spi_min is above spi_max")
    return SpiRequest(
        PROTOS[a["proto"]],
        MODES[a["mode"]],
        a["src"],
        a["dst"],
        _reqid(a["reqid"], config, path),
        a["spi_min"],
        a["spi_max"],
        a["seq"],
        _mark(a),
    )


def _sa(a: dict[str, Any], config: Config, path: str) -> SaSpec:
    src, dst = a["src"], a["dst"]
    _endpoints(src, dst, path)
    proto, mode = PROTOS[a["proto"]], MODES[a["mode"]]
    enc, auth = a.get("enc"), a.get("auth")
    enc_key, auth_key = a["enc_key"], a["auth_key"]
    if proto == IPPROTO_AH:
        if enc is not None or enc_key:
            raise _invalid(path, "AH has no encryption")
        if auth is None:
            raise _invalid(path, "AH needs auth")
    else:
        if enc is None:
            raise _invalid(path, "ESP needs enc (use null for integrity only)")
        alg = p.ENC_ALGORITHMS[enc]
        if len(enc_key) not in alg.key_lengths:
            lengths = ", ".join(str(n) for n in alg.key_lengths)
            raise _invalid(f"{path}.enc_key", f"{len(enc_key)} bytes; {enc} takes {lengths}")
        if alg.aead and auth is not None:
            raise _invalid(path, f"{enc} is an AEAD: no auth")
        if not alg.aead and auth is None:
            raise _invalid(path, f"{enc} needs auth")  # RFC 4303 §3.2.2: no ESP without integrity
    if auth is None and auth_key:
        raise _invalid(f"{path}.auth_key", "given without auth")
    if auth is not None and len(auth_key) != p.AUTH_ALGORITHMS[auth]:
        want = p.AUTH_ALGORITHMS[auth]
        raise _invalid(f"{path}.auth_key", f"{len(auth_key)} bytes; {auth} takes {want}")
    selector = None
    if "selector" in a:
        selector = _selector(a["selector"], f"{path}.selector")
        if mode == MODE_TRANSPORT and selector.src.version != src.version:
            raise _invalid(f"{path}.selector", "transport mode: family differs from the SA's")
    encap = None
    if "encap" in a:
        e = a["encap"]
        if proto == IPPROTO_AH:
            raise _invalid(f"{path}.encap", "UDP encapsulation is for ESP only")
        if e.get("oa") is not None and e["oa"].version != src.version:
            raise _invalid(f"{path}.encap.oa", "family differs from the SA's")
        encap = Encap(ENCAP_TYPES[e["type"]], e["sport"], e["dport"], e.get("oa"))
    return SaSpec(
        id=SaId(dst, a["spi"], proto, _mark(a)),
        src=src,
        mode=mode,
        reqid=_reqid(a["reqid"], config, path),
        enc=enc,
        enc_key=bytearray(enc_key),
        auth=auth,
        auth_key=bytearray(auth_key),
        replay_window=a["replay_window"],
        lifetime=_lifetime(a),
        selector=selector,
        encap=encap,
        seq=a["seq"],
    )


def _policy_id(a: dict[str, Any], path: str) -> PolicyId:
    return PolicyId(DIRS[a["dir"]], _selector(a["selector"], f"{path}.selector"), _mark(a))


def _template(a: dict[str, Any], sel: Selector, config: Config, path: str) -> Template:
    src, dst = a.get("src"), a.get("dst")
    mode = MODES[a["mode"]]
    if mode == MODE_TUNNEL:
        if src is None or dst is None:
            raise _invalid(path, "a tunnel template needs src and dst")
        _endpoints(src, dst, path)
    else:
        for addr in (src, dst):
            if addr is not None and addr.version != sel.src.version:
                raise _invalid(path, "transport mode: family differs from the selector's")
    if 0 < a["spi"] < 256:
        raise _invalid(f"{path}.spi", "1..255 are reserved SPI values (RFC 4303 §2.1)")
    reqid = _reqid(a["reqid"], config, path)
    return Template(PROTOS[a["proto"]], mode, reqid, src, dst, a["spi"], a["optional"])


def _policy(a: dict[str, Any], config: Config, path: str) -> PolicySpec:
    pid = _policy_id(a, path)
    if not config.owns_priority(a["priority"]):
        lo, hi = config.priority_band
        reason = f"{path}.priority: {a['priority']} is outside kink's band {lo}..{hi}"
        raise Refusal(p.ERR_FORBIDDEN, reason)
    action = ACTIONS[a["action"]]
    if action == ACTION_BLOCK and a["templates"]:
        raise _invalid(f"{path}.templates", "a block policy has no templates")
    templates = tuple(
        _template(t, pid.selector, config, f"{path}.templates[{i}]")
        for i, t in enumerate(a["templates"])
    )
    return PolicySpec(pid, a["priority"], action, templates, _lifetime(a))
