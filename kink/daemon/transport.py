"""KINK's UDP transport (RFC 4430 §9: port 910, IPv4 and IPv6).

Sockets are opened before the privilege drop (port 910 is privileged) or received from systemd
(privileges.systemd_sockets); either way prepare_sockets sizes their receive queues and exempts
them from IPsec, still before the drop (both may need CAP_NET_ADMIN); then they are handed to
Transport, which only moves bytes: every datagram goes to the daemon's callback, every send goes
out of the socket of the right family (the one bound to the engine's address when there are
several).

Receiving is built for floods (RFC 4430 §10: an unauthenticated datagram must cost little). A
full receive queue drops legitimate datagrams as readily as garbage, and only five
transmissions of a CREATE (§9, timer T) stand between a lost copy and a failed exchange, so:
  - each socket asks for a RECEIVE_BUFFER queue: the default (net.core.rmem_default, 208 KiB)
    holds ~250 small datagrams, 5 ms of a 50,000/s flood, less than one time slice kinkd can
    lose to another process on a shared CPU; 4 MiB rides out ~100-200 ms;
  - one wake-up of the trio loop reads up to BATCH datagrams (recvfrom_into a preallocated
    buffer until EAGAIN) instead of one trio wait per datagram, which cost more CPU than the
    engine's whole verdict on a garbage datagram.

Receiving must not hold up the answers either. A datagram's delivery runs the engine's verdict
inline (for a CREATE a ticket decryption and the key derivation, 0.3-3 ms), and a REPLY
leaves only after ~5 turns of the other tasks (the helper's writer and reader, the engine's
task again, the state writer, the outbox). Batches of 64 CREATEs took 160 ms a turn on a slow
host (user-mode Linux): the first REPLY of a burst of 200 came after ~0.9 s, past the
initiator's 1 s timer T (§9), and CREATEs were sent twice. So a turn of the receiver also ends
after SLICE seconds of deliveries, whatever their number.
"""

import errno
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable, Sequence

import trio

from kink.daemon.loop_clock import turn_time
from kink.engine.events import Address

log = logging.getLogger("kinkd.transport")

MAX_DATAGRAM = 65535
# Asked for each socket's receive queue (SO_RCVBUF; Linux doubles it for its bookkeeping). An
# unprivileged kinkd (kinkd.service) gets at most net.core.rmem_max, 208 KiB unless the host
# raises it (size_receive_buffer). Kernel memory, charged only while datagrams wait.
RECEIVE_BUFFER = 4 * 1024 * 1024
# Datagrams read per turn: enough to make the trio wait rare under a flood, few enough that
# the engine's task (and so the replies to legitimate peers) runs every ~1-2 ms.
BATCH = 64
# Seconds of deliveries per turn (checked after each one): the other tasks' turn comes at
# least this often while datagrams that cost a lot (CREATEs) are read. Not much less: each
# turn of the others is a helper message and a state save, batched over what came meanwhile;
# 1 ms (a turn per CREATE in UML) cut the burst of 200 to 70-90 pairs/s; 20 ms: 150-300.
SLICE = 0.020

# <asm-generic/socket.h>: SO_RCVBUFFORCE ignores rmem_max (CAP_NET_ADMIN); SO_MEMINFO gives
# the socket's counters, SK_MEMINFO_DROPS (the 9th u32) the datagrams the kernel dropped at
# the socket: for UDP a full queue (or a bad checksum).
_SO_RCVBUFFORCE = 33
_SO_MEMINFO = 55
_MEMINFO = struct.Struct("=9I")
_MEMINFO_DROPS = 8

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
    prepare_sockets(out)
    return out


def prepare_sockets(sockets: Sequence[socket.socket]) -> None:
    """What every KINK socket needs before the privilege drop, whichever way it came (opened
    here or by systemd): its receive queue sized (size_receive_buffer), IPsec bypassed."""
    for sock in sockets:
        size_receive_buffer(sock)
    bypass_ipsec(sockets)


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


