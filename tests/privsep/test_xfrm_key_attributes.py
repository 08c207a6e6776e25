"""The algorithm attributes of XFRM_MSG_NEWSA, for every algorithm and key length protocol.py
allows: kernel name, key length in bits, ICV / truncation, the key itself, and 4-byte alignment."""

import ipaddress

import pytest

from kink_privsep import protocol, xfrm
from kink_privsep.model import IPPROTO_AH, IPPROTO_ESP, MODE_TRANSPORT, SaId, SaSpec
from kink_privsep.netlink import NLMSG_HDR, align4, attributes

SRC, DST = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
ENC_CASES = [(enc, n) for enc, alg in protocol.ENC_ALGORITHMS.items() for n in alg.key_lengths]
AUTH_CASES = list(protocol.AUTH_ALGORITHMS.items())


def _attributes(sa: SaSpec) -> dict[int, memoryview]:
    msg = xfrm.encode_newsa(sa, update=False)
    assert len(msg) == align4(len(msg))
    return attributes(memoryview(msg)[NLMSG_HDR.size :], xfrm.USERSA_INFO.size)


def _sa(proto: int, enc: str | None, enc_key: bytes, auth: str | None, auth_key: bytes) -> SaSpec:
    return SaSpec(
        SaId(DST, 0x1000, proto),
        SRC,
        MODE_TRANSPORT,
        0x4B490001,
        enc,
        bytearray(enc_key),
        auth,
        bytearray(auth_key),
    )


@pytest.mark.parametrize(("enc", "n"), ENC_CASES)
def test_encryption_attribute(enc: str, n: int) -> None:
    key = bytes(range(1, n + 1))
    aead = protocol.ENC_ALGORITHMS[enc].aead
    auth, auth_key = (None, b"") if aead else ("hmac-sha1-96", bytes(20))
    attrs = _attributes(_sa(IPPROTO_ESP, enc, key, auth, auth_key))
    kind, layout = (
        (xfrm.XFRMA_ALG_AEAD, xfrm.ALGO_AEAD) if aead else (xfrm.XFRMA_ALG_CRYPT, xfrm.ALGO)
    )
    fields = layout.unpack(attrs[kind])
    assert fields["alg_name"].rstrip(b"\0") == xfrm.KERNEL_ENC[enc].encode()
    assert fields["alg_key_len"] == n * 8
    if aead:
        assert fields["alg_icv_len"] == xfrm.AEAD_ICV_BITS
    assert bytes(attrs[kind][layout.size :]) == key


@pytest.mark.parametrize(("auth", "n"), AUTH_CASES)
def test_integrity_attribute(auth: str, n: int) -> None:
    key = bytes(range(100, 100 + n))
    attrs = _attributes(_sa(IPPROTO_AH, None, b"", auth, key))
    fields = xfrm.ALGO_AUTH.unpack(attrs[xfrm.XFRMA_ALG_AUTH_TRUNC])
    name, trunc = xfrm.KERNEL_AUTH[auth]
    assert fields["alg_name"].rstrip(b"\0") == name.encode()
    assert (fields["alg_key_len"], fields["alg_trunc_len"]) == (n * 8, trunc)
    assert bytes(attrs[xfrm.XFRMA_ALG_AUTH_TRUNC][xfrm.ALGO_AUTH.size :]) == key
