"""KINK datagrams out of packet captures (for `kinkctl decode` and the interop tests).

Reads the classic pcap format (both byte orders, microsecond and nanosecond timestamps) and
pcapng (Section Header, Interface Description, Enhanced/Simple/obsolete Packet blocks; several
sections and interfaces; if_tsresol and if_tsoffset). Link types: Ethernet (with 802.1Q/802.1ad
tags), Linux cooked v1 and v2, raw IP. Network: IPv4 and IPv6 (extension headers skipped);
UDP datagrams to or from the KINK port are returned. Fragmented IP packets and packets of
other link types or protocols are skipped; a datagram cut short by the capture's snap length
is returned with truncated=True. A malformed capture file raises DecodeError (offset = file
position) when the iteration reaches the malformed part.
"""

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from kink.wire.constants import KINK_PORT
from kink.wire.errors import DecodeError

_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BYTE_ORDER = 0x1A2B3C4D
_PCAPNG_IDB = 1
_PCAPNG_PB = 2  # obsolete Packet Block
_PCAPNG_SPB = 3
_PCAPNG_EPB = 6
_OPT_TSRESOL = 9
_OPT_TSOFFSET = 14

_LINK_ETHERNET = 1
_LINK_RAW = 101
_LINK_LINUX_SLL = 113
_LINK_LINUX_SLL2 = 276
_LINK_IPV4 = 228
_LINK_IPV6 = 229

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETH_VLAN = frozenset({0x8100, 0x88A8})
_IPPROTO_UDP = 17
_IPV6_EXTENSIONS = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options


@dataclass(frozen=True, slots=True)
class CapturedDatagram:
    """A UDP datagram of the capture; frame counts packet records from 1, as Wireshark does."""

    frame: int
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes
    truncated: bool


def read_capture(data: bytes, port: int = KINK_PORT) -> Iterator[CapturedDatagram]:
    """The UDP datagrams to or from `port` in a pcap or pcapng file's contents."""
    if len(data) < 4:
        raise DecodeError(0, "too short for a capture file")
    magic_le = struct.unpack_from("<I", data)[0]
    if magic_le == _PCAPNG_SHB:
        frames = _pcapng_frames(data)
    elif magic_le in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
        frames = _pcap_frames(data, "<")
    elif struct.unpack_from(">I", data)[0] in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
        frames = _pcap_frames(data, ">")
    else:
        raise DecodeError(0, "neither a pcap nor a pcapng file")
    for number, (time, link, frame) in enumerate(frames, 1):
        datagram = _udp(link, frame)
        if datagram is None:
            continue
        src, sport, dst, dport, payload, truncated = datagram
        if port in (sport, dport):
            yield CapturedDatagram(number, time, src, sport, dst, dport, payload, truncated)


_Frame = tuple[float, int, bytes]  # time, link type, captured octets


def _pcap_frames(data: bytes, order: str) -> Iterator[_Frame]:
    if len(data) < 24:
        raise DecodeError(0, "truncated pcap file header")
    magic, _, _, _, _, _, link = struct.unpack_from(order + "IHHiIII", data)
    scale = 1e-9 if magic == _PCAP_MAGIC_NS else 1e-6
    record = struct.Struct(order + "IIII")
    off = 24
    while off < len(data):
        if len(data) - off < 16:
            raise DecodeError(off, "truncated pcap record header")
        seconds, fraction, captured, _ = record.unpack_from(data, off)
        if captured > len(data) - off - 16:
            raise DecodeError(off + 8, f"pcap record of {captured} octets beyond the file")
        off += 16
        yield seconds + fraction * scale, link & 0xFFFF, data[off : off + captured]
        off += captured


@dataclass(frozen=True, slots=True)
class _Interface:
    link: int
    resolution: float  # seconds per timestamp unit (if_tsresol; microseconds by default)
    offset: int  # seconds to add (if_tsoffset)


def _pcapng_frames(data: bytes) -> Iterator[_Frame]:
    order = "<"
    interfaces: list[_Interface] = []
    off = 0
    while off < len(data):
        if len(data) - off < 12:
            raise DecodeError(off, "truncated pcapng block header")
        kind = struct.unpack_from(order + "I", data, off)[0]
        if kind == _PCAPNG_SHB:  # the same in both byte orders
            # A new section may switch byte order; its byte-order magic tells which.
            if len(data) - off < 16:
                raise DecodeError(off, "truncated Section Header Block")
            bom = data[off + 8 : off + 12]
            if bom == struct.pack("<I", _PCAPNG_BYTE_ORDER):
                order = "<"
            elif bom == struct.pack(">I", _PCAPNG_BYTE_ORDER):
                order = ">"
            else:
                raise DecodeError(off + 8, "bad pcapng byte-order magic")
            interfaces = []
        length = struct.unpack_from(order + "I", data, off + 4)[0]
        if length < 12 or length % 4 or length > len(data) - off:
            raise DecodeError(off + 4, f"pcapng block length {length}")
        if struct.unpack_from(order + "I", data, off + length - 4)[0] != length:
            raise DecodeError(off + length - 4, "pcapng block lengths disagree")
        body, end = off + 8, off + length - 4
        if kind == _PCAPNG_IDB:
            interfaces.append(_interface(data, order, body, end))
        elif kind in (_PCAPNG_EPB, _PCAPNG_PB):
            yield _packet_block(data, order, kind, body, end, interfaces)
        elif kind == _PCAPNG_SPB:
            if end - body < 4 or not interfaces:
                raise DecodeError(off, "Simple Packet Block without interface or length")
            original = struct.unpack_from(order + "I", data, body)[0]
            captured = min(original, end - body - 4)
            frame = data[body + 4 : body + 4 + captured]
            yield 0.0, interfaces[0].link, frame
        off += length


