"""`kinkctl decode` output: dissected KINK messages (kink.ctl.decode) as human text or JSON.

message_json() states the facts of a message once, as a JSON-ready dict: protocol names
(IKE style, as the RFCs write them), UTC timestamps, SPIs, nonces and keys in hex. The JSON
form prints those dicts as one document; the text form is written from the same dicts, so the
two cannot disagree.
"""

import ipaddress
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from enum import IntEnum

from kink.crypto.rfc3961 import enctype_name
from kink.ctl.decode import (
    ApReqView,
    CksumStatus,
    Dissected,
    EncryptStatus,
    EncryptView,
    KrbErrorView,
    PayloadView,
    SaKeymat,
    Source,
)
from kink.krb5.errors import error_name
from kink.krb5.initiator import KrbErrorInfo
from kink.krb5.offline import OfflineTicket
from kink.wire import (
    ApRep,
    DeletePayload,
    ErrorPayload,
    IdPayload,
    Isakmp,
    IsakmpPayload,
    IsakmpPayloadType,
    KePayload,
    KinkErrorCode,
    MessageType,
    NoncePayload,
    NotifyPayload,
    PayloadType,
    ProtocolError,
    RawIsakmpPayload,
    SaPayload,
    TgtRep,
    TgtReq,
    Transform,
    lifetimes,
)
from kink.wire.ipsec_doi import (
    AhTransform,
    AttributeType,
    AuthAlgorithm,
    EncapsulationMode,
    EspTransform,
    GroupDescription,
    IdType,
    IpcompTransform,
    LifeType,
    NotifyType,
    ProtocolId,
)

Json = dict[str, object]

_TRANSFORMS: dict[int, type[IntEnum]] = {
    ProtocolId.ESP: EspTransform,
    ProtocolId.AH: AhTransform,
    ProtocolId.IPCOMP: IpcompTransform,
}
_LIFE_SUFFIXES = {"seconds": "s", "kilobytes": "KB"}  # text form of the SA Life Types
# RFC 4120 §5.5.1 APOptions bits 1 and 2, as krb5.h's AP_OPTS_* values.
_AP_OPTIONS = {0x40000000: "use-session-key", 0x20000000: "mutual-required"}
_INDENT = "  "


# --------------------------------------------------------------------------- names and times


def _name(kind: type[IntEnum], value: int) -> str:
    """The protocol name of a number (IKE style, with hyphens), else the number itself."""
    try:
        return kind(value).name.replace("_", "-")
    except ValueError:
        return str(value)


def _message_type(value: int) -> str:
    return _name(MessageType, value)


def _payload_name(value: int) -> str:
    """KINK_AP_REQ, KINK_ENCRYPT, ... as RFC 4430 §4.2 writes them."""
    try:
        return "KINK_" + PayloadType(value).name
    except ValueError:
        return f"payload type {value}"


def _protocol(value: int) -> str:
    return _name(ProtocolId, value)


def _transform_name(protocol: int, transform_id: int) -> str:
    kind = _TRANSFORMS.get(protocol)
    return str(transform_id) if kind is None else _name(kind, transform_id)


def _iso(moment: datetime, timespec: str) -> str:
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def _timestamp(seconds: float, timespec: str = "seconds") -> str:
    """ISO 8601 in UTC, with a Z."""
    return _iso(datetime.fromtimestamp(seconds, UTC), timespec)


def _krb_time(seconds: int, microseconds: int) -> str:
    """A KerberosTime and its microseconds field (RFC 4120 §5.2.3, §5.2.4), when non-zero."""
    moment = datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=microseconds)
    return _iso(moment, "microseconds" if microseconds else "seconds")


def _ap_options(value: int) -> list[str]:
    names = [name for bit, name in _AP_OPTIONS.items() if value & bit]
    rest = value & ~sum(_AP_OPTIONS)
    return names + ([f"0x{rest:08x}"] if rest else [])


