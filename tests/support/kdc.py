"""A throwaway MIT Kerberos realm for tests: database, krb5kdc on loopback, principals, keytabs.

Everything lives in one directory: kdc.conf and krb5.conf are written there, the database is
created with kdb5_util, principals and keytabs with kadmin.local, and krb5kdc runs in the
foreground (-n) on a free loopback port (UDP and TCP) until `stop`. Nothing reads or writes
the machine's own Kerberos configuration: the tools get KRB5_CONFIG/KRB5_KDC_PROFILE through
`env`, and in-process libkrb5 contexts take `krb5_conf` explicitly (kink.krb5.Context).
"""

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

# RFC 3961/3962/8009 enctype numbers and their MIT names.
ENCTYPE_NAMES = {
    17: "aes128-cts-hmac-sha1-96",
    18: "aes256-cts-hmac-sha1-96",
    19: "aes128-cts-hmac-sha256-128",
    20: "aes256-cts-hmac-sha384-192",
}
# Client preference order in krb5.conf: what a session key gets when the service has all.
DEFAULT_ENCTYPES = (18, 17, 20, 19)
_MASTER_PASSWORD = "kink-test-master"
_START_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _free_port(address: str) -> int:
    """A port on the IPv4 `address` free for both TCP and UDP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((address, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((address, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port on {address} for the KDC")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _enctype_list(enctypes: Iterable[int]) -> str:
    return " ".join(ENCTYPE_NAMES[e] for e in enctypes)


def _krb5_conf(realm: str, address: str, port: int) -> str:
    """A client krb5.conf for `realm` served on `address`:`port`."""
    settings = {
        "default_realm": realm,
        "dns_lookup_kdc": "false",
        "dns_lookup_realm": "false",
        "dns_canonicalize_hostname": "false",
        "rdns": "false",
        "permitted_enctypes": _enctype_list(DEFAULT_ENCTYPES),
        "default_tkt_enctypes": _enctype_list(DEFAULT_ENCTYPES),
        "default_tgs_enctypes": _enctype_list(DEFAULT_ENCTYPES),
    }
    lines = ["[libdefaults]", *(f"\t{k} = {v}" for k, v in settings.items())]
    lines += ["", "[realms]", f"\t{realm} = {{", f"\t\tkdc = {address}:{port}", "\t}", ""]
    return "\n".join(lines)


class Realm:
    """A running test realm. Use `Realm.start(directory)`; `stop()` (or `with`) ends it."""

    def __init__(
        self, directory: Path, name: str, port: int, max_life: str, address: str = "127.0.0.1"
    ) -> None:
        self.name = name
        self.directory = directory
        self.address = address
        self.port = port
        self.kdc_conf = directory / "kdc.conf"
        self.krb5_conf = directory / "krb5.conf"
        self.env = {
            **os.environ,
            "KRB5_CONFIG": str(self.krb5_conf),
            "KRB5_KDC_PROFILE": str(self.kdc_conf),
            "KRB5CCNAME": f"FILE:{directory / 'tool-ccache'}",
            "KRB5_KTNAME": f"FILE:{directory / 'default.keytab'}",
        }
        self._max_life = max_life
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls,
        directory: Path,
        name: str = "KINK.TEST",
        *,
        max_life: str = "10h",
        address: str = "127.0.0.1",
    ) -> "Realm":
        """`address`: the IPv4 address krb5kdc listens on (and krb5.conf names), e.g. one
        that other network namespaces reach."""
        directory.mkdir(parents=True, exist_ok=True)
        realm = cls(directory, name, _free_port(address), max_life, address)
        realm._write_config()
        realm._run("kdb5_util", "create", "-s", "-r", name, "-P", _MASTER_PASSWORD)
        realm._start_kdc()
        return realm

    def _write_config(self) -> None:
        d = self.directory
        supported = " ".join(f"{ENCTYPE_NAMES[e]}:normal" for e in DEFAULT_ENCTYPES)
        self.kdc_conf.write_text(
            "[kdcdefaults]\n"
            f"\tkdc_listen = {self.address}:{self.port}\n"
            f"\tkdc_tcp_listen = {self.address}:{self.port}\n\n"
            "[realms]\n"
            f"\t{self.name} = {{\n"
            f"\t\tdatabase_name = {d / 'principal'}\n"
            f"\t\tkey_stash_file = {d / 'stash'}\n"
            f"\t\tacl_file = {d / 'kadm5.acl'}\n"
            "\t\tmaster_key_type = aes256-cts-hmac-sha1-96\n"
            f"\t\tsupported_enctypes = {supported}\n"
            f"\t\tmax_life = {self._max_life}\n"
            "\t\tmax_renewable_life = 0\n"
            "\t}\n\n"
            "[logging]\n"
            f"\tkdc = FILE:{d / 'kdc.log'}\n"
            f"\tdefault = FILE:{d / 'krb5lib.log'}\n"
        )
        self.krb5_conf.write_text(_krb5_conf(self.name, self.address, self.port))

    def _run(self, *argv: str) -> str:
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        # kadmin.local -q exits 0 even when the query fails; only its stderr tells.
        complaints = [
            line
            for line in done.stderr.splitlines()
            if line and not line.startswith(("No policy specified", "Loading random data"))
        ]
        if done.returncode != 0 or complaints:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
        return done.stdout

    def _start_kdc(self) -> None:
        log = (self.directory / "krb5kdc.out").open("wb")
        self._process = subprocess.Popen(
            ["krb5kdc", "-n", "-r", self.name],
            env=self.env,
            stdout=log,
            stderr=log,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output = (self.directory / "krb5kdc.out").read_text(errors="replace")
                raise RuntimeError(f"krb5kdc exited with {self._process.returncode}: {output}")
            try:
                with socket.create_connection((self.address, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("krb5kdc did not start listening")

    def kadmin(self, query: str) -> str:
        """One kadmin.local query against the realm's database."""
        return self._run("kadmin.local", "-r", self.name, "-q", query)

    def principal(self, name: str) -> str:
        return name if "@" in name else f"{name}@{self.name}"

    def add_principal(
        self,
        name: str,
        *,
        enctypes: Sequence[int] | None = None,
        password: str | None = None,
        maxlife: int | None = None,
        flags: Sequence[str] = (),
    ) -> str:
        """Create a principal (random key unless `password`); returns its full name.

        enctypes: its long-term key types, and the session key types of tickets for it.
        maxlife: seconds; caps tickets for and from it. flags: kadmin flags like "-allow_svr".
        """
        principal = self.principal(name)
        args = (
            ["addprinc", "-randkey"] if password is None else ["addprinc", "-pw", f'"{password}"']
        )
        if enctypes is not None:
            args += ["-e", ",".join(f"{ENCTYPE_NAMES[e]}:normal" for e in enctypes)]
        if maxlife is not None:
            args += ["-maxlife", f'"{maxlife} seconds"']
        args += [*flags, principal]
        self.kadmin(" ".join(args))
        if enctypes is not None:
            # Debian's KDC (patch kdc-assume-aes-support, from MIT 1.21) assumes every service
            # takes aes256-sha1 session keys unless the session_enctypes attribute says not.
            names = ",".join(ENCTYPE_NAMES[e] for e in enctypes)
            self.kadmin(f"setstr {principal} session_enctypes {names}")
        return principal

    def keytab(self, principal: str, path: Path | None = None) -> Path:
        """Export the principal's current keys (without changing them) to a keytab file."""
        principal = self.principal(principal)
        if path is None:
            safe = principal.replace("/", "_").replace("@", "_")
            path = self.directory / f"{safe}.keytab"
        self.kadmin(f"ktadd -k {path} -norandkey {principal}")
        return path

    def rekey(self, principal: str) -> None:
        """New random keys, kvno + 1: keytabs exported before hold only the old version."""
        self.kadmin(f"cpw -randkey {self.principal(principal)}")

    def add_host(
        self,
        fqdn: str,
        *,
        enctypes: Sequence[int] | None = None,
        maxlife: int | None = None,
        flags: Sequence[str] = (),
    ) -> tuple[str, Path]:
        """kink/<fqdn>@REALM with a random key, and a keytab holding it."""
        principal = self.add_principal(
            f"kink/{fqdn}", enctypes=enctypes, maxlife=maxlife, flags=flags
        )
        return principal, self.keytab(principal)

    def stop(self) -> None:
        """Stop krb5kdc (the directory is left for the caller, e.g. a pytest tmp dir)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def remove(self) -> None:
        """Stop and delete the realm's directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "Realm":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()
