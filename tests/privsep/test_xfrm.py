"""XFRM messages: what the encoders write, that the decoders read it back, and that bad bytes
raise KernelError only. (Layouts against gcc: test_layout; against a kernel: the UML tests.)"""

from __future__ import annotations

import ipaddress
import os
import struct

import pytest

from kink_privsep import xfrm
from kink_privsep.errors import KernelError
from kink_privsep.model import (
    DIR_IN,
    ENCAP_ESPINUDP,
    IPPROTO_AH,
    IPPROTO_ESP,
    MODE_TRANSPORT,
    MODE_TUNNEL,
    Encap,
    Lifetime,
    Mark,
    PolicyId,
    PolicySpec,
    SaId,
    SaSpec,
    Selector,
    Template,
)
from kink_privsep.netlink import NLMSG_HDR, NetlinkSocket, attributes

A4, B4 = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
A6, B6 = ipaddress.ip_address("2001:db8::1"), ipaddress.ip_address("2001:db8::2")
HDR = NLMSG_HDR.size


def sa_spec(**changes: object) -> SaSpec:
    fields: dict[str, object] = {
        "id": SaId(B4, 0x12345678, IPPROTO_ESP, Mark(7, 0xFF)),
        "src": A4,
        "mode": MODE_TUNNEL,
        "reqid": 0x4B490001,
        "enc": "aes-cbc",
        "enc_key": bytearray(range(32)),
        "auth": "hmac-sha256-128",
        "auth_key": bytearray(range(100, 132)),
        "replay_window": 32,
        "lifetime": Lifetime(soft_bytes=10**6, hard_add_seconds=3600),
        "selector": Selector(
            ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("10.1.0.0/16"), 17, 0, 53
        ),
        "encap": Encap(ENCAP_ESPINUDP, 4500, 4501, A4),
        "seq": 9,
    }
    fields.update(changes)
    return SaSpec(**fields)  # type: ignore[arg-type]


def test_newsa_reads_back() -> None:
    spec = sa_spec()
    msg = xfrm.encode_newsa(spec, update=False)
    length, kind, flags, _, _ = NLMSG_HDR.unpack_from(msg)
    assert (length, kind, flags) == (len(msg), xfrm.XFRM_MSG_NEWSA, 0x5)  # REQUEST | ACK
    info = xfrm.decode_sa(kind, 0, memoryview(msg)[HDR:])
    assert info.id == spec.id and info.src == spec.src
    assert (info.mode, info.reqid) == (MODE_TUNNEL, 0x4B490001)
    assert (info.enc, info.auth) == ("aes-cbc", "hmac-sha256-128")
    assert (info.replay_window, info.lifetime) == (32, spec.lifetime)
    assert (info.selector, info.encap) == (spec.selector, spec.encap)
    assert xfrm.encode_newsa(spec, update=True)[4] == xfrm.XFRM_MSG_UPDSA


def test_newsa_bytes() -> None:
    info = bytes(xfrm.encode_newsa(sa_spec(), update=False))[HDR:]
    offsets = xfrm.USERSA_INFO.offsets
    # Addresses: IPv4 in the first 4 of 16 bytes; SPI and ports big-endian, the rest native.
    assert info[offsets["id.daddr"] : offsets["id.daddr"] + 16] == B4.packed.ljust(16, b"\0")
    assert info[offsets["id.spi"] : offsets["id.spi"] + 4] == b"\x12\x34\x56\x78"
    assert info[offsets["sel.dport"] : offsets["sel.dport"] + 4] == b"\x00\x35\xff\xff"
    # Unset limits: counts XFRM_INF, times 0 (XFRM_INF would wrap around: instant expiry).
    lft = struct.unpack_from("@8Q", info, offsets["lft"])
    assert lft == (10**6, 2**64 - 1, 2**64 - 1, 2**64 - 1, 0, 3600, 0, 0)
    attrs = attributes(memoryview(info), xfrm.USERSA_INFO.size)
    crypt = xfrm.ALGO.unpack(attrs[xfrm.XFRMA_ALG_CRYPT])
    assert (crypt["alg_name"].rstrip(b"\0"), crypt["alg_key_len"]) == (b"cbc(aes)", 256)
    assert bytes(attrs[xfrm.XFRMA_ALG_CRYPT][xfrm.ALGO.size :]) == bytes(range(32))
    auth = xfrm.ALGO_AUTH.unpack(attrs[xfrm.XFRMA_ALG_AUTH_TRUNC])
    assert (auth["alg_key_len"], auth["alg_trunc_len"]) == (256, 128)  # RFC 4868: 128, not 96
    assert 1 not in attrs  # never the legacy XFRMA_ALG_AUTH
    assert bytes(attrs[xfrm.XFRMA_MARK]) == struct.pack("@II", 7, 0xFF)