def _transform_facts(protocol: int, transform: Transform) -> Json:
    """A transform's attributes by name (RFC 2407 §4.5); what has no name stays a number."""
    facts: Json = {
        "number": transform.number,
        "transform": _transform_name(protocol, transform.transform_id),
        "transform_id": transform.transform_id,
    }
    others: list[Json] = []
    try:
        life = {
            _name(LifeType, kind).lower(): value for kind, value in lifetimes(transform.attributes)
        }
        named_life = True
    except ProtocolError:
        life, named_life = {}, False
    for attr in transform.attributes:
        kind, value = attr.type, attr.as_int()
        if kind == AttributeType.KEY_LENGTH:
            facts["key_length"] = value
        elif kind == AttributeType.AUTHENTICATION_ALGORITHM:
            facts["auth"] = _name(AuthAlgorithm, value)
        elif kind == AttributeType.ENCAPSULATION_MODE:
            facts["mode"] = _name(EncapsulationMode, value).lower()
        elif kind == AttributeType.GROUP_DESCRIPTION:
            facts["group"] = _name(GroupDescription, value)
        elif kind == AttributeType.KEY_ROUNDS:
            facts["key_rounds"] = value
        elif kind in (AttributeType.SA_LIFE_TYPE, AttributeType.SA_LIFE_DURATION) and named_life:
            continue
        else:
            raw = attr.value if isinstance(attr.value, int) else attr.value.hex()
            others.append({"type": _name(AttributeType, kind), "value": raw})
    if life:
        facts["life"] = life
    if others:
        facts["other_attributes"] = others
    return facts


# ------------------------------------------------------------------------------------- JSON


def to_json(source: Source, messages: Iterable[Dissected]) -> str:
    """The whole input as one JSON document."""
    document = {
        "messages": [message_json(d) for d in messages],
        "capture_fault": None if source.fault is None else str(source.fault),
    }
    return json.dumps(document, indent=1)


def message_json(d: Dissected) -> Json:
    datagram, header = d.datagram, d.header
    out: Json = {
        "frame": datagram.frame,
        "time": datagram.time,
        "timestamp": None if datagram.time is None else _timestamp(datagram.time, "milliseconds"),
        "src": None if datagram.src is None else str(datagram.src),
        "dst": None if datagram.dst is None else str(datagram.dst),
        "octets": len(datagram.payload),
        "truncated": datagram.truncated,
        "type": None if header is None else _message_type(header.type),
        "xid": None if header is None else header.xid,
        "length": None if header is None else header.length,
        "ackreq": None if header is None else header.ackreq,
        "cksum_len": None if header is None else header.cksum_len,
    }
    if d.error is not None:
        out["error"] = {"offset": d.error.offset, "reason": d.error.reason}
        return out
    out.update(
        {
            "error": None,
            "answers": None
            if d.answers is None
            else {"frame": d.answers.frame, "type": _message_type(d.answers.type)},
            "cksum": d.cksum.value,
            "cksum_error": d.cksum_failure,
            "session_key_from": d.key_frame,
            "payloads": [_payload_json(p) for p in d.payloads],
            "rules_checked": d.rules is not None,
            "rules_violation": d.rules or None,
            "keymat": [_keymat_json(k) for k in d.keymat],
        }
    )
    return out


def _payload_json(view: PayloadView) -> Json:
    if isinstance(view, ApReqView):
        return _ap_req_json(view)
    if isinstance(view, KrbErrorView):
        out: Json = {"payload": "KINK_KRB_ERROR", "octets": len(view.payload.krb_error)}
        if view.info is None:
            out["decode_error"] = view.failure
        else:
            out.update(_krb_error_json(view.info))
        return out
    if isinstance(view, EncryptView):
        return {
            "payload": "KINK_ENCRYPT",
            "octets": view.ciphertext_length,
            "status": view.status.value,
            "error": view.failure,
            "payloads": [_payload_json(p) for p in view.payloads],
            "plaintext": None if view.plaintext is None else view.plaintext.hex(),
        }
    if isinstance(view, ApRep):
        return {
            "payload": "KINK_AP_REP",
            "epoch": view.epoch,
            "epoch_time": _timestamp(view.epoch),
            "octets": len(view.ap_rep),
        }
    if isinstance(view, Isakmp):
        return {
            "payload": "KINK_ISAKMP",
            "qm_version": f"{view.qm_major}.{view.qm_minor}",
            "isakmp": [_isakmp_json(p) for p in view.payloads],
        }
    if isinstance(view, ErrorPayload):
        return {
            "payload": "KINK_ERROR",
            "code": view.code,
            "name": _name(KinkErrorCode, view.code),
        }
    if isinstance(view, TgtReq):
        return {"payload": "KINK_TGT_REQ", "principal": view.principal}
    if isinstance(view, TgtRep):
        return {"payload": "KINK_TGT_REP", "octets": len(view.tgt)}
    return {
        "payload": _payload_name(view.payload_type),
        "payload_type": view.payload_type,
        "data": view.data.hex(),
    }


