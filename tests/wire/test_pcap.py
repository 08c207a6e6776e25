"""kink.wire.pcap: KINK datagrams out of pcap and pcapng files, and DecodeError for bad files."""

import contextlib
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kink.wire import DecodeError, decode
from kink.wire.pcap import CapturedDatagram, read_capture
from tests.wire.captures import DATA, datagrams

KINK = datagrams("basic")[5]
V4A, V4B = bytes([198, 51, 100, 1]), bytes([198, 51, 100, 2])
V6A = bytes.fromhex("20010db8000000000000000000000001")
V6B = bytes.fromhex("20010db8000000000000000000000002")


def udp(payload: bytes, sport: int = 910, dport: int = 910) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(segment: bytes, protocol: int = 17, fragment: int = 0, options: bytes = b"") -> bytes:
    ihl = 5 + len(options) // 4
    total = ihl * 4 + len(segment)
    head = struct.pack(">BBHHHBBH", 0x40 | ihl, 0, total, 1, fragment, 64, protocol, 0)
    return head + V4A + V4B + options + segment


def ipv6(segment: bytes, extensions: bytes = b"", first: int = 17) -> bytes:
    head = struct.pack(">IHBB", 0x60000000, len(extensions) + len(segment), first, 64)
    return head + V6A + V6B + extensions + segment


def ethernet(packet: bytes, ethertype: int = 0x0800, vlans: int = 0) -> bytes:
    """An Ethernet II frame; vlans > 0 adds an 802.1ad tag then 802.1Q tags (TPID, TCI)."""
    tags = b"".join(struct.pack(">HH", 0x8100 if i else 0x88A8, 7) for i in range(vlans))
    return b"\x02" * 6 + b"\x04" * 6 + tags + struct.pack(">H", ethertype) + packet


def sll(packet: bytes, ethertype: int = 0x0800) -> bytes:
    return struct.pack(">HHH8sH", 0, 1, 6, b"\x04" * 8, ethertype) + packet


def sll2(packet: bytes, ethertype: int = 0x0800) -> bytes:
    return struct.pack(">HHIHBB8s", ethertype, 0, 2, 1, 0, 6, b"\x04" * 8) + packet


def pcap(frames: list[bytes], link: int, order: str = "<", nanos: bool = False) -> bytes:
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, link)]
    for i, frame in enumerate(frames):
        out.append(struct.pack(order + "IIII", 1000 + i, 500, len(frame), len(frame)) + frame)
    return b"".join(out)


def block(order: str, kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(order + "II", kind, length) + body + struct.pack(order + "I", length)


def shb(order: str = "<") -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(link: int, order: str = "<", options: bytes = b"") -> bytes:
    return block(order, 1, struct.pack(order + "HHI", link, 0, 0) + options)


def epb(frame: bytes, order: str = "<", interface: int = 0, ts: int = 0, cut: int = 0) -> bytes:
    head = struct.pack(
        order + "IIIII", interface, ts >> 32, ts & 0xFFFFFFFF, len(frame) - cut, len(frame)
    )
    return block(order, 6, head + frame[: len(frame) - cut])


def packet_block(frame: bytes, order: str = "<", interface: int = 0, ts: int = 0) -> bytes:
    """The obsolete pcapng Packet Block (type 2): 16-bit interface id and drops count."""
    head = struct.pack(
        order + "HHIIII", interface, 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame)
    )
    return block(order, 2, head + frame)


def test_the_copied_captures_match_the_interop_readme() -> None:
    found = list(read_capture((DATA / "basic-a.pcap").read_bytes()))
    assert [d.frame for d in found] == [5, 6, 10, 11, 12, 13, 14, 15, 17, 18]
    first = found[0]
    assert (first.src, first.sport, first.dst, first.dport) == (
        "198.51.100.1",
        910,
        "198.51.100.2",
        910,
    )
    assert first.time == pytest.approx(1795760806.796733, abs=1e-6)
    assert not first.truncated and len(first.payload) == 852
    assert all(decode(d.payload) for d in found)


def _only(data: bytes) -> CapturedDatagram:
    (datagram,) = read_capture(data)
    return datagram


