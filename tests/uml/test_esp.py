"""The UML kernel really does ESP: transport-mode SAs between two namespaces, over IPv4 and IPv6,
carry UDP encrypted (a capture on the link shows ESP, never the payload), and every algorithm
kink negotiates installs. One boot for the module; the host checks what it left in $UML_OUT."""

from __future__ import annotations

import re
import shlex
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.uml import require_uml, run_in_uml

pytestmark = pytest.mark.uml

A4, B4 = "192.0.2.1", "192.0.2.2"
A6, B6 = "2001:db8::1", "2001:db8::2"
PORT = 5000
MARKER = b"kink-uml-plaintext-marker"


def _key(nbytes: int) -> str:
    return "0x" + "5a" * nbytes


@dataclass(frozen=True)
class _Sa:
    src: str
    dst: str
    spi: int
    algorithms: str  # the `ip xfrm state add` algorithm arguments


CBC_SHA256 = f"enc 'cbc(aes)' {_key(16)} auth-trunc 'hmac(sha256)' {_key(32)} 128"
GCM = f"aead 'rfc4106(gcm(aes))' {_key(20)} 128"
# Each direction of each family, with the two algorithm families kink uses most.
TRAFFIC_SAS = (
    _Sa(A4, B4, 0x1001, CBC_SHA256),
    _Sa(B4, A4, 0x1002, GCM),
    _Sa(A6, B6, 0x2001, GCM),
    _Sa(B6, A6, 0x2002, CBC_SHA256),
)

# Only installed (in a third namespace): the kernel must build each transform.
ALGORITHM_SAS = {
    0x3001: f"enc 'cbc(aes)' {_key(16)} auth-trunc 'hmac(sha1)' {_key(20)} 96",
    0x3002: f"enc 'cbc(aes)' {_key(24)} auth-trunc 'hmac(sha256)' {_key(32)} 128",
    0x3003: f"enc 'cbc(aes)' {_key(32)} auth-trunc 'hmac(sha384)' {_key(48)} 192",
    0x3004: f"enc 'cbc(aes)' {_key(32)} auth-trunc 'hmac(sha512)' {_key(64)} 256",
    0x3005: f"aead 'rfc4106(gcm(aes))' {_key(20)} 64",
    0x3006: f"aead 'rfc4106(gcm(aes))' {_key(28)} 96",
    0x3007: f"aead 'rfc4106(gcm(aes))' {_key(36)} 128",
    0x3008: f"enc 'ecb(cipher_null)' '' auth-trunc 'hmac(sha256)' {_key(32)} 128",
}

_ECHO_SERVER = f"""
import select, socket
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
         socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)]
socks[0].bind(("{B4}", {PORT}))
socks[1].bind(("{B6}", {PORT}))
open("/tmp/echo-ready", "w").close()
while True:
    for s in select.select(socks, [], [])[0]:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)
"""

# Sends the marker to both addresses until each echo came back (the first datagrams may be
# lost while the server starts), then prints what returned.
_CLIENT = f"""
import select, socket, time
targets = {{("{B4}", {PORT}): socket.AF_INET, ("{B6}", {PORT}): socket.AF_INET6}}
socks = {{dst: socket.socket(family, socket.SOCK_DGRAM) for dst, family in targets.items()}}
echoed = {{}}
deadline = time.monotonic() + 30
while len(echoed) < len(socks) and time.monotonic() < deadline:
    for dst, s in socks.items():
        if dst not in echoed:
            s.sendto({MARKER!r}, dst)
    for s in select.select(list(socks.values()), [], [], 0.5)[0]:
        data, peer = s.recvfrom(2048)
        echoed[peer[:2]] = data
for dst in socks:
    print(dst[0], echoed.get(dst))
"""


