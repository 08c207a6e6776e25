"""kink.engine.ids: IDci/IDcr subnet payloads of both families (RFC 2407 §4.6.2.4, .6)."""

from ipaddress import ip_network

import pytest

from kink.engine.events import Selector
from kink.engine.ids import id_payload, selector_of
from kink.wire import IdPayload
from kink.wire.ipsec_doi import IdType


@pytest.mark.parametrize(
    "network",
    ["10.1.0.0/24", "0.0.0.0/0", "10.0.0.1/32", "fd00:1::/64", "::/0", "fc00::/7", "fd00::1/128"],
)
def test_selector_round_trip(network: str) -> None:
    selector = Selector(ip_network(network), 17, 4500)
    assert selector_of(id_payload(selector)) == selector


def test_ipv6_subnet_payload_is_read() -> None:
    data = bytes.fromhex("fd000002" + "00" * 12) + bytes.fromhex("ff" * 8 + "00" * 8)
    payload = IdPayload(IdType.IPV6_ADDR_SUBNET, 0, 0, data)
    assert selector_of(payload) == Selector(ip_network("fd00:2::/64"), 0, 0)


@pytest.mark.parametrize(
    ("id_type", "data"),
    [
        (IdType.IPV6_ADDR_SUBNET, bytes(16) + bytes.fromhex("ff00ff00" + "00" * 12)),
        (IdType.IPV4_ADDR_SUBNET, bytes.fromhex("0a000000" + "ff00ff00")),
        (IdType.IPV6_ADDR_SUBNET, bytes.fromhex("fd000002" + "00" * 12) + bytes(16)),
    ],
    ids=["v6-holes", "v4-holes", "v6-host-bits"],
)
def test_bad_subnet_payload_is_value_error(id_type: int, data: bytes) -> None:
    with pytest.raises(ValueError):
        selector_of(IdPayload(id_type, 0, 0, data))
