"""The keys of the helper's tables (SaId, PolicyId) keep their hash: equal keys made apart
find each other, and a changed copy is a different key."""

import dataclasses
import ipaddress

from kink_privsep.model import IPPROTO_ESP, Mark, PolicyId, SaId, Selector


def selector(dst: str = "198.51.100.0/24") -> Selector:
    return Selector(ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network(dst), 6, 0, 443)


def test_equal_policy_ids_made_apart_find_each_other() -> None:
    table = {PolicyId(1, selector(), Mark(1, 0xFF)): "mine"}
    assert table[PolicyId(1, selector(), Mark(1, 0xFF))] == "mine"
    assert PolicyId(1, selector()) not in table
    assert PolicyId(0, selector(), Mark(1, 0xFF)) not in table


def test_equal_sa_ids_made_apart_find_each_other() -> None:
    dst = ipaddress.ip_address("192.0.2.1")
    owned = {SaId(dst, 0x1234, IPPROTO_ESP)}
    assert SaId(ipaddress.ip_address("192.0.2.1"), 0x1234, IPPROTO_ESP) in owned
    assert SaId(dst, 0x1235, IPPROTO_ESP) not in owned


def test_a_changed_copy_is_another_key() -> None:
    pid = PolicyId(1, selector())
    other = dataclasses.replace(pid, selector=selector("203.0.113.0/24"))
    assert other != pid
    assert hash(other) == hash(PolicyId(1, selector("203.0.113.0/24")))
    assert "_hash" not in repr(pid)
