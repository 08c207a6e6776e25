"""The KINK sockets' receive queues are sized once, before the privilege drop, whichever way
the sockets came (kink.daemon.transport.prepare_sockets): opened by kinkd or passed by systemd."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from kink.daemon.transport import RECEIVE_BUFFER, Transport, prepare_sockets


def _rmem_max() -> int:
    with open("/proc/sys/net/core/rmem_max") as f:
        return int(f.read())


@pytest.mark.skipif(os.geteuid() != 0, reason="drops from root to nobody")
def test_an_unprivileged_start_sizes_each_socket_once() -> None:
    """Without CAP_NET_ADMIN the kernel caps the queue at rmem_max: one line says so per socket,
    not one per place that asked (the asked size is raised past rmem_max to be sure it caps)."""
    code = textwrap.dedent(
        f"""
        import logging, os, pwd, socket
        from kink.daemon import transport
        nobody = pwd.getpwnam("nobody")
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        transport.RECEIVE_BUFFER = {_rmem_max()} + 4096
        sockets = transport.open_sockets(["127.0.0.1"], 0)
        transport.Transport(sockets, "127.0.0.1")
        print(sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=os.getcwd()
    )
    assert int(done.stdout) == 2 * _rmem_max()
    assert done.stderr.count("net.core.rmem_max caps it") == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="SO_RCVBUFFORCE needs CAP_NET_ADMIN")
def test_sockets_from_systemd_are_sized_as_kinkd_own() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        prepare_sockets([sock])
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 2 * RECEIVE_BUFFER


def test_the_transport_leaves_the_queue_as_it_finds_it() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        Transport([sock], "127.0.0.1")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == before