# IPv6 hop-by-hop options (next: destination options), destination options of 16 octets.
HOP_BY_HOP_THEN_DESTINATION = b"\x3c\x00" + bytes(6) + b"\x11\x01" + bytes(14)


@pytest.mark.parametrize(
    ("link", "frame"),
    [
        (1, ethernet(ipv4(udp(KINK)))),
        (1, ethernet(ipv4(udp(KINK)), vlans=2)),
        (1, ethernet(ipv6(udp(KINK)), 0x86DD)),
        (113, sll(ipv4(udp(KINK)))),
        (276, sll2(ipv6(udp(KINK)), 0x86DD)),
        (101, ipv4(udp(KINK), options=b"\x01\x01\x01\x00")),
        (101, ipv6(udp(KINK), extensions=HOP_BY_HOP_THEN_DESTINATION, first=0)),
        (228, ipv4(udp(KINK, 40000, 910))),
        (229, ipv6(udp(KINK, 910, 40000))),
    ],
    ids=[
        "ether",
        "ether-vlan",
        "ether-v6",
        "sll",
        "sll2-v6",
        "raw-options",
        "raw-v6-ext",
        "ipv4",
        "ipv6",
    ],
)
def test_link_types_and_ip_versions(link: int, frame: bytes) -> None:
    for data, time in ((pcap([frame], link), 1000.0005), (pcap([frame], link, ">", True), 1000)):
        datagram = _only(data)
        assert datagram.payload == KINK and not datagram.truncated
        assert datagram.src in ("198.51.100.1", "2001:db8::1")
        assert datagram.frame == 1 and datagram.time == pytest.approx(time, abs=1e-6)


def test_only_udp_to_or_from_the_port_and_unfragmented() -> None:
    frames = [
        ethernet(ipv4(udp(b"krb", 40000, 88))),  # frame 1: Kerberos
        ethernet(ipv4(udp(KINK), fragment=0x2000)),  # 2: first fragment (MF)
        ethernet(ipv4(udp(KINK), fragment=0x0010)),  # 3: later fragment
        ethernet(ipv4(udp(KINK), protocol=6)),  # 4: TCP
        ethernet(ipv6(udp(KINK), extensions=b"\x11\x00" + bytes(6), first=44), 0x86DD),  # 5
        ethernet(b"\x00" * 30, 0x0806),  # 6: ARP
        ethernet(ipv4(udp(KINK, 910, 4000)), vlans=1),  # 7
        b"\x01\x02",  # 8: runt
        ethernet(ipv4(udp(KINK))[:10]),  # 9: cut IP header
        ethernet(ipv4(udp(KINK, 910, 910)[:6])),  # 10: cut UDP header
        ethernet(ipv4(udp(KINK)), vlans=0)[:-100],  # 11: cut by the snap length
    ]
    found = list(read_capture(pcap(frames, 1)))
    assert [d.frame for d in found] == [7, 11]
    assert found[0].dport == 4000
    assert found[1].truncated and found[1].payload == KINK[:-100]
    assert [d.frame for d in read_capture(pcap(frames, 1), port=88)] == [1]
    assert list(read_capture(pcap(frames, 147))) == []  # a link type it does not know


def test_pcapng_both_byte_orders_several_sections_and_interfaces() -> None:
    frame = ethernet(ipv4(udp(KINK)))
    resolution = struct.pack("<HHB3x", 9, 1, 0x89)  # if_tsresol = 2^-9
    data = b"".join(
        (
            shb("<"),
            idb(1, "<"),
            idb(101, "<", resolution + b"\0\0\0\0"),
            epb(frame, "<", 0, ts=1_500_000),  # microseconds by default
            epb(ipv4(udp(KINK)), "<", 1, ts=512 * 3),
            block("<", 3, struct.pack("<I", len(frame)) + frame),  # Simple Packet Block
            block("<", 5, b"statistics are skipped"),
            shb(">"),
            idb(113, ">", struct.pack(">HHB3xHH", 9, 1, 3, 0, 0)),  # milliseconds
            epb(sll(ipv4(udp(KINK))), ">", 0, ts=2500, cut=10),
            packet_block(sll(ipv4(udp(KINK))), ">", ts=7),
        )
    )
    found = list(read_capture(data))
    assert [d.frame for d in found] == [1, 2, 3, 4, 5]
    assert [d.time for d in found[:2]] == [pytest.approx(1.5), pytest.approx(3.0)]
    assert found[3].time == pytest.approx(2.5) and found[3].truncated
    assert found[4].time == pytest.approx(0.007)
    assert all(d.payload == KINK for d in found if not d.truncated)