def size_receive_buffer(sock: socket.socket) -> int:
    """Give `sock` a receive queue of RECEIVE_BUFFER octets unless it has one as large (systemd's
    ReceiveBuffer=); returns the size the kernel reports. With CAP_NET_ADMIN (kinkd started as
    root) SO_RCVBUFFORCE passes net.core.rmem_max; without it (the kinkd.service user) the kernel
    caps the size at rmem_max, which a line at info level reports."""
    have = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if have >= 2 * RECEIVE_BUFFER:
        return have
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    have = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if have < 2 * RECEIVE_BUFFER:
        log.info(
            "KINK socket %s: receive queue of %d KiB, not the %d KiB asked for "
            "(net.core.rmem_max caps it): a flood will drop more legitimate datagrams",
            _host(sock.getsockname())[0],
            have // 2048,
            RECEIVE_BUFFER // 1024,
        )
    return have


def _host(address: object) -> tuple[str, int]:
    host, port = address[:2]  # type: ignore[index]
    return str(host).split("%", 1)[0], int(port)


class Transport:
    """The daemon's UDP sockets; serve() delivers datagrams until cancelled."""

    def __init__(self, sockets: Sequence[socket.socket], local_address: str) -> None:
        if not sockets:
            raise ValueError("no UDP socket to serve KINK on")
        for raw in sockets:
            raw.setblocking(False)
        # The stdlib sockets, non-blocking: a receive or send that can go ahead is one kernel
        # call, without trio's wrappers (a trip through its scheduler per datagram).
        self._sockets = list(sockets)
        self._by_family: dict[int, socket.socket] = {}
        local = ipaddress.ip_address(local_address)
        for sock in self._sockets:
            bound = ipaddress.ip_address(_host(sock.getsockname())[0])
            if sock.family not in self._by_family or bound == local:
                self._by_family[sock.family] = sock
        self.received = 0
        self.sent = 0
        self.send_errors = 0
        # trio's clock when the datagram being delivered was read: the receiver hands it to
        # the engine as the datagram's time instead of reading the clock again (issue 9).
        self.arrived = 0.0

    def local_addresses(self) -> list[tuple[str, int]]:
        return [_host(s.getsockname()) for s in self._sockets]

    def receive_queue_drops(self) -> int:
        """Datagrams the kernel dropped at the sockets, nearly all for a full receive queue
        (SK_MEMINFO_DROPS: also bad UDP checksums): what a flood took from legitimate peers
        and from itself, which kinkd never saw to count by cause."""
        return sum(
            _MEMINFO.unpack(sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _MEMINFO.size))[
                _MEMINFO_DROPS
            ]
            for sock in self._sockets
        )

    async def serve(
        self,
        deliver: Callable[[bytes, Address], None],
        delivered: Callable[[], None] = lambda: None,
    ) -> None:
        """deliver(data, peer) each datagram; delivered() once a turn's deliveries are over,
        before the receiver waits or yields, and after the first datagram of a turn woken by
        epoll, before it reads on, in the same step (the daemon carries out what they led to
        then: a lone CREATE's helper request leaves without a turn of the loop more, nor a
        read that finds nothing, Daemon._delivered, issue 9)."""
        async with trio.open_nursery() as nursery:
            for sock in self._sockets:
                nursery.start_soon(self._receive, sock, deliver, delivered)

    async def _receive(
        self,
        sock: socket.socket,
        deliver: Callable[[bytes, Address], None],
        delivered: Callable[[], None],
    ) -> None:
        buffer = bytearray(MAX_DATAGRAM)
        view = memoryview(buffer)
        receive = sock.recvfrom_into
        # recvfrom gives IPv4 addresses as (host, port) already; IPv6 ones need trimming.
        plain = sock.family == socket.AF_INET
        # The run's clock itself: trio.current_time reaches it through three more Python
        # frames, and a turn under a flood reads it once per datagram (issue 9).
        clock = trio.lowlevel.current_clock().current_time
        await trio.lowlevel.wait_readable(sock)
        # One turn: until the queue is empty (then wait for it), or BATCH datagrams or SLICE
        # seconds were delivered (then give the other tasks their turn and go on reading: the
        # queue is likely not empty, no need to ask epoll). The clock is read when a turn
        # begins and when a datagram comes after another in it, not after each delivery: the
        # last datagram of a turn, a lone one's, costs no clock read (a system call in
        # user-mode Linux, issue 9). Each datagram is delivered with a reading (`arrived`). A
        # turn woken by epoll takes the reading trio made as it woke (loop_clock.turn_time):
        # a lone datagram is delivered without a clock read of its own (its SLICE then counts
        # from that reading, ended sooner by what other tasks did in that turn).
        #
        # The first datagram of a turn woken by epoll is followed by delivered() at once, before
        # the read that looks for more: a lone datagram (a CREATE, the REPLY to ours) is
        # carried out, and its answer or helper request leaves, without waiting for the read
        # that finds the queue empty (EAGAIN: a system call on the path of every lone exchange,
        # 22-35 us in user-mode Linux, issue 9). The datagrams that came meanwhile are still
        # delivered together, delivered() after the last of them; only the first is carried out
        # alone, and only when the loop has nothing else to do (Daemon._delivered: else its
        # inputs wait for the executor's run with the others'). A turn that begins after a
        # full one (BATCH or SLICE) is not woken by epoll: the queue is likely not empty.
        now = turn_time()
        turn_ends = now + SLICE
        in_turn = 0  # in this turn
        undelivered = False  # deliveries since the last delivered()
        woken = True  # this turn was woken by epoll: delivered() after its first datagram
        while True:
            try:
                size, address = receive(buffer)
            except BlockingIOError:
                in_turn = 0
                if undelivered:
                    undelivered = False
                    delivered()
                await trio.lowlevel.wait_readable(sock)
                now = turn_time()
                turn_ends = now + SLICE
                woken = True
                continue
            except OSError as exc:
                # ICMP port unreachable from an earlier send shows up here on Linux.
                log.debug("receive: %s", exc.strerror)
                continue
            if in_turn == BATCH or (in_turn and (now := clock()) >= turn_ends):
                # The turn is over: this datagram (kept in the buffer) opens the next one.
                in_turn = 0
                if undelivered:
                    undelivered = False
                    delivered()
                await trio.lowlevel.checkpoint()
                now = clock()
                turn_ends = now + SLICE
                woken = False
            self.arrived = now
            self.received += 1
            in_turn += 1
            deliver(bytes(view[:size]), address if plain else _host(address))
            if woken:
                woken = False
                delivered()
            else:
                undelivered = True

    def try_send(self, data: bytes, peer: Address) -> bool:
        """Send one datagram if the socket takes it now: False only when its send queue is full
        (send() waits for room). A datagram that cannot be sent for another reason is counted
        and logged, and gone (True)."""
        sock = self._socket_for(peer)
        if sock is None:
            return True
        try:
            sock.sendto(data, peer)
        except BlockingIOError:
            return False
        except OSError as exc:
            self._lost(peer, exc)
            return True
        self.sent += 1
        return True

    async def send(self, data: bytes, peer: Address) -> None:
        """Send one datagram; waits only while the socket's send queue is full."""
        while not self.try_send(data, peer):
            sock = self._socket_for(peer)
            assert sock is not None
            try:
                await trio.lowlevel.wait_writable(sock)
            except OSError as exc:
                self._lost(peer, exc)
                return

    def _lost(self, peer: Address, exc: OSError) -> None:
        # Lost datagrams are the protocol's business (retransmission, §9), not a crash.
        self.send_errors += 1
        log.info("send to %s: %s", peer[0], exc.strerror)

    def _socket_for(self, peer: Address) -> socket.socket | None:
        # Peers' addresses are IP literals (configuration, recvfrom): IPv6 ones have colons.
        sock = self._by_family.get(socket.AF_INET6 if ":" in peer[0] else socket.AF_INET)
        if sock is None:
            self.send_errors += 1
            log.warning("no socket to reach %s", peer[0])
        return sock

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()