def _ap_req_json(view: ApReqView) -> Json:
    out: Json = {
        "payload": "KINK_AP_REQ",
        "epoch": view.payload.epoch,
        "epoch_time": _timestamp(view.payload.epoch),
        "octets": len(view.payload.ap_req),
        "ticket_error": view.failure,
    }
    ticket = view.ticket
    if ticket is None:
        return out
    out.update(
        {
            "client": ticket.client_principal,
            "server": ticket.server_principal,
            "keytab": view.keytab,
            "ticket": _ticket_json(ticket),
            "authenticator": {
                "ctime": _krb_time(ticket.ctime, ticket.cusec),
                "ap_options": _ap_options(ticket.ap_options),
                "subkey_enctype": None
                if ticket.subkey_enctype is None
                else enctype_name(ticket.subkey_enctype),
                "seq_number": ticket.seq_number,
            },
            "session_key": {
                "enctype": enctype_name(ticket.session_key.enctype),
                "key": ticket.session_key.material.hex(),
            },
        }
    )
    return out


def _ticket_json(ticket: OfflineTicket) -> Json:
    return {
        "enctype": enctype_name(ticket.ticket_enctype),
        "kvno": ticket.ticket_kvno,
        "flags": f"0x{ticket.ticket_flags:08x}",
        "authtime": _timestamp(ticket.authtime),
        "starttime": _timestamp(ticket.starttime),
        "endtime": _timestamp(ticket.endtime),
        "user_to_user": ticket.user_to_user,
    }


def _krb_error_json(info: KrbErrorInfo) -> Json:
    return {
        "error_code": info.error_code,
        "error_name": error_name(info.error_code),
        "e_text": info.e_text,
        "stime": _krb_time(info.stime, info.susec),
        "ctime": None if info.ctime is None else _krb_time(info.ctime, info.cusec or 0),
        "client": info.client,
        "server": info.server,
        "e_data": None if info.e_data is None else info.e_data.hex(),
    }


def _isakmp_json(payload: IsakmpPayload) -> Json:
    if isinstance(payload, SaPayload):
        return {
            "isakmp": "SA",
            "doi": payload.doi,
            "situation": payload.situation,
            "proposals": [
                {
                    "number": p.number,
                    "protocol": _protocol(p.protocol),
                    "spi": p.spi.hex(),
                    "transforms": [_transform_facts(p.protocol, t) for t in p.transforms],
                }
                for p in payload.proposals
            ],
        }
    if isinstance(payload, NoncePayload | KePayload):
        return {
            "isakmp": _name(IsakmpPayloadType, payload.payload_type),
            "octets": len(payload.data),
            "data": payload.data.hex(),
        }
    if isinstance(payload, IdPayload):
        return {
            "isakmp": "ID",
            "id_type": _name(IdType, payload.id_type),
            "value": _id_value(payload),
            "protocol": payload.protocol,
            "port": payload.port,
        }
    if isinstance(payload, NotifyPayload):
        return {
            "isakmp": "N",
            "notify": _name(NotifyType, payload.notify_type),
            "notify_type": payload.notify_type,
            "protocol": _protocol(payload.protocol),
            "spi": payload.spi.hex(),
            "data": payload.data.hex(),
        }
    if isinstance(payload, DeletePayload):
        return {
            "isakmp": "D",
            "protocol": _protocol(payload.protocol),
            "spis": [spi.hex() for spi in payload.spis],
        }
    return _raw_isakmp_json(payload)