def _pcap_error(data: bytes, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        list(read_capture(data))
    assert info.value.offset == offset, str(info.value)


def test_malformed_pcap_files() -> None:
    good = pcap([ethernet(ipv4(udp(KINK)))], 1)
    _pcap_error(b"", 0)
    _pcap_error(b"\xd4\xc3\xb2", 0)
    _pcap_error(b"GIF89a" + bytes(40), 0)
    _pcap_error(good[:20], 0)
    _pcap_error(good[:30], 24)  # record header cut
    _pcap_error(good[:-1], 32)  # record data cut
    _pcap_error(good[:24] + struct.pack("<IIII", 0, 0, 0xFFFFFFFF, 0), 32)


def test_malformed_pcapng_files() -> None:
    frame = ipv4(udp(KINK))
    good = shb() + idb(101) + epb(frame)
    assert _only(good).payload == KINK
    start = len(shb()) + len(idb(101))
    _pcap_error(good[:10], 0)
    _pcap_error(good[: start + 10], start)  # block header cut
    _pcap_error(shb()[:8] + b"\x4d\x3c\x2b\x1b" + shb()[12:], 8)  # byte-order magic
    _pcap_error(shb()[:12], 0)
    bad_length = good[: start + 4] + struct.pack("<I", 13) + good[start + 8 :]
    _pcap_error(bad_length, start + 4)
    huge = good[: start + 4] + struct.pack("<I", 1 << 20) + good[start + 8 :]
    _pcap_error(huge, start + 4)
    _pcap_error(good[:-4] + struct.pack("<I", 999), len(good) - 4)  # trailing length differs
    _pcap_error(shb() + idb(101) + epb(frame, interface=1), start + 8)
    _pcap_error(shb() + idb(101) + packet_block(frame, interface=3), start + 8)
    _pcap_error(shb() + epb(frame), len(shb()) + 8)
    epb_body = struct.pack("<IIIII", 0, 0, 0, len(frame) + 8, len(frame)) + frame
    _pcap_error(shb() + idb(101) + block("<", 6, epb_body), start + 20)
    _pcap_error(shb() + idb(101) + block("<", 6, b"\0" * 8), start + 8)
    _pcap_error(shb() + block("<", 1, b"\x65\0"), len(shb()) + 8)
    long_option = struct.pack("<HHI", 101, 0, 0) + struct.pack("<HH", 9, 200)
    _pcap_error(shb() + block("<", 1, long_option), len(shb()) + 16)
    _pcap_error(shb() + block("<", 3, b"\0\0\0\x05" + frame), len(shb()))  # SPB, no interface


_FILES = [
    (DATA / "krberr-a.pcap").read_bytes(),
    shb(">")
    + idb(113, ">", struct.pack(">HHB3xHH", 9, 1, 0x86, 0, 0))
    + epb(sll(ipv6(udp(KINK), HOP_BY_HOP_THEN_DESTINATION, 0), 0x86DD), ">", 0, 5)
    + block(">", 3, struct.pack(">I", 60) + bytes(60)),
]


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**64))
def test_damaged_files_raise_only_decode_error(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        data = bytearray(rng.choice(_FILES))
        for _ in range(rng.randint(1, 4)):
            if not data:
                break
            at = rng.randrange(len(data))
            if rng.random() < 0.2:
                del data[at:]
            else:
                data[at] = rng.choice((0, 1, 4, 0x11, 0x80, 0xFF, rng.randrange(256)))
        with contextlib.suppress(DecodeError):
            for datagram in read_capture(bytes(data)):
                assert len(datagram.payload) <= len(data)
