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

_RCACHE_FILE = "kink.rcache"
# Without rcache_dir: libkrb5's own default directory (KRB5RCACHEDIR, else /var/tmp), with the
# euid in the name as in MIT's krb5_<euid>.rcache2, so that users sharing it stay apart.
_DEFAULT_RCACHE_DIR = "/var/tmp"


class Context:
    """One krb5_context with its configuration and clock offset.

    config_path: the krb5.conf to use (several may be joined with ':'); None means libkrb5's
    own choice ($KRB5_CONFIG, else /etc/krb5.conf), read once here, as libkrb5 does.
    rcache_dir: the directory of the Acceptor's replay cache (kink.krb5.replay), which is
    <rcache_dir>/kink.rcache; without it, kink_<euid>.rcache in $KRB5RCACHEDIR or /var/tmp.
    """

    def __init__(
        self,
        config_path: str | os.PathLike[str] | None = None,
        *,
        rcache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        config: str | None = None
        if config_path is not None:
            config = os.fspath(config_path)
            # libkrb5 skips missing files in a profile path; an explicit one must be there.
            if not any(os.path.isfile(p) for p in config.split(":")):
                raise Krb5Error(errno.ENOENT, f"no Kerberos configuration at {config}")
        if rcache_dir is not None:
            self.rcache_path = Path(rcache_dir) / _RCACHE_FILE
        else:
            directory = os.environ.get("KRB5RCACHEDIR") or _DEFAULT_RCACHE_DIR
            self.rcache_path = Path(directory) / f"kink_{os.geteuid()}.rcache"
        # The libkrb5 binding, for kink.krb5's own modules.
        self.raw = _lib.RawContext(config)

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