def _script() -> str:
    lines = [
        "set -eu",
        "ip netns add a",
        "ip netns add b",
        "ip netns add c",
        "ip link add va netns a type veth peer name vb netns b",
        f"ip -n a addr add {A4}/24 dev va",
        # nodad: usable at once, not after duplicate address detection.
        f"ip -n a addr add {A6}/64 dev va nodad",
        f"ip -n b addr add {B4}/24 dev vb",
        f"ip -n b addr add {B6}/64 dev vb nodad",
        "ip -n a link set va up",
        "ip -n b link set vb up",
    ]
    for sa in TRAFFIC_SAS:
        for ns in ("a", "b"):
            lines.append(
                f"ip -n {ns} xfrm state add src {sa.src} dst {sa.dst} proto esp "
                f"spi {sa.spi:#x} mode transport {sa.algorithms}"
            )
        sender, receiver = ("a", "b") if sa.src in (A4, A6) else ("b", "a")
        tmpl = f"tmpl src {sa.src} dst {sa.dst} proto esp mode transport"
        lines.append(f"ip -n {sender} xfrm policy add src {sa.src} dst {sa.dst} dir out {tmpl}")
        lines.append(f"ip -n {receiver} xfrm policy add src {sa.src} dst {sa.dst} dir in {tmpl}")
    for spi, algorithms in ALGORITHM_SAS.items():
        lines.append(
            f"ip -n c xfrm state add src {A4} dst {B4} proto esp spi {spi:#x} mode transport "
            f"{algorithms} || echo 'failed: spi {spi:#x}'"
        )
    lines.append(
        f"ip -n c xfrm state add src {A4} dst {B4} proto ah spi 0x3100 mode transport "
        f"auth-trunc 'hmac(sha256)' {_key(32)} 128 || echo 'failed: ah'"
    )
    lines += [
        'ip -n c xfrm state > "$UML_OUT/algorithms.txt"',
        # -Z root: tcpdump would drop to its own user, which cannot write to $UML_OUT.
        # --immediate-mode: else packets wait in the capture ring for a block timeout and the
        # SIGINT below ends tcpdump before it wrote them.
        "ip netns exec b tcpdump -Z root -n -U --immediate-mode -i vb"
        ' -w "$UML_OUT/vb.pcap" 2> /tmp/tcpdump.err &',
        "tcpdump_pid=$!",
        "until grep -q 'listening on' /tmp/tcpdump.err; do kill -0 $tcpdump_pid; sleep 0.1; done",
        f"ip netns exec b python -c {shlex.quote(_ECHO_SERVER)} &",
        "server_pid=$!",
        "until [ -e /tmp/echo-ready ]; do kill -0 $server_pid; sleep 0.1; done",
        f'ip netns exec a python -c {shlex.quote(_CLIENT)} > "$UML_OUT/echoes.txt"',
        "kill $server_pid",
        "kill -INT $tcpdump_pid",
        "wait $tcpdump_pid",
        'ip -n a -s xfrm state > "$UML_OUT/states.txt"',
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def uml_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_uml()
    out = tmp_path_factory.mktemp("uml-esp")
    result = run_in_uml(_script(), out_dir=out)
    assert result.returncode == 0, result.output
    assert "failed" not in result.output, result.output
    return out


def test_udp_echo_crosses_esp_both_ways(uml_out: Path) -> None:
    assert (uml_out / "echoes.txt").read_text().splitlines() == [
        f"{B4} {MARKER!r}",
        f"{B6} {MARKER!r}",
    ]


def _packet_counts(states: str) -> dict[int, int]:
    """SPI -> packet counter, from `ip -s xfrm state` output."""
    counts = {}
    for block in re.split(r"^src ", states, flags=re.MULTILINE)[1:]:
        spi = re.search(r"\bspi 0x([0-9a-f]+)", block)
        packets = re.search(r"(\d+)\(packets\)", block)
        assert spi and packets, block
        counts[int(spi.group(1), 16)] = int(packets.group(1))
    return counts


def test_sa_counters_count_the_traffic(uml_out: Path) -> None:
    counts = _packet_counts((uml_out / "states.txt").read_text())
    assert set(counts) == {sa.spi for sa in TRAFFIC_SAS}
    assert all(n > 0 for n in counts.values()), counts


def _ip_packets(pcap: bytes) -> list[tuple[int, bytes]]:
    """(IP protocol or IPv6 next header, IP packet) of each IP frame in a classic pcap file
    (link type Ethernet, microsecond timestamps, little endian: as tcpdump writes it on x86)."""
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", pcap)
    assert (magic, linktype) == (0xA1B2C3D4, 1)
    packets = []
    offset = 24
    while offset < len(pcap):
        _, _, caplen, _ = struct.unpack_from("<IIII", pcap, offset)
        frame = pcap[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        (ethertype,) = struct.unpack_from("!H", frame, 12)
        ip = frame[14:]
        if ethertype == 0x0800:
            packets.append((ip[9], ip))
        elif ethertype == 0x86DD:
            packets.append((ip[6], ip))
    return packets


def test_the_link_carries_esp_not_plaintext(uml_out: Path) -> None:
    packets = _ip_packets((uml_out / "vb.pcap").read_bytes())
    # ESP (IP protocol 50) and, in clear, only IPv6's own ICMPv6 (58) and MLD reports behind a
    # hop-by-hop header (0): no UDP, no marker.
    protocols = {proto for proto, _ in packets}
    assert protocols - {0, 58} == {50}, protocols
    assert not any(MARKER in ip for _, ip in packets)
    spis = set()
    for proto, ip in packets:
        if proto == 50:
            header = 20 if ip[0] >> 4 == 4 else 40
            spis.add(struct.unpack_from("!I", ip, header)[0])
    assert spis == {sa.spi for sa in TRAFFIC_SAS}


def test_every_algorithm_installs(uml_out: Path) -> None:
    states = (uml_out / "algorithms.txt").read_text()
    installed = {int(spi, 16) for spi in re.findall(r"\bspi 0x([0-9a-f]+)", states)}
    assert installed == {*ALGORITHM_SAS, 0x3100}