def _raw_isakmp_json(payload: RawIsakmpPayload) -> Json:
    return {
        "isakmp": _name(IsakmpPayloadType, payload.payload_type),
        "payload_type": payload.payload_type,
        "data": payload.data.hex(),
    }


def _id_value(payload: IdPayload) -> str:
    """The traffic selector of an address ID (RFC 2407 §4.6.2.2-9), else its octets in hex."""
    data = payload.data
    try:
        if payload.id_type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
            return str(ipaddress.ip_address(data))
        half = len(data) // 2
        first, second = ipaddress.ip_address(data[:half]), ipaddress.ip_address(data[half:])
        if payload.id_type in (IdType.IPV4_ADDR_SUBNET, IdType.IPV6_ADDR_SUBNET):
            return str(ipaddress.ip_network(f"{first}/{second}", strict=False))
        if payload.id_type in (IdType.IPV4_ADDR_RANGE, IdType.IPV6_ADDR_RANGE):
            return f"{first}-{second}"
    except ValueError:
        pass
    return data.hex()


def _keymat_json(sa: SaKeymat) -> Json:
    out: Json = {
        "inbound": sa.inbound.value,
        "src": sa.src,
        "dst": sa.dst,
        "protocol": _protocol(sa.protocol),
        "spi": sa.spi.hex(),
        "transform": _transform_facts(sa.protocol, sa.transform),
        "prf": None if sa.aes_prf is None else sa.aes_prf.value,
        "error": sa.failure,
    }
    keys = sa.keys
    if keys is not None:
        algorithms = keys.algorithms
        out["xfrm"] = {
            "encryption": algorithms.encryption,
            "aead_icv_bits": algorithms.aead_icv_bits,
            "authentication": algorithms.authentication,
            "auth_trunc_bits": algorithms.auth_trunc_bits,
        }
        out["enc_key"] = keys.enc_key.hex()
        out["auth_key"] = keys.auth_key.hex()
    return out


# ------------------------------------------------------------------------------------- text


def to_text(messages: Iterable[Dissected]) -> Iterable[str]:
    """The lines of each message, from the same facts as the JSON form."""
    for d in messages:
        yield from message_text(message_json(d))


def message_text(m: Json) -> list[str]:
    """The text lines of one message, written from its facts (message_json)."""
    where = [f"#{m['frame']}"]
    if m["timestamp"] is not None:
        where.append(str(m["timestamp"]))
    if m["src"] is not None:
        where.append(f"{m['src']} -> {m['dst']}")
    what: list[str] = []
    if m["type"] is not None:
        what.append(f"{m['type']} xid={m['xid']} len={m['length']}")
    if m["truncated"]:
        what.append(f"[truncated by the capture at {m['octets']} octets]")
    error = m.get("error")
    if isinstance(error, dict):
        what.append(f"undecodable: offset {error['offset']}: {error['reason']}")
        return ["  ".join(where) + "  " + " ".join(what)]
    if m["ackreq"]:
        what.append("ackreq")
    answers = m["answers"]
    if isinstance(answers, dict):
        what.append(f"answers={answers['type']}#{answers['frame']}")
    what.append(_cksum_text(m))
    lines = ["  ".join(where) + "  " + " ".join(what)]
    for payload in _objects(m["payloads"]):
        lines.extend(_payload_text(payload, 1))
    if m["rules_violation"] is not None:
        lines.append(f"{_INDENT}! breaks RFC 4430 §6: {m['rules_violation']}")
    for sa in _objects(m["keymat"]):
        lines.extend(_keymat_text(sa, 1))
    return lines


