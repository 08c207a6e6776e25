"""kink_privsep.netlink's message building: nlattr padding, the nlmsghdr, and a fresh buffer."""

import pytest

from kink_privsep.netlink import NLA_HDR, NLMSG_HDR, align4, attribute, attributes, message


@pytest.mark.parametrize("sizes", [(0,), (1,), (2,), (3,), (4,), (5,), (68, 16), (72, 20, 3)])
def test_an_attribute_is_padded_to_four_bytes_and_reads_back(sizes: tuple[int, ...]) -> None:
    payload = [bytes([i + 1]) * n for i, n in enumerate(sizes)]
    parts = attribute(7, *payload) + attribute(9, b"\xaa")
    raw = b"".join(parts)
    first = NLA_HDR.size + sum(sizes)
    assert NLA_HDR.unpack_from(raw) == (first, 7)  # the length excludes the padding
    assert len(raw) == align4(first) + align4(NLA_HDR.size + 1)
    assert raw[first : align4(first)] == bytes(align4(first) - first)
    read = attributes(memoryview(raw), 0)
    assert bytes(read[7]) == b"".join(payload)
    assert bytes(read[9]) == b"\xaa"


def test_a_message_is_its_header_then_its_parts() -> None:
    parts: list[bytes | bytearray] = [b"\x01\x02\x03\x04", bytearray(b"key!"), *attribute(5, b"z")]
    msg = message(0x10, 0x5, parts)
    assert type(msg) is bytearray
    assert NLMSG_HDR.unpack_from(msg) == (len(msg), 0x10, 0x5, 0, 0)
    assert msg[NLMSG_HDR.size :] == b"".join(parts)


def test_a_message_is_a_fresh_buffer() -> None:
    """NetlinkSocket.request zeroes the message once sent: that must not reach the caller's
    key buffers, nor may the caller's later wipe of them leave a copy in the message."""
    key = bytearray(b"secret-key-bytes")
    msg = message(0x10, 0x5, [key])
    assert msg is not key
    msg[:] = bytes(len(msg))
    assert key == b"secret-key-bytes"
    again = message(0x10, 0x5, [key])
    key[:] = bytes(len(key))
    assert again[NLMSG_HDR.size :] == b"secret-key-bytes"
