"""The demo proper, run inside user-mode Linux as root (`python -m demo.inside`).

Two hosts a and b are network namespaces joined by a veth pair. The MIT KDC runs in the root
namespace on loopback; so do the two kink engines, in this process, handing their KINK
datagrams to each other directly. Each host's SAs and policies are installed by its own
kink_privsep helper running in its namespace; the UDP traffic then really crosses the veth
pair as ESP.
"""

import contextlib
import re
import socket
import sys
import time
from pathlib import Path

from demo import netns
from demo.hosts import Helper, Host, drain, install_policies, kerberos, make_host
from kink.engine import PeerConfig, ProposalSpec, TransformSpec
from kink.engine.events import Initiate, NegotiationFailed, SaEstablished
from kink.wire import decode
from kink.wire.constants import MessageType
from kink.wire.ipsec_doi import EspTransform, ProtocolId
from tests.support.kdc import Realm

REALM = "KINK.DEMO"
HOSTS = (("a", "198.51.100.1"), ("b", "198.51.100.2"))
PREFIX_LEN = 24
UDP_PORT = 5000
ROUNDS = 5  # a -> b datagrams, each echoed back b -> a
# RFC 4106 AES-GCM with a 16-octet ICV and a 128-bit key: one ESP transform, no separate MAC.
PROPOSAL = ProposalSpec((TransformSpec(ProtocolId.ESP, EspTransform.AES_GCM_16, None, 128),))
# Key material in `ip xfrm state` output (hex longer than any SPI or reqid): never printed.
_KEY_HEX = re.compile(r"\b0x[0-9a-f]{16,}\b")
_SAY_PREFIX = "demo: "


class DemoFailed(Exception):
    pass


def say(text: str = "") -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say()
    say(f"{_SAY_PREFIX}{title}")


def redacted(ip_output: str) -> str:
    return _KEY_HEX.sub("<key not shown>", ip_output)


def indented(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.rstrip("\n").splitlines())


def describe(data: bytes) -> str:
    msg = decode(data)
    kind = msg.type.name if isinstance(msg.type, MessageType) else str(msg.type)
    payloads = [type(p).__name__ for p in msg.payloads]
    if msg.ciphertext is not None:
        payloads.append("KINK_ENCRYPT")
    flags = " ACKREQ" if msg.ackreq else ""
    return f"{kind}{flags} xid={msg.xid:#010x} {len(data)} octets [{', '.join(payloads)}]"


def exchange(hosts: dict[str, Host]) -> int:
    """Deliver datagrams between the engines until none is left; how many were delivered."""
    delivered = 0
    busy = True
    while busy:
        busy = False
        for host in hosts.values():
            drain(host)
            outbox, host.outbox = host.outbox, []
            for datagram in outbox:
                busy = True
                target = next(h for h in hosts.values() if h.address == datagram.peer[0])
                say(f"    {host.name} -> {target.name}  {describe(datagram.data)}")
                target.engine.datagram_received(
                    datagram.data, (host.address, datagram.peer[1]), time.monotonic()
                )
                delivered += 1
    return delivered


def established(host: Host) -> SaEstablished:
    for notice in host.notices:
        if isinstance(notice, NegotiationFailed):
            raise DemoFailed(f"{host.name}: {notice.command} failed: {notice.reason}")
    found = [n for n in host.notices if isinstance(n, SaEstablished)]
    if len(found) != 1:
        raise DemoFailed(f"{host.name}: {len(found)} SAs established, expected 1")
    return found[0]


def wire_check(wire: socket.socket, host: Host, peer: Host, spi: int, cleartext: bytes) -> None:
    """Every packet from `peer` that reached `host`'s veth was ESP under `spi` (IP protocol
    50, RFC 4303 §2: the SPI leads the payload), with no cleartext in it."""
    wire.setblocking(False)
    packets = []
    with contextlib.suppress(BlockingIOError):
        while True:
            packets.append(wire.recv(4096))
    source = socket.inet_aton(peer.address)
    arrived = [p for p in packets if p[12:16] == source]
    esp = [p for p in arrived if p[9] == socket.IPPROTO_ESP]
    header = 4 * (arrived[0][0] & 0x0F) if arrived else 0
    spis = {int.from_bytes(p[header : header + 4], "big") for p in esp}
    if len(esp) < ROUNDS or len(esp) != len(arrived) or spis != {spi}:
        raise DemoFailed(f"{host.name}: {len(arrived)} packets from {peer.name}, {len(esp)} ESP")
    if any(cleartext in p for p in esp):
        raise DemoFailed(f"{host.name}: cleartext on the wire")
    say(
        f"    on veth-{host.name}: {len(esp)} packets from {peer.name}, all ESP "
        f"(SPI {spi:#010x}), no cleartext"
    )


def traffic(a: Host, b: Host, spi_to_a: int, spi_to_b: int) -> int:
    """ROUNDS datagrams a -> b, each echoed b -> a; returns how many arrived intact."""
    sock_a = netns.udp_socket(a.name, a.address, UDP_PORT)
    sock_b = netns.udp_socket(b.name, b.address, UDP_PORT)
    wire_a, wire_b = netns.wire_socket(a.name, "veth-a"), netns.wire_socket(b.name, "veth-b")
    carried = 0
    with sock_a, sock_b, wire_a, wire_b:
        sock_a.settimeout(5.0)
        sock_b.settimeout(5.0)
        for i in range(1, ROUNDS + 1):
            ping = f"kink demo datagram {i} from a".encode()
            sock_a.sendto(ping, (b.address, UDP_PORT))
            data, source = sock_b.recvfrom(2048)
            if data != ping or source[0] != a.address:
                raise DemoFailed(f"b received {data!r} from {source}")
            pong = data.replace(b"from a", b"from b")
            sock_b.sendto(pong, source)
            back, origin = sock_a.recvfrom(2048)
            if back != pong or origin[0] != b.address:
                raise DemoFailed(f"a received {back!r} from {origin}")
            say(f"    a -> b {len(ping)} octets, b -> a {len(pong)} octets: {pong.decode()!r}")
            carried += 2
        wire_check(wire_b, b, a, spi_to_b, b"kink demo")
        wire_check(wire_a, a, b, spi_to_a, b"kink demo")
    return carried


