"""What the kinkctl tests share: the racoon2 captures, the keytabs that open them, the keys
the kernel got, and a way to run kinkctl in-process or to write a capture of one's own.

data/host-a.keytab and data/host-b.keytab are copies of kerberos/host-*.keytab in
/work/shared/interop/racoon2-captures/ (README.md there): every ticket in the captures is for
host-b, so host-b.keytab opens them all and host-a.keytab none.
"""

import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from kink.ctl.cli import main
from tests.wire.captures import DATA as WIRE_DATA

DATA = Path(__file__).with_name("data")
HOST_A_KEYTAB = str(DATA / "host-a.keytab")
HOST_B_KEYTAB = str(DATA / "host-b.keytab")
CAPTURES = {"basic": str(WIRE_DATA / "basic-a.pcap"), "krberr": str(WIRE_DATA / "krberr-a.pcap")}
INITIATOR, RESPONDER = "198.51.100.1", "198.51.100.2"

# Ticket session keys (etype 18) from the captures' README.md.
SESSION_KEYS = {
    "basic": "6f6e273c227eaace58145a81907c0bf8e0dcc0623079893dc4ee0d916c81e346",
    "krberr": "062464bb0eca39c618d6e5d148e7f0a1ea2e47e23dd30b23f77b03863ef4f377",
}

# SPI -> (enc key, auth key) as `ip xfrm state` showed them (basic/sa-after-recreate.txt).
KERNEL_KEYS = {
    "0223b6e6": ("298728cc69b5ccc265dc1103de793c8e", "ee80527bb3ceed206203e98a5023b09cd853e1c0"),
    "05833150": ("29a9c4440929d64a1fdedc7654a64387", "fc00867b757cd1cb9e8a7a979e394c24f15bd213"),
    "09a1728e": ("ab6872cd823e915dea9dfcaa769dafb6", "ffb01f63a7d466df62b007874b3133ee83c06a1a"),
    "0aef87f8": ("730c136d307ef45c625fd5f1c5406891", "82a35ee70230b78f79cf585cf4da7f9e441b4e8e"),
}

BASIC_FRAMES = [5, 6, 10, 11, 12, 13, 14, 15, 17, 18]
KRBERR_FRAMES = list(range(5, 15))


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    """kinkctl with these arguments, in this process."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def _block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", kind, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def pcapng(datagrams: list[tuple[str, str, bytes]], start: float = 1795760800.0) -> bytes:
    """A pcapng file (raw IPv4 link) holding UDP 910 -> 910 datagrams (src, dst, payload),
    one second apart from `start`."""
    out = [
        _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
        _block(1, struct.pack("<HHI", 101, 0, 0)),  # LINKTYPE_RAW, microsecond timestamps
    ]
    for i, (src, dst, payload) in enumerate(datagrams):
        udp = struct.pack(">HHHH", 910, 910, 8 + len(payload), 0) + payload
        ip = struct.pack(">BBHHHBBH", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0)
        frame = ip + ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + udp
        ts = int((start + i) * 1_000_000)
        head = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
        out.append(_block(6, head + frame))
    return b"".join(out)