def _cksum_text(m: Json) -> str:
    status, key_from = m["cksum"], m["session_key_from"]
    if status == CksumStatus.ABSENT:
        return "cksum=none"
    if status == CksumStatus.NO_KEY:
        return f"cksum={m['cksum_len']} (not checked: no session key)"
    key = "" if key_from == m["frame"] else f" with the key of #{key_from}"
    if status == CksumStatus.BAD:
        return f"cksum={m['cksum_len']} (BAD{key}: {m['cksum_error']})"
    return f"cksum={m['cksum_len']} (verified{key})"


def _payload_text(p: Json, depth: int) -> list[str]:
    pad = _INDENT * depth
    kind = p["payload"]
    if kind == "KINK_AP_REQ":
        return _ap_req_text(p, depth)
    if kind == "KINK_AP_REP":
        return [f"{pad}KINK_AP_REP epoch={p['epoch']} ({p['epoch_time']}) {p['octets']} octets"]
    if kind == "KINK_KRB_ERROR":
        if "error_code" not in p:
            return [f"{pad}KINK_KRB_ERROR {p['octets']} octets, undecodable: {p['decode_error']}"]
        return [f"{pad}KINK_KRB_ERROR " + _krb_error_text(p)]
    if kind == "KINK_ENCRYPT":
        return _encrypt_text(p, depth)
    if kind == "KINK_ISAKMP":
        lines = [f"{pad}KINK_ISAKMP qm={p['qm_version']}"]
        for payload in _objects(p["isakmp"]):
            lines.extend(_isakmp_text(payload, depth + 1))
        return lines
    if kind == "KINK_ERROR":
        return [f"{pad}KINK_ERROR {p['name']} ({p['code']})"]
    if kind == "KINK_TGT_REQ":
        return [f"{pad}KINK_TGT_REQ " + _fields({"principal": p["principal"]})]
    if kind == "KINK_TGT_REP":
        return [f"{pad}KINK_TGT_REP {p['octets']} octets"]
    return [f"{pad}{kind} data={p['data']}"]


def _ap_req_text(p: Json, depth: int) -> list[str]:
    pad = _INDENT * depth
    head = f"{pad}KINK_AP_REQ epoch={p['epoch']} ({p['epoch_time']})"
    ticket, auth, session = p.get("ticket"), p.get("authenticator"), p.get("session_key")
    if not (isinstance(ticket, dict) and isinstance(auth, dict) and isinstance(session, dict)):
        return [f"{head} {p['octets']} octets, ticket not decrypted: {p['ticket_error']}"]
    pad2 = pad + _INDENT
    lines = [
        f"{head} "
        + _fields({k: p[k] for k in ("client", "server")} | {"enctype": session["enctype"]}),
        f"{pad2}ticket keytab={p['keytab']} " + _fields(ticket),
        f"{pad2}authenticator " + _fields(auth),
        f"{pad2}session-key {session['key']}",
    ]
    if p["ticket_error"] is not None:
        lines.append(f"{pad2}! {p['ticket_error']}")
    return lines


def _krb_error_text(p: Json) -> str:
    text = f"error-code={p['error_code']} {p['error_name'] or 'unknown'}"
    rest = {k: p[k] for k in ("e_text", "stime", "ctime", "client", "server", "e_data")}
    return f"{text} {_fields(rest)}"


def _encrypt_text(p: Json, depth: int) -> list[str]:
    pad = _INDENT * depth
    status = p["status"]
    head = f"{pad}KINK_ENCRYPT {p['octets']} octets"
    if status == EncryptStatus.NO_KEY:
        return [f"{head} (not decrypted: no session key)"]
    if status == EncryptStatus.FAILED:
        lines = [f"{head} (FAILED: {p['error']})"]
        if p["plaintext"] is not None:
            lines.append(f"{pad}{_INDENT}plaintext {p['plaintext']}")
        return lines
    lines = [f"{head} (decrypted)"]
    for payload in _objects(p["payloads"]):
        lines.extend(_payload_text(payload, depth + 1))
    return lines


