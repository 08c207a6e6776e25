"""Never root after start: sockets from systemd or opened as root, then a drop to the
configured user and group (issue 6). Started as that user already, nothing changes here (the
unit may give it CAP_NET_BIND_SERVICE to bind port 910 itself)."""

import grp
import os
import pwd
import socket
import stat
from collections.abc import Mapping
from pathlib import Path

SD_LISTEN_FDS_START = 3  # sd_listen_fds(3)


class PrivilegeError(Exception):
    """The configured user or group does not exist, or the drop failed."""


def systemd_sockets(environ: dict[str, str] | None = None) -> list[socket.socket] | None:
    """The UDP sockets of systemd socket activation ($LISTEN_PID is us, $LISTEN_FDS of them),
    or None when not socket-activated. The variables are removed, as sd_listen_fds(1) does."""
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()) or not env.get("LISTEN_FDS", "").isdigit():
        return None
    count = int(env["LISTEN_FDS"])
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    out = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        sock = socket.socket(fileno=fd)
        sock.set_inheritable(False)
        if sock.type != socket.SOCK_DGRAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise PrivilegeError(f"systemd passed fd {fd}, which is not a UDP socket")
        out.append(sock)
    return out


def lookup(user: str, group: str) -> tuple[int, int]:
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        raise PrivilegeError(f"no such user {user!r}") from None
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise PrivilegeError(f"no such group {group!r}") from None
    return uid, gid


def prepare_directory(path: Path, uid: int, gid: int, mode: int = 0o750) -> None:
    """Create `path` if needed and, as root, give it to the daemon's user (it writes there)."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise PrivilegeError(f"{path} is not a directory")
    if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)


def drop_privileges(uid: int, gid: int) -> None:
    """As root: become uid/gid with no supplementary groups but `gid`'s and no capabilities,
    for good (setresuid clears every capability when no uid stays 0). Not root: nothing."""
    if os.geteuid() != 0:
        return
    if uid == 0:
        raise PrivilegeError("refusing to run as root: set [daemon] user")
    try:
        os.setgroups([gid])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        raise PrivilegeError(f"cannot drop to uid {uid} gid {gid}: {exc.strerror}") from None
    if 0 in (*os.getresuid(), *os.getresgid()):
        raise PrivilegeError("still root after the drop")


def identity() -> Mapping[str, int]:
    uid, euid, _ = os.getresuid()
    gid, egid, _ = os.getresgid()
    return {"uid": uid, "euid": euid, "gid": gid, "egid": egid}
