"""Drop to one capability, CAP_NET_ADMIN (all that XFRM netlink needs), and another uid.

With libc's prctl/capset through ctypes: no libcap binding for a dozen lines. The order
matters: the bounding set needs CAP_SETPCAP, the uid change CAP_SETUID/SETGID and
PR_SET_KEEPCAPS (else setuid clears the permitted set), and capset then narrows what is kept.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

CAP_NET_ADMIN = 12
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, arg: int = 0) -> None:
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def _capset_only(cap: int) -> None:
    """Effective = permitted = {cap}; inheritable (hence ambient) empty."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()  # version 3: capabilities 0-31, then 32-63
    data[cap // 32].effective = data[cap // 32].permitted = 1 << (cap % 32)
    if _libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def drop_privileges(uid: int, gid: int) -> None:
    """Keep CAP_NET_ADMIN only, run as uid/gid, and never gain anything again (no_new_privs).

    Without CAP_SETPCAP (started unprivileged with CAP_NET_ADMIN only, e.g. systemd's
    AmbientCapabilities) the bounding set stays; no_new_privs makes it irrelevant.
    """
    last_cap = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last_cap + 1):
        if cap == CAP_NET_ADMIN:
            continue
        try:
            _prctl(PR_CAPBSET_DROP, cap)
        except OSError as e:
            if e.errno != errno.EPERM:
                raise
            break
    if (os.getuid(), os.getgid()) != (uid, gid):
        _prctl(PR_SET_KEEPCAPS, 1)
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        _prctl(PR_SET_KEEPCAPS, 0)
    _capset_only(CAP_NET_ADMIN)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