def _isakmp_text(p: Json, depth: int) -> list[str]:
    pad = _INDENT * depth
    kind = p["isakmp"]
    if kind == "SA":
        lines = [f"{pad}SA doi={p['doi']} sit={p['situation']}"]
        for proposal in _objects(p["proposals"]):
            lines.append(
                f"{pad}{_INDENT}Proposal #{proposal['number']} {proposal['protocol']} "
                f"spi={proposal['spi']}"
            )
            for transform in _objects(proposal["transforms"]):
                lines.append(
                    f"{pad}{_INDENT * 2}Transform #{transform['number']} "
                    + _transform_text(transform)
                )
        return lines
    if kind in ("NONCE", "KE"):
        data = f" {p['data']}" if kind == "NONCE" else ""
        return [f"{pad}{kind} {p['octets']} octets{data}"]
    if kind == "ID":
        return [f"{pad}ID {p['id_type']} {p['value']} protocol={p['protocol']} port={p['port']}"]
    if kind == "N":
        return [f"{pad}N {p['notify']} " + _fields({k: p[k] for k in ("protocol", "spi", "data")})]
    if kind == "D":
        return [f"{pad}D {p['protocol']} spis=" + ",".join(map(str, _strings(p["spis"])))]
    return [f"{pad}{kind} data={p['data']}"]


def _transform_text(t: Json, *, keys_only: bool = False) -> str:
    """The transform's name and attributes; keys_only: just what decides the keys."""
    parts = [str(t["transform"])]
    for key in ("key_length", "auth", "group", "key_rounds"):
        if key in t:
            parts.append(f"{key.replace('_', '-')}={t[key]}")
    if keys_only:
        return " ".join(parts)
    life = t.get("life")
    if isinstance(life, dict):
        for unit, value in life.items():
            suffix = _LIFE_SUFFIXES.get(unit, f" ({unit})")
            parts.append(f"life={value}{suffix}")
    if "mode" in t:
        parts.append(f"mode={t['mode']}")
    for attr in _objects(t.get("other_attributes", [])):
        parts.append(f"{attr['type']}={attr['value']}")
    return " ".join(parts)


def _keymat_text(sa: Json, depth: int) -> list[str]:
    pad = _INDENT * depth
    transform = sa["transform"]
    facts = _transform_text(transform, keys_only=True) if isinstance(transform, dict) else ""
    prf = "" if sa["prf"] is None else f" prf={sa['prf']}"
    head = (
        f"{pad}KEYMAT {sa['protocol']} spi={sa['spi']} {sa['src']} -> {sa['dst']} "
        f"(inbound at the {sa['inbound']}) {facts}{prf}"
    )
    xfrm = sa.get("xfrm")
    if not isinstance(xfrm, dict):
        return [head, f"{pad}{_INDENT}! not derived: {sa['error']}"]
    pad2 = pad + _INDENT
    lines = [head]
    if xfrm["aead_icv_bits"] is not None:
        lines.append(f"{pad2}aead {xfrm['encryption']} icv={xfrm['aead_icv_bits']} {sa['enc_key']}")
        return lines
    if xfrm["encryption"] is not None:
        lines.append(f"{pad2}enc  {xfrm['encryption']} {sa['enc_key'] or '(no key)'}")
    lines.append(
        f"{pad2}auth {xfrm['authentication']} trunc={xfrm['auth_trunc_bits']} {sa['auth_key']}"
    )
    return lines


def _fields(facts: Json) -> str:
    """key=value for the facts that are set, lists comma-joined. Text with spaces or anything
    unprintable (a peer's e-text may hold control characters) is quoted and escaped."""
    parts = []
    for key, value in facts.items():
        if value is None or value is False:
            continue
        if value is True:
            parts.append(key.replace("_", "-"))
            continue
        if isinstance(value, list):
            value = ",".join(map(str, value))
        text = str(value)
        if not text or " " in text or not text.isprintable():
            text = json.dumps(text)
        parts.append(f"{key.replace('_', '-')}={text}")
    return " ".join(parts)


def _objects(value: object) -> list[Json]:
    return value if isinstance(value, list) else []


def _strings(value: object) -> Sequence[object]:
    return value if isinstance(value, list) else []
