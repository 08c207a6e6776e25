"""Selectors as the kernel reports them (a policy dump, an SA event): address numbers with host
bits the kernel may keep, every prefix length, and a family kink does not know."""

import ipaddress
import socket

import pytest

from kink_privsep import xfrm
from kink_privsep.errors import KernelError


def _policy_body(fam: int, src: bytes, src_len: int, dst: bytes, dst_len: int) -> memoryview:
    fields: dict[str, object] = {
        name: b"" if name.endswith("addr") else 0 for name in xfrm.USERPOLICY_INFO.names
    }
    fields |= {"sel.family": fam, "sel.saddr": src, "sel.daddr": dst}
    fields |= {"sel.prefixlen_s": src_len, "sel.prefixlen_d": dst_len}
    return memoryview(xfrm.USERPOLICY_INFO.struct.pack(*fields.values()))


V4 = (socket.AF_INET, "10.1.2.3", "192.0.2.255")
V6 = (socket.AF_INET6, "2001:db8::1:2", "fd00::ffff")
CASES = [(*V4, n) for n in (0, 1, 24, 31, 32)] + [(*V6, n) for n in (0, 1, 64, 127, 128)]


@pytest.mark.parametrize(("fam", "src", "dst", "length"), CASES)
def test_host_bits_are_masked_off(fam: int, src: str, dst: str, length: int) -> None:
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    body = _policy_body(fam, a.packed.ljust(16, b"\0"), length, b.packed.ljust(16, b"\0"), 8)
    sel = xfrm.decode_policy(xfrm.XFRM_MSG_NEWPOLICY, 0, body).spec.id.selector
    assert sel.src == ipaddress.ip_network((a, length), strict=False)
    assert sel.dst == ipaddress.ip_network((b, 8), strict=False)
    assert type(sel.src) is type(ipaddress.ip_network(src))


def test_an_unknown_family_is_a_kernel_error() -> None:
    body = _policy_body(99, bytes(16), 8, bytes(16), 8)
    with pytest.raises(KernelError):
        xfrm.decode_policy(xfrm.XFRM_MSG_NEWPOLICY, 0, body)
