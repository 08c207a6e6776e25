"""Network namespaces for the demo's two hosts: made with `ip`, entered by setns(2) just long
enough to open a socket (a socket keeps the namespace it was created in)."""

import contextlib
import ctypes
import os
import socket
import subprocess
from collections.abc import Iterator

_CLONE_NEWNET = 0x40000000  # linux/sched.h
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str) -> str:
    """Run `ip ARGS`; its stdout. CalledProcessError carries its stderr."""
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def veth_pair(a: tuple[str, str], b: tuple[str, str], prefix_len: int) -> None:
    """Namespaces a and b, each holding one end of a veth pair with the given address."""
    (ns_a, addr_a), (ns_b, addr_b) = a, b
    ip("netns", "add", ns_a)
    ip("netns", "add", ns_b)
    ip("link", "add", "veth-a", "netns", ns_a, "type", "veth", "peer", "veth-b", "netns", ns_b)
    for ns, dev, addr in ((ns_a, "veth-a", addr_a), (ns_b, "veth-b", addr_b)):
        ip("-n", ns, "addr", "add", f"{addr}/{prefix_len}", "dev", dev)
        ip("-n", ns, "link", "set", dev, "up")
        ip("-n", ns, "link", "set", "lo", "up")


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(ns: str) -> Iterator[None]:
    """The calling thread inside network namespace `ns` for the block."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


_ETH_P_IP = 0x0800


def wire_socket(ns: str, device: str) -> socket.socket:
    """A packet socket on `device` in `ns`: the IPv4 packets as they cross the wire, before
    XFRM sees them (an IP raw socket would not do: the inbound policy drops untransformed
    packets before raw delivery)."""
    with entered(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(_ETH_P_IP))
    sock.bind((device, _ETH_P_IP))
    return sock


def udp_socket(ns: str, address: str, port: int) -> socket.socket:
    """A UDP socket bound to (address, port) in namespace `ns`."""
    with entered(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    return sock
