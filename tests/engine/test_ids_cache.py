"""kink.engine.ids keeps its answers (ID payloads by selector, selectors by ID payload) and a
Selector its hash: what is handed out again must be what a fresh computation gives."""

import pickle
from ipaddress import IPv4Network, ip_network

import pytest

from kink.engine import ids
from kink.engine.events import Selector
from kink.engine.ids import id_payload, selector_of
from kink.wire import IdPayload
from kink.wire.ipsec_doi import IdType


def test_equal_selectors_hash_alike_and_find_each_other() -> None:
    one = Selector(ip_network("10.1.0.0/24"), 6, 22)
    other = Selector(ip_network("10.1.0.0/24"), 6, 22)
    assert one is not other and one == other and hash(one) == hash(other)
    assert {(one, 1): "x"}[(other, 1)] == "x"
    assert Selector(ip_network("10.1.0.0/24"), 6, 23) != one
    travelled = pickle.loads(pickle.dumps(one))
    assert travelled == one and hash(travelled) == hash(one)


def test_kept_answers_are_the_computed_ones() -> None:
    selector = Selector(ip_network("192.0.2.0/24"), 17, 500)
    first = id_payload(selector)
    assert id_payload(Selector(ip_network("192.0.2.0/24"), 17, 500)) == first
    assert first == IdPayload(
        IdType.IPV4_ADDR_SUBNET, 17, 500, bytes.fromhex("c0000200") + bytes.fromhex("ffffff00")
    )
    assert selector_of(first) == selector
    assert selector_of(IdPayload(first.id_type, 17, 500, bytes(first.data))) == selector
    # The same octets under another port or protocol are another selector.
    assert selector_of(IdPayload(first.id_type, 17, 501, first.data)).port == 501
    assert selector_of(IdPayload(first.id_type, 6, 500, first.data)).protocol == 6


def test_a_refused_payload_is_refused_every_time() -> None:
    host_bits = IdPayload(IdType.IPV4_ADDR_SUBNET, 0, 0, bytes.fromhex("0a000001ffffff00"))
    for _ in range(2):
        with pytest.raises(ValueError):
            selector_of(host_bits)


def test_the_tables_stay_bounded() -> None:
    for n in range(ids._CACHE_LIMIT + 10):
        selector = Selector(IPv4Network((n, 32)))
        assert selector_of(id_payload(selector)) == selector
        assert len(ids._id_payloads) <= ids._CACHE_LIMIT
        assert len(ids._selectors) <= ids._CACHE_LIMIT
