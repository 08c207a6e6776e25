"""KINK's UDP transport (RFC 4430 §9: port 910, IPv4 and IPv6).

Sockets are opened before the privilege drop (port 910 is privileged) or received from systemd
(privileges.systemd_sockets), exempted from IPsec (bypass_ipsec), then handed to Transport,
which only moves bytes: every datagram goes to the daemon's callback, every send goes out of the
socket of the right family (the one bound to the engine's address when there are several).
"""

import errno
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable, Sequence

import trio

from kink.engine.events import Address

log = logging.getLogger("kinkd.transport")

MAX_DATAGRAM = 65535

# <linux/in.h>, <linux/in6.h>, <linux/xfrm.h>: a socket policy is one struct
# xfrm_userpolicy_info (168 octets on every ABI kinkd runs on); sel.family is at offset 40,
# dir at 160 and action at 161 (XFRM_POLICY_ALLOW = 0, so zero bytes there).
_IP_XFRM_POLICY = 17
_IPV6_XFRM_POLICY = 35
_POLICY_SIZE = 168
_SEL_FAMILY = 40
_DIR = 160
_XFRM_POLICY_IN, _XFRM_POLICY_OUT = 0, 1


def open_sockets(addresses: Sequence[str], port: int) -> list[socket.socket]:
    """UDP sockets bound to `addresses` at `port`; () means every IPv4 and IPv6 address
    (IPv6 only where the host has it). OSError if a configured address cannot be bound."""
    wanted = list(addresses) or ["0.0.0.0", "::"]
    out: list[socket.socket] = []
    try:
        for text in wanted:
            family = socket.AF_INET6 if ipaddress.ip_address(text).version == 6 else socket.AF_INET
            try:
                sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            except OSError as exc:
                if not addresses and exc.errno == errno.EAFNOSUPPORT:
                    log.info("no IPv6 on this host: IPv4 only")
                    continue
                raise
            try:
                if family == socket.AF_INET6:
                    # One socket per family: "::" must not also take the IPv4 traffic.
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((text, port))
            except OSError:
                sock.close()
                raise
            out.append(sock)
    except BaseException:
        for sock in out:
            sock.close()
        raise
    bypass_ipsec(out)
    return out


def bypass_ipsec(sockets: Sequence[socket.socket]) -> None:
    """Per-socket "allow" policies in both directions, as IKE daemons set on theirs: KINK's
    own datagrams must not need the SAs they negotiate (a host-to-host policy covers port 910
    too: its first CREATE would only trigger another ACQUIRE). Needs CAP_NET_ADMIN, so it is
    done before the privilege drop; without it a warning says what will not work."""
    for sock in sockets:
        if sock.family == socket.AF_INET:
            level, option = socket.IPPROTO_IP, _IP_XFRM_POLICY
        else:
            level, option = socket.IPPROTO_IPV6, _IPV6_XFRM_POLICY
        policy = bytearray(_POLICY_SIZE)
        struct.pack_into("=H", policy, _SEL_FAMILY, sock.family)
        try:
            for direction in (_XFRM_POLICY_OUT, _XFRM_POLICY_IN):
                policy[_DIR] = direction
                sock.setsockopt(level, option, bytes(policy))
        except OSError as exc:
            log.warning(
                "KINK socket %s not exempt from IPsec policies (%s): policies covering the "
                "peers' port %d will block negotiation",
                _host(sock.getsockname())[0],
                exc.strerror,
                _host(sock.getsockname())[1],
            )


def _host(address: object) -> tuple[str, int]:
    host, port = address[:2]  # type: ignore[index]
    return str(host).split("%", 1)[0], int(port)


class Transport:
    """The daemon's UDP sockets; serve() delivers datagrams until cancelled."""

    def __init__(self, sockets: Sequence[socket.socket], local_address: str) -> None:
        if not sockets:
            raise ValueError("no UDP socket to serve KINK on")
        self._sockets = [trio.socket.from_stdlib_socket(s) for s in sockets]
        self._by_family: dict[int, trio.socket.SocketType] = {}
        local = ipaddress.ip_address(local_address)
        for sock in self._sockets:
            bound = ipaddress.ip_address(_host(sock.getsockname())[0])
            if sock.family not in self._by_family or bound == local:
                self._by_family[sock.family] = sock
        self.received = 0
        self.sent = 0
        self.send_errors = 0

    def local_addresses(self) -> list[tuple[str, int]]:
        return [_host(s.getsockname()) for s in self._sockets]

    async def serve(self, deliver: Callable[[bytes, Address], None]) -> None:
        async with trio.open_nursery() as nursery:
            for sock in self._sockets:
                nursery.start_soon(self._receive, sock, deliver)

    async def _receive(
        self, sock: trio.socket.SocketType, deliver: Callable[[bytes, Address], None]
    ) -> None:
        while True:
            try:
                data, address = await sock.recvfrom(MAX_DATAGRAM)
            except OSError as exc:
                # ICMP port unreachable from an earlier send shows up here on Linux.
                log.debug("receive: %s", exc.strerror)
                continue
            self.received += 1
            deliver(data, _host(address))

    async def send(self, data: bytes, peer: Address) -> None:
        family = socket.AF_INET6 if ipaddress.ip_address(peer[0]).version == 6 else socket.AF_INET
        sock = self._by_family.get(family)
        if sock is None:
            self.send_errors += 1
            log.warning("no socket to reach %s", peer[0])
            return
        try:
            await sock.sendto(data, peer)
        except OSError as exc:
            # Lost datagrams are the protocol's business (retransmission, §9), not a crash.
            self.send_errors += 1
            log.info("send to %s: %s", peer[0], exc.strerror)
            return
        self.sent += 1

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()
