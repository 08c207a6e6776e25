"""XFRM_MSG_EXPIRE as the kernel sends it (struct xfrm_user_expire, then the mark attribute):
the SA it names, and whether it is the soft or the hard limit."""

import ipaddress

import pytest

from kink_privsep import xfrm
from kink_privsep.errors import KernelError
from kink_privsep.model import (
    IPPROTO_ESP,
    MODE_TUNNEL,
    Expired,
    Lifetime,
    Mark,
    SaId,
    SaSpec,
    Selector,
)
from kink_privsep.netlink import NLMSG_HDR, attribute

SPEC = SaSpec(
    id=SaId(ipaddress.ip_address("192.0.2.2"), 0x1234, IPPROTO_ESP, Mark(5, 0xFF)),
    src=ipaddress.ip_address("192.0.2.1"),
    mode=MODE_TUNNEL,
    reqid=0x4B490007,
    enc="aes-cbc",
    enc_key=bytearray(16),
    auth="hmac-sha1-96",
    auth_key=bytearray(20),
    lifetime=Lifetime(soft_add_seconds=2880, hard_add_seconds=3600),
    selector=Selector(ipaddress.ip_network("10.1.0.0/24"), ipaddress.ip_network("10.2.5.0/24")),
)


def _expire(hard: int) -> memoryview:
    info = bytes(xfrm.encode_newsa(SPEC, update=False))[NLMSG_HDR.size :][: xfrm.USERSA_INFO.size]
    mark = b"".join(attribute(xfrm.XFRMA_MARK, xfrm.MARK.struct.pack(5, 0xFF)))
    padding = bytes(xfrm.USER_EXPIRE.size - xfrm.USERSA_INFO.size - 1)
    return memoryview(info + bytes([hard]) + padding + mark)


@pytest.mark.parametrize("hard", [0, 1])
def test_expire_names_the_sa_and_the_limit(hard: int) -> None:
    event = xfrm.decode_event(xfrm.XFRM_MSG_EXPIRE, _expire(hard))
    assert isinstance(event, Expired) and event.hard is bool(hard)
    sa = event.sa
    assert (sa.id, sa.src, sa.mode, sa.reqid) == (SPEC.id, SPEC.src, MODE_TUNNEL, 0x4B490007)
    assert (sa.lifetime, sa.selector) == (SPEC.lifetime, SPEC.selector)


def test_a_truncated_expire_is_a_kernel_error() -> None:
    with pytest.raises(KernelError):
        xfrm.decode_event(xfrm.XFRM_MSG_EXPIRE, _expire(1)[: xfrm.USER_EXPIRE.size - 1])
