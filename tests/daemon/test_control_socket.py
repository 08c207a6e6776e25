"""The control socket's access control ([daemon] control_group): the socket is given to that
group with mode 0660, so a user of the group may use kinkctl and any other user may not."""

import grp
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from kink.engine import StartAction
from tests.daemon.conftest import HostsFactory
from tests.daemon.harness import WAIT

pytestmark = pytest.mark.trio

GROUP = "users"  # a Debian system group (gid 100) that neither root nor nobody is in
NOBODY = 65534
# A client outside this tree's interpreter (/root is closed to `nobody`): a status request.
_CLIENT = """\
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("denied")
    raise SystemExit(0)
s.sendall(json.dumps({"v": 1, "id": 1, "command": "status", "args": {}}).encode() + b"\\n")
print(json.loads(s.makefile().readline())["result"]["pid"])
"""


def _connect_as(path: Path, gid: int) -> str:
    """What the client prints when run as nobody with `gid` as its only group."""
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={gid}", "--clear-groups"]
    done = subprocess.run(
        [*setpriv, "/usr/bin/python3", "-c", _CLIENT, os.fspath(path)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    return done.stdout.strip()


async def test_control_group_owns_the_socket(make_hosts: HostsFactory) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving the socket to another group needs root")
    group = grp.getgrnam(GROUP)
    hosts = make_hosts(a={"b": StartAction.NONE})
    a = hosts["a"]
    a.config = replace(a.config, daemon=replace(a.config.daemon, control_group=GROUP))
    path = a.config.daemon.control_socket
    for directory in (hosts.directory, a.directory):
        directory.chmod(0o755)  # nobody must reach the socket: only its mode may stop it
    async with trio.open_nursery() as nursery:
        await a.start(nursery)
        st = path.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (os.getuid(), group.gr_gid, 0o660)
        member = await trio.to_thread.run_sync(_connect_as, path, group.gr_gid)
        assert member == str(os.getpid())  # kinkd runs in this process
        stranger = await trio.to_thread.run_sync(_connect_as, path, NOBODY)
        assert stranger == "denied"
        await a.stop()
    assert not path.exists()  # removed at stop