def test_aead_null_and_ah() -> None:
    gcm = sa_spec(enc="aes-gcm", enc_key=bytearray(36), auth=None, auth_key=bytearray())
    attrs = attributes(memoryview(xfrm.encode_newsa(gcm, False))[HDR:], xfrm.USERSA_INFO.size)
    aead = xfrm.ALGO_AEAD.unpack(attrs[xfrm.XFRMA_ALG_AEAD])
    assert aead["alg_name"].rstrip(b"\0") == b"rfc4106(gcm(aes))"
    assert (aead["alg_key_len"], aead["alg_icv_len"]) == (288, 128)  # key + salt, in bits
    assert xfrm.XFRMA_ALG_CRYPT not in attrs and xfrm.XFRMA_ALG_AUTH_TRUNC not in attrs

    null = sa_spec(enc="null", enc_key=bytearray())
    attrs = attributes(memoryview(xfrm.encode_newsa(null, False))[HDR:], xfrm.USERSA_INFO.size)
    crypt = xfrm.ALGO.unpack(attrs[xfrm.XFRMA_ALG_CRYPT])
    assert (crypt["alg_name"].rstrip(b"\0"), crypt["alg_key_len"]) == (b"ecb(cipher_null)", 0)

    ah_id = SaId(B6, 0x1000, IPPROTO_AH)
    ah = sa_spec(id=ah_id, src=A6, enc=None, enc_key=bytearray(), selector=None, encap=None)
    msg = xfrm.encode_newsa(ah, False)
    info = xfrm.decode_sa(xfrm.XFRM_MSG_NEWSA, 0, memoryview(msg)[HDR:])
    assert (info.id, info.src, info.enc, info.auth, info.selector) == (
        ah_id,
        A6,
        None,
        "hmac-sha256-128",
        None,
    )


def test_policy_reads_back() -> None:
    sel = Selector(ipaddress.ip_network("2001:db8:1::/48"), ipaddress.ip_network("::/0"), 6, 80)
    templates = (
        Template(IPPROTO_ESP, MODE_TUNNEL, 5, A4, B4),
        Template(IPPROTO_AH, MODE_TRANSPORT, 6, None, None, 0x2000, optional=True),
    )
    spec = PolicySpec(
        PolicyId(DIR_IN, sel, Mark(1, 1)), 77, 0, templates, Lifetime(hard_add_seconds=9)
    )
    msg = xfrm.encode_newpolicy(spec, update=True)
    assert msg[4] == xfrm.XFRM_MSG_UPDPOLICY
    info = xfrm.decode_policy(xfrm.XFRM_MSG_NEWPOLICY, 0, memoryview(msg)[HDR:])
    assert info.spec == spec
    raw = attributes(memoryview(msg)[HDR:], xfrm.USERPOLICY_INFO.size)[xfrm.XFRMA_TMPL]
    first = xfrm.USER_TMPL.unpack(raw)
    assert (first["family"], first["aalgos"], first["ealgos"]) == (2, 0xFFFFFFFF, 0xFFFFFFFF)
    second = xfrm.USER_TMPL.unpack(raw, xfrm.USER_TMPL.size)
    assert second["family"] == 10  # a transport template takes the selector's family


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (xfrm.XFRM_MSG_NEWSA, b""),
        (xfrm.XFRM_MSG_NEWSA, bytes(100)),
        (xfrm.XFRM_MSG_DELSA, bytes(xfrm.USERSA_ID.size)),  # no XFRMA_SA
        (xfrm.XFRM_MSG_DELSA, bytes(xfrm.USERSA_ID.size) + b"\x08\x00\x06\x00"),  # too short
        (xfrm.XFRM_MSG_EXPIRE, bytes(xfrm.USER_EXPIRE.size - 1)),
        (xfrm.XFRM_MSG_POLEXPIRE, bytes(xfrm.USER_POLEXPIRE.size)),  # selector family 0
        (xfrm.XFRM_MSG_ACQUIRE, bytes(50)),
        (xfrm.XFRM_MSG_NEWSA, bytes(xfrm.USERSA_INFO.size) + b"\xff\xff\x01\x00"),  # bad nlattr
    ],
)
def test_bad_bytes_raise_kernel_error_only(kind: int, body: bytes) -> None:
    with pytest.raises(KernelError):
        xfrm.decode_event(kind, memoryview(body))


def test_unknown_events_are_ignored() -> None:
    assert xfrm.decode_event(xfrm.XFRM_MSG_FLUSHSA, memoryview(b"\x00")) is not None
    assert xfrm.decode_event(0x24, memoryview(b"")) is None  # XFRM_MSG_MAPPING: not kink's


@pytest.mark.skipif(os.geteuid() != 0, reason="needs CAP_NET_ADMIN")
def test_requests_and_replies_are_zeroed() -> None:
    sock = NetlinkSocket(xfrm.NETLINK_XFRM)
    try:
        msg = xfrm.encode_sa_id(xfrm.XFRM_MSG_GETSA, SaId(B4, 0xDEAD, IPPROTO_ESP))
        with pytest.raises(KernelError) as e:
            sock.request(msg, xfrm.decode_sa)
        assert e.value.errno == 3  # ESRCH
        assert msg == bytes(len(msg))
        sock.request(xfrm.encode_dump(xfrm.XFRM_MSG_GETPOLICY), xfrm.decode_policy)
        assert sock._buf == bytes(len(sock._buf))  # what the kernel sent (maybe keys) is gone
    finally:
        sock.close()
