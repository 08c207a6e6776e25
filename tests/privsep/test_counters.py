"""The `counters` request: the byte counters of the SAs named, kink's own only, read without a
dump (the recording backend here; the running kernel's GETAE: test_host_kernel; malformed
requests: test_validation), and the NEWAE decoder's handling of bad bytes."""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator
from ipaddress import ip_address
from typing import Any

import pytest

from kink_privsep import protocol, xfrm
from kink_privsep.errors import KernelError
from kink_privsep.model import IPPROTO_ESP, MODE_TUNNEL, SaId, SaInfo
from kink_privsep.netlink import attribute
from tests.privsep.harness import TEST_REQIDS, ThreadHelper, thread_helper

HERE, THERE = ip_address("192.0.2.1"), ip_address("192.0.2.2")


@pytest.fixture
def helper() -> Iterator[ThreadHelper]:
    with thread_helper() as h:
        yield h


def _wire(spi: int) -> dict[str, Any]:
    return {"proto": "esp", "dst": str(THERE), "spi": spi}


def _add(helper: ThreadHelper, spi: int) -> SaId:
    with helper.client() as c:
        sa = {
            "proto": "esp",
            "mode": "tunnel",
            "src": str(HERE),
            "dst": str(THERE),
            "spi": spi,
            "reqid": TEST_REQIDS[0],
            "enc": "aes-cbc",
            "enc_key": bytes(16),
            "auth": "hmac-sha1-96",
            "auth_key": bytes(20),
        }
        c.call("add_sa", sa)
    return SaId(THERE, spi, IPPROTO_ESP)


def test_hello_offers_counters(helper: ThreadHelper) -> None:
    with helper.client() as c:
        assert c.call("hello")["max_counters"] == protocol.MAX_COUNTERS


def test_the_counters_of_the_sas_named_in_their_order(helper: ThreadHelper) -> None:
    first, second = _add(helper, 0x1000), _add(helper, 0x1001)
    helper.backend.kernel_traffic(first, 100)
    helper.backend.kernel_traffic(first, 20)
    helper.backend.kernel_traffic(second, 7)
    helper.backend.calls.clear()
    with helper.client() as c:
        sas = [_wire(0x1001), _wire(0x1000), _wire(0x1001)]
        assert c.call("counters", {"sas": sas}) == {"bytes": [7, 120, 7]}
        assert c.call("counters", {"sas": []}) == {"bytes": []}
    assert helper.backend.calls == ["sa_bytes"] * 3  # no dump


def test_an_sa_not_kinks_is_never_read(helper: ThreadHelper) -> None:
    # Another daemon's SA (a reqid outside kink's range) with traffic: shown as absent, and
    # the kernel is not even asked (its counters, nor whether it exists, are not kink's).
    foreign = SaId(THERE, 0x2000, IPPROTO_ESP)
    helper.backend.foreign_add_sa(SaInfo(foreign, HERE, MODE_TUNNEL, 3, "aes-cbc", None))
    helper.backend.kernel_traffic(foreign, 500)
    with helper.client() as c:
        c.call("hello")  # the foreign SA's event has been read
        helper.backend.calls.clear()
        assert c.call("counters", {"sas": [_wire(0x2000), _wire(0x3000)]}) == {
            "bytes": [None, None]
        }
    assert helper.backend.calls == []


def test_an_sa_gone_before_its_event_is_read_is_absent(helper: ThreadHelper) -> None:
    ours = _add(helper, 0x1000)
    helper.backend.delete_sa(ours)  # the kernel's, not through the helper: still in its set
    with helper.client() as c:
        assert c.call("counters", {"sas": [_wire(0x1000)]}) == {"bytes": [None]}


def _newae(*attributes: list[bytes | bytearray]) -> memoryview:
    parts = [bytes(xfrm.AEVENT_ID.size)] + [p for a in attributes for p in a]
    return memoryview(b"".join(parts))


def test_newae_gives_the_byte_counter() -> None:
    current = xfrm.LIFETIME_CUR.struct.pack(1234, 5, 6, 7)
    replay = attribute(xfrm.XFRMA_REPLAY_VAL, bytes(xfrm.REPLAY_STATE.size))
    body = _newae(replay, attribute(xfrm.XFRMA_LTIME_VAL, current))
    assert xfrm.decode_ae_bytes(xfrm.XFRM_MSG_NEWAE, 0, body) == 1234


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (xfrm.XFRM_MSG_NEWSA, _newae(attribute(xfrm.XFRMA_LTIME_VAL, bytes(32)))),
        (xfrm.XFRM_MSG_NEWAE, memoryview(bytes(xfrm.AEVENT_ID.size - 1))),
        (xfrm.XFRM_MSG_NEWAE, _newae()),  # no XFRMA_LTIME_VAL
        (xfrm.XFRM_MSG_NEWAE, _newae(attribute(xfrm.XFRMA_LTIME_VAL, bytes(31)))),
        (xfrm.XFRM_MSG_NEWAE, _newae([struct.pack("@HH", 40, xfrm.XFRMA_LTIME_VAL)])),
    ],
)
def test_bad_newae_raises_kernel_error_only(kind: int, body: memoryview) -> None:
    with pytest.raises(KernelError) as e:
        xfrm.decode_ae_bytes(kind, 0, body)
    assert e.value.errno == errno.EBADMSG
