"""Just enough pcap reading to pull KINK AP-REQs out of the racoon2 captures.

Classic little-endian microsecond pcap, Ethernet II, IPv4, UDP (what those captures are).
"""

import struct
from pathlib import Path

_GLOBAL_HEADER = 24
_RECORD_HEADER = 16
_ETHERNET_HEADER = 14
_UDP_HEADER = 8
_KINK_HEADER = 16  # RFC 4430 §4
_PAYLOAD_HEADER = 4  # Next Payload, RESERVED, Payload Length
_EPOCH = 4
KINK_AP_REQ = 1  # payload types (RFC 4430 §4.2, IANA)
KINK_KRB_ERROR = 3


def frames(path: Path) -> list[bytes]:
    """The captured frames, frame 1 first."""
    data = path.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1", "not a little-endian microsecond pcap"
    out = []
    pos = _GLOBAL_HEADER
    while pos < len(data):
        (length,) = struct.unpack_from("<I", data, pos + 8)
        out.append(data[pos + _RECORD_HEADER : pos + _RECORD_HEADER + length])
        pos += _RECORD_HEADER + length
    return out


def udp_payload(frame: bytes) -> bytes:
    ip = frame[_ETHERNET_HEADER:]
    assert ip[0] >> 4 == 4 and ip[9] == 17, "not IPv4/UDP"
    header = (ip[0] & 0x0F) * 4
    (udp_length,) = struct.unpack_from(">H", ip, header + 4)
    return ip[header + _UDP_HEADER : header + udp_length]


def first_payload(path: Path, frame_number: int) -> tuple[int, bytes]:
    """(type, value) of the first payload of the KINK message in a frame (numbered from 1)."""
    kink = udp_payload(frames(path)[frame_number - 1])
    payload_type = kink[12]  # NextPayload in the KINK header (RFC 4430 §4)
    payload = kink[_KINK_HEADER:]
    (length,) = struct.unpack_from(">H", payload, 2)
    return payload_type, payload[_PAYLOAD_HEADER:length]


def kink_ap_req(path: Path, frame_number: int) -> bytes:
    """The AP-REQ of a message starting with KINK_AP_REQ (EPOCH, then AP-REQ: RFC 4430 §4.2.1)."""
    payload_type, value = first_payload(path, frame_number)
    assert payload_type == KINK_AP_REQ
    return value[_EPOCH:]
