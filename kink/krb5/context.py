"""The libkrb5 library context every other kink.krb5 object works through.

Threads: MIT krb5 contexts are not thread-safe. A Context is used by one thread at a time,
and so is everything created with it (Credentials, Initiator, Acceptor). The daemon keeps one
Context for the trio thread (AP-REQ/AP-REP/KRB-ERROR work, which never blocks) and another for
the calls that reach the KDC (Credentials), run one at a time via trio.to_thread. Tickets,
session keys and other results are plain data and may cross threads.
"""

import errno
import os
from pathlib import Path

from kink.krb5 import _lib
from kink.krb5.errors import KRB5_PARSE_MALFORMED, Krb5Error

# Where libkrb5 looks when KRB5_CONFIG is unset (Debian's DEFAULT_PROFILE_PATH).
_DEFAULT_CONFIG = "/etc/krb5.conf"
_RCACHE_PROFILE = "kink-rcache.conf"
_RCACHE_FILE = "kink.rcache2"


class Context:
    """One krb5_context with its configuration and clock offset.

    config_path: the krb5.conf to use (several may be joined with ':'); None means libkrb5's
    own choice ($KRB5_CONFIG, else /etc/krb5.conf), read once here, as libkrb5 does.
    rcache_dir: if given, the server replay cache (Acceptor) is the file2 cache
    <rcache_dir>/kink.rcache2. libkrb5 1.20 takes the replay cache name only from the
    environment or the profile, and a profile copy cannot be modified in memory, so a
    one-line profile written to that directory is put first in the profile path.
    """

    def __init__(
        self,
        config_path: str | os.PathLike[str] | None = None,
        *,
        rcache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        paths: list[str] = []
        if rcache_dir is not None:
            paths.append(str(_write_rcache_profile(Path(rcache_dir))))
        if config_path is not None:
            config = os.fspath(config_path)
            # libkrb5 skips missing files in a profile path; an explicit one must be there.
            if not any(os.path.isfile(p) for p in config.split(":")):
                raise Krb5Error(errno.ENOENT, f"no Kerberos configuration at {config}")
            paths.append(config)
        elif paths:
            paths.append(os.environ.get("KRB5_CONFIG") or _DEFAULT_CONFIG)
        # The libkrb5 binding, for kink.krb5's own modules.
        self.raw = _lib.RawContext(":".join(paths) if paths else None)

    def default_realm(self) -> str:
        return self.raw.default_realm()

    def now(self) -> tuple[int, int]:
        """(seconds, microseconds) on this context's clock: system time plus its offset."""
        return self.raw.now()

    def time_offset(self) -> tuple[int, int]:
        """The (seconds, microseconds) offset libkrb5 adds to the system clock."""
        return self.raw.time_offset()

    def canonical_name(self, principal: str) -> str:
        """`principal` parsed and unparsed by libkrb5 (default realm added, escapes normalized)."""
        return self.raw.parse_principal(principal).name


def kink_principal(fqdn: str, realm: str) -> str:
    """The KINK service principal of a host: "kink/<fqdn in lowercase>@REALM" (RFC 4430 §4.2.1)."""
    host = fqdn.rstrip(".").lower()
    if not host or not realm or any(c in host or c in realm for c in "/@\\\0"):
        raise Krb5Error(KRB5_PARSE_MALFORMED, f"cannot build a KINK principal from {fqdn!r}")
    return f"kink/{host}@{realm}"


def _write_rcache_profile(directory: Path) -> Path:
    cache = directory.resolve() / _RCACHE_FILE
    if "\n" in str(cache):
        raise Krb5Error(KRB5_PARSE_MALFORMED, "replay cache directory name contains a newline")
    profile = directory / _RCACHE_PROFILE
    profile.write_text(f"[libdefaults]\n\tdefault_rcache_name = file2:{cache}\n")
    return profile
