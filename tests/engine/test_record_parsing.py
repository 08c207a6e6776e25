"""ChildRecord.from_dict's fast paths (issue 9: a restart reads 10,000s of records) read what
to_dict() wrote exactly as before and refuse the same damage: IPv4 networks parsed by inet_pton
where ip_network would accept them, and nothing else; exact JSON types first, then the checks
that accept their subclasses (never bool for a number)."""

import json
from dataclasses import replace
from ipaddress import ip_network
from typing import Any

import pytest

from kink.engine import ChildRecord
from kink.engine.events import SaLifetimes, SaTransform, Selector
from kink.engine.records import RecordError


def _record(local: str = "10.1.0.0/24", remote: str = "10.2.3.4/32") -> ChildRecord:
    return ChildRecord(
        peer="b",
        initiator=True,
        spis=((50, 0x1000, 0x2000),),
        mode="tunnel",
        reqid=0x10040,
        local=Selector(ip_network(local)),
        remote=Selector(ip_network(remote), 6, 443),
        send_ids=True,
        transforms=(SaTransform(50, "cbc(aes)", 128, None, "hmac(sha1)", 96),),
        life=SaLifetimes(0, 3600, 0, 0),
        pfs_group=14,
        peer_epoch=7,
        age=1.5,
        rekey_in=300.0,
    )


@pytest.mark.parametrize(
    ("local", "remote"),
    [
        ("0.0.0.0/0", "255.255.255.255/32"),
        ("192.0.2.0/24", "198.51.100.7/32"),
        ("::/0", "2001:db8::1/128"),
        ("2001:db8:1::/48", "::ffff:192.0.2.1/128"),
    ],
)
def test_records_read_back_what_was_written(local: str, remote: str) -> None:
    record = _record(local, remote)
    assert ChildRecord.from_dict(record.to_dict()) == record


@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.0",  # no length: a host, as ip_network reads it
        "10.0.0.1/24",  # host bits set
        "010.0.0.0/8",
        "10.0.0.0/33",
        "10.0.0.0/ 8",
        "10.0.0.0/+8",
        "10.0.0.0/08",
        "10.0.0/8",
        "1.2.3.4.5/32",
        "10.0.0.0/٨",  # a non-ASCII digit
        "2001:db8::/129",
        "",
    ],
)
def test_network_texts_are_read_as_ip_network_reads_them(text: str) -> None:
    data = _record().to_dict()
    data["remote"] = {"network": text, "protocol": 0, "port": 0}
    try:
        expected = ip_network(text)
    except ValueError:
        with pytest.raises(RecordError):
            ChildRecord.from_dict(data)
        return
    assert ChildRecord.from_dict(data).remote == Selector(expected)


def test_a_record_read_as_of_later_is_older_and_nearer_its_rekey() -> None:
    record = _record()
    assert ChildRecord.from_dict(record.to_dict(), aged=10.0) == replace(
        record, age=11.5, rekey_in=290.0
    )
    never = replace(record, rekey_in=None)
    assert ChildRecord.from_dict(never.to_dict(), aged=10.0) == replace(never, age=11.5)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reqid", True),
        ("reqid", 1.0),
        ("reqid", -1),
        ("age", True),
        ("age", "1.5"),
        ("peer", b"b"),
        ("initiator", 1),
        ("spis", [[50, 0x1000, False]]),
        ("spis", "abc"),
        ("life", [0, 3600, 0, 0]),
    ],
)
def test_wrong_types_are_refused(field: str, value: Any) -> None:
    data = _record().to_dict()
    data[field] = value
    with pytest.raises(RecordError):
        ChildRecord.from_dict(data)


def test_subclasses_of_the_json_types_are_still_read() -> None:
    class Text(str):
        pass

    class Number(int):
        pass

    record = _record()
    data = record.to_dict()
    data.update(peer=Text("b"), reqid=Number(0x10040), age=Number(2), spis=((50, 0x1000, 0x2000),))
    assert ChildRecord.from_dict(data) == replace(record, age=2.0)


def _generic_json(record: ChildRecord) -> str:
    """The record's fields as json.JSONEncoder(separators=(",", ":")) writes them: the text
    to_json() writes directly (the dict the state file was encoded from before it did)."""
    doc = {
        "peer": record.peer,
        "initiator": record.initiator,
        "spis": [list(s) for s in record.spis],
        "mode": record.mode,
        "reqid": record.reqid,
        "local": {
            "network": str(record.local.network),
            "protocol": record.local.protocol,
            "port": record.local.port,
        },
        "remote": {
            "network": str(record.remote.network),
            "protocol": record.remote.protocol,
            "port": record.remote.port,
        },
        "send_ids": record.send_ids,
        "transforms": [
            {
                "protocol": t.protocol,
                "encryption": t.encryption,
                "enc_key_bits": t.enc_key_bits,
                "aead_icv_bits": t.aead_icv_bits,
                "authentication": t.authentication,
                "auth_trunc_bits": t.auth_trunc_bits,
            }
            for t in record.transforms
        ],
        "life": {
            "soft_seconds": record.life.soft_seconds,
            "hard_seconds": record.life.hard_seconds,
            "soft_bytes": record.life.soft_bytes,
            "hard_bytes": record.life.hard_bytes,
        },
        "pfs_group": record.pfs_group,
        "peer_epoch": record.peer_epoch,
        "age": record.age,
        "rekey_in": record.rekey_in,
        "awaiting_ack": record.awaiting_ack,
    }
    return json.JSONEncoder(separators=(",", ":")).encode(doc)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"peer": 'pé"er\\\n\u2603', "mode": "transport", "initiator": False, "send_ids": False},
        {"pfs_group": None, "peer_epoch": None, "rekey_in": None, "awaiting_ack": True},
        {"age": 0, "rekey_in": 7, "reqid": 0},
        {"age": 1e-7, "rekey_in": -2.5e20},
        {"age": float("inf"), "rekey_in": float("nan")},
        {"spis": ((50, 0, 0xFFFF_FFFF), (51, 0x1234, 0x5678))},
        {"local": Selector(ip_network("2001:db8::/32"), 17, 500)},
        {"life": SaLifetimes(10, 3600, 1 << 40, 1 << 50)},
        {
            "transforms": (
                SaTransform(50, "rfc4106(gcm(aes))", 256, 128, None, None),
                SaTransform(51, None, None, None, "hmac(sha256)", 128),
            )
        },
    ],
)
def test_to_json_writes_what_the_generic_encoder_writes(changes: dict[str, Any]) -> None:
    record = replace(_record(), **changes)
    assert record.to_json() == _generic_json(record)
    assert record.to_json() == _generic_json(record)  # again, its shared parts remembered
