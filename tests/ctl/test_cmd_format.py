"""kinkctl's human units, tables, PEER|SPI arguments, and the SELECTORS and ALGORITHMS of
`kinkctl sas` from what kinkd reports (kink.daemon.sa_report)."""

import argparse
from ipaddress import ip_network
from typing import Any

import pytest

from kink.ctl import target, units
from kink.ctl.commands import sas
from kink.ctl.table import fields, table
from kink.daemon.sa_report import selector, transform
from kink.engine.events import SaTransform, Selector
from kink.wire.ipsec_doi import ProtocolId

ESP, AH = ProtocolId.ESP, ProtocolId.AH


@pytest.mark.parametrize(
    ("octets", "text"),
    [
        (None, "-"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 << 20, "5.0 MiB"),
        (3 << 30, "3.0 GiB"),
        (1 << 60, "1024.0 PiB"),
    ],
)
def test_size(octets: int | None, text: str) -> None:
    assert units.size(octets) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (-1.0, "overdue"),
        (0.4, "0s"),
        (59.9, "59s"),
        (60, "1m00s"),
        (187, "3m07s"),
        (3720, "1h02m"),
        (86399, "23h59m"),
        (183600, "2d03h"),
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert units.duration(seconds) == text


def test_spi_epoch_endpoint() -> None:
    assert units.spi(0x1A2B) == "0x00001a2b" and units.spi(None) == "-"
    assert units.epoch(0xFFFFFFFF) == "0xffffffff"
    assert units.endpoint("192.0.2.1", 910) == "192.0.2.1:910"
    assert units.endpoint("2001:db8::1", 910) == "[2001:db8::1]:910"


def test_table_aligns_and_right_aligns() -> None:
    lines = table(("NAME", "N"), [("a", "1"), ("long-name", "100")], right=(1,))
    assert lines == ["NAME         N", "a            1", "long-name  100"]
    with pytest.raises(ValueError, match="a row of 1 cells under 2 headers"):
        table(("A", "B"), [("x",)])


def test_fields() -> None:
    assert fields([("a", "1"), ("longer", "")]) == ["a       1", "longer"]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("gw-1", ("peer", "gw-1")),
        ("0x1a2b3c4d", ("spi", 0x1A2B3C4D)),
        ("0XFFFFFFFF", ("spi", 0xFFFFFFFF)),
        ("439041101", ("spi", 439041101)),
        ("0x", ("peer", "0x")),
    ],
)
def test_target(text: str, parsed: tuple[str, str | int]) -> None:
    assert target.parse(text) == parsed


@pytest.mark.parametrize("text", ["0", "0x0", "0x100000000", "4294967296"])
def test_target_out_of_range(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not an SPI"):
        target.parse(text)


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (SaTransform(ESP, "rfc4106(gcm(aes))", 256, 128, None, None), "aes-gcm-256"),
        (SaTransform(ESP, "rfc4106(gcm(aes))", 128, 96, None, None), "aes-gcm-128/icv96"),
        (
            SaTransform(ESP, "cbc(aes)", 128, None, "hmac(sha256)", 128),
            "aes-cbc-128/hmac-sha256-128",
        ),
        (SaTransform(ESP, "ecb(cipher_null)", 0, None, "hmac(sha1)", 96), "null/hmac-sha1-96"),
        (SaTransform(AH, None, 0, None, "hmac(sha512)", 256), "hmac-sha512-256"),
    ],
)
def test_sas_algorithms(t: SaTransform, text: str) -> None:
    assert sas.algorithms(transform(t)) == text  # as kinkd reports it


def test_sas_algorithms_unknown_transform() -> None:
    assert sas.algorithms(transform(None)) == "-"


def _child(local: Selector | None, remote: Selector | None) -> dict[str, Any]:
    return {"local": selector(local), "remote": selector(remote)}


@pytest.mark.parametrize(
    ("local", "remote", "text"),
    [
        (
            Selector(ip_network("10.1.0.0/24"), 17),
            Selector(ip_network("10.2.0.0/24"), 17),
            "10.1.0.0/24 <-> 10.2.0.0/24 udp",
        ),
        (
            Selector(ip_network("192.0.2.1/32")),
            Selector(ip_network("192.0.2.2/32")),
            "192.0.2.1/32 <-> 192.0.2.2/32",
        ),
        (
            Selector(ip_network("2001:db8:1::/64"), 6, 443),
            Selector(ip_network("2001:db8:2::/64"), 6),
            "2001:db8:1::/64[443] <-> 2001:db8:2::/64 tcp",
        ),
        (
            Selector(ip_network("10.1.0.0/24"), 99),
            Selector(ip_network("10.2.0.0/24"), 99, 7),
            "10.1.0.0/24 <-> 10.2.0.0/24[7] 99",
        ),
        (None, None, "-"),
    ],
)
def test_sas_selectors(local: Selector | None, remote: Selector | None, text: str) -> None:
    assert sas.selectors(_child(local, remote)) == text