def _interface(data: bytes, order: str, body: int, end: int) -> _Interface:
    if end - body < 8:
        raise DecodeError(body, "truncated Interface Description Block")
    link = struct.unpack_from(order + "H", data, body)[0]
    resolution, offset = 1e-6, 0
    off = body + 8
    while end - off >= 4:
        code, length = struct.unpack_from(order + "HH", data, off)
        if code == 0:
            break
        if length > end - off - 4:
            raise DecodeError(off, "pcapng option beyond its block")
        value = data[off + 4 : off + 4 + length]
        if code == _OPT_TSRESOL and length == 1:
            exponent = value[0] & 0x7F
            resolution = 2.0**-exponent if value[0] & 0x80 else 10.0**-exponent
        elif code == _OPT_TSOFFSET and length == 8:
            offset = struct.unpack_from(order + "q", value)[0]
        off += 4 + ((length + 3) & ~3)
    return _Interface(link, resolution, offset)


def _packet_block(
    data: bytes, order: str, kind: int, body: int, end: int, interfaces: list[_Interface]
) -> _Frame:
    if end - body < 20:
        raise DecodeError(body, "truncated packet block")
    if kind == _PCAPNG_EPB:
        index, high, low, captured = struct.unpack_from(order + "IIII", data, body)
    else:
        index, _, high, low, captured = struct.unpack_from(order + "HHIII", data, body)
    if index >= len(interfaces):
        raise DecodeError(body, f"packet of undescribed interface {index}")
    if captured > end - body - 20:
        raise DecodeError(body + 12, f"captured length {captured} beyond its block")
    interface = interfaces[index]
    time = interface.offset + ((high << 32) | low) * interface.resolution
    return time, interface.link, data[body + 20 : body + 20 + captured]


_Udp = tuple[str, int, str, int, bytes, bool]


def _udp(link: int, frame: bytes) -> _Udp | None:
    if link == _LINK_ETHERNET:
        if len(frame) < 14:
            return None
        ethertype, off = struct.unpack_from(">H", frame, 12)[0], 14
        while ethertype in _ETH_VLAN and len(frame) - off >= 4:
            ethertype, off = struct.unpack_from(">H", frame, off + 2)[0], off + 4
    elif link == _LINK_LINUX_SLL:
        if len(frame) < 16:
            return None
        ethertype, off = struct.unpack_from(">H", frame, 14)[0], 16
    elif link == _LINK_LINUX_SLL2:
        if len(frame) < 20:
            return None
        ethertype, off = struct.unpack_from(">H", frame, 0)[0], 20
    elif link in (_LINK_RAW, _LINK_IPV4, _LINK_IPV6):
        if not frame:
            return None
        version = frame[0] >> 4
        ethertype, off = (_ETH_IPV4 if version == 4 else _ETH_IPV6 if version == 6 else 0), 0
    else:
        return None
    if ethertype == _ETH_IPV4:
        return _ipv4(frame, off)
    if ethertype == _ETH_IPV6:
        return _ipv6(frame, off)
    return None


def _ipv4(frame: bytes, off: int) -> _Udp | None:
    if len(frame) - off < 20 or frame[off] >> 4 != 4:
        return None
    header = (frame[off] & 0x0F) * 4
    total, fragment, protocol = struct.unpack_from(">H2xHxB", frame, off + 2)
    if protocol != _IPPROTO_UDP or fragment & 0x3FFF or header < 20:
        return None  # not UDP, or a fragment (MF set or non-zero offset)
    src = str(ipaddress.IPv4Address(frame[off + 12 : off + 16]))
    dst = str(ipaddress.IPv4Address(frame[off + 16 : off + 20]))
    return _udp_datagram(frame, off + header, off + total, src, dst)


def _ipv6(frame: bytes, off: int) -> _Udp | None:
    if len(frame) - off < 40 or frame[off] >> 4 != 6:
        return None
    payload_length, next_header = struct.unpack_from(">HB", frame, off + 4)
    src = str(ipaddress.IPv6Address(frame[off + 8 : off + 24]))
    dst = str(ipaddress.IPv6Address(frame[off + 24 : off + 40]))
    end = off + 40 + payload_length
    off += 40
    while next_header in _IPV6_EXTENSIONS:
        if len(frame) - off < 8:
            return None
        next_header, units = frame[off], frame[off + 1]
        off += 8 + units * 8
    if next_header != _IPPROTO_UDP:
        return None  # includes fragments (44): not reassembled
    return _udp_datagram(frame, off, end, src, dst)


def _udp_datagram(frame: bytes, off: int, ip_end: int, src: str, dst: str) -> _Udp | None:
    if len(frame) - off < 8:
        return None
    sport, dport, length = struct.unpack_from(">HHH", frame, off)
    if length < 8 or off + length > ip_end:
        return None
    end = off + length
    return src, sport, dst, dport, frame[off + 8 : end], end > len(frame)