def counters(host: Host) -> list[tuple[str, int, int, int]]:
    """(direction, spi, packets, bytes) of the host's SAs, as the kernel counts them (through
    the helper's dump)."""
    rows = []
    for sa in host.helper.call("dump", {"what": "sa"})["sas"]:
        direction = "in " if sa["dst"] == host.address else "out"
        c = sa["counters"]
        rows.append((direction, int(sa["spi"]), int(c["packets"]), int(c["bytes"])))
    return sorted(rows)


def run(work: Path) -> int:
    step("user-mode Linux kernel up; hosts a and b are network namespaces on a veth pair")
    netns.veth_pair(*HOSTS, prefix_len=PREFIX_LEN)
    for name, address in HOSTS:
        say(f"    {name}: {address}/{PREFIX_LEN}")

    helpers = {name: Helper.spawn(name, work) for name, _ in HOSTS}
    realm = Realm.start(work / "realm", name=REALM)
    try:
        return _negotiate_and_send(realm, helpers, work)
    finally:
        for helper in helpers.values():
            helper.stop()
        realm.stop()


def _negotiate_and_send(realm: Realm, helpers: dict[str, Helper], work: Path) -> int:
    step(f"Kerberos realm {REALM} created (MIT krb5kdc on 127.0.0.1:{realm.port})")
    identities = {}
    for name, _ in HOSTS:
        principal, keytab = realm.add_host(f"{name}.kink.demo")
        identities[name] = (principal, keytab)
        say(f"    {principal}  keytab {keytab.name}")

    step("kink_privsep helpers started, one per namespace (XFRM backend, CAP_NET_ADMIN only)")
    for helper in helpers.values():
        helper.connect()
        lo, hi = helper.hello["reqid_range"]
        say(f"    {helper.netns}: {helper.socket_path}, reqids {lo:#x}-{hi:#x}")

    hosts: dict[str, Host] = {}
    addresses = dict(HOSTS)
    peers = {}
    for epoch, (name, address) in enumerate(HOSTS, start=1):
        other = "b" if name == "a" else "a"
        principal, keytab = identities[name]
        credentials, port = kerberos(realm.krb5_conf, principal, keytab, work / f"rcache-{name}")
        peers[name] = PeerConfig(
            name=other,
            address=addresses[other],
            principal=identities[other][0],
            policies=(),  # none: host to host between the two addresses
            proposals=(PROPOSAL,),
        )
        hosts[name] = make_host(
            name, address, principal, credentials, port, peers[name], helpers[name], epoch
        )
    step("engines configured: proposal ESP AES-GCM-16 (128-bit key), transport mode")
    for name, host in hosts.items():
        for policy in install_policies(host, peers[name]):
            sel = policy["selector"]
            say(f"    {name}: policy {policy['dir']:3} {sel['src']} -> {sel['dst']} requires ESP")

    step("CREATE exchange (RFC 4430 §3.2)")
    say("    KINK messages exchanged in-process; the daemon (kinkd) will carry them over UDP 910")
    a, b = hosts["a"], hosts["b"]
    a.engine.request(Initiate("b"), time.monotonic())
    exchange(hosts)
    for host in (a, b):
        sa = established(host)
        role = "initiator" if sa.initiator else "responder"
        for _, inbound, outbound in sa.spis:
            say(f"    {host.name} ({role}): ESP SPI in {inbound:#010x}, out {outbound:#010x}")

    step("SAs installed by kink_privsep (`ip xfrm state`, keys not shown)")
    for name, _ in HOSTS:
        say(f"  [{name}]")
        say(indented(redacted(netns.ip("-n", name, "xfrm", "state"))))

    step(f"UDP port {UDP_PORT} datagrams between a and b")
    ((_, spi_to_a, spi_to_b),) = established(a).spis
    carried = traffic(a, b, spi_to_a, spi_to_b)

    step("ESP counters of each SA (kernel, through kink_privsep dump)")
    for host in (a, b):
        rows = counters(host)
        if len(rows) != 2:
            raise DemoFailed(f"{host.name} holds {len(rows)} SAs, expected 2")
        for direction, spi, packets, octets in rows:
            say(f"    {host.name} {direction} SPI {spi:#010x}: {packets} packets, {octets} bytes")
            if packets < ROUNDS:
                raise DemoFailed(f"{host.name}: SA {spi:#x} counted {packets} packets")
    return carried


def main() -> None:
    work = Path("/run/kink-demo")
    work.mkdir(parents=True, exist_ok=True)
    try:
        carried = run(work)
    except Exception as exc:  # every failure ends in the one FAILED line
        say(f"{_SAY_PREFIX}FAILED: {type(exc).__name__}: {exc}")
        sys.exit(1)
    say()
    say(f"{_SAY_PREFIX}OK — {carried} datagrams carried over ESP between a and b")


if __name__ == "__main__":
    main()
