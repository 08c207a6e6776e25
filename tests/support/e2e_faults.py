"""Fault injection for the end-to-end harness (tests.support.e2e), inside user-mode Linux:
kinkd under a shifted clock, KDC processes stopped and started again, a replica KDC.

The replica is what a second KDC of a realm is: its own krb5kdc with a copy of the primary's
database (the database files and the stash copied, as a kprop would leave them), listening on
another address of the bridge; krb5.conf then names both, the primary first (MIT libkrb5 asks
the KDCs of a realm in the order listed).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from kink.wire.constants import KINK_PORT
from kink.wire.header import HEADER, Header
from tests.support.e2e import BRIDGE, REPO, Host, Packet, run, wait_until
from tests.support.kdc import Realm

FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")  # Debian `faketime`
REPLICA4 = "10.0.0.253"


def spawn_kinkd_shifted(host: Host, seconds: int) -> None:
    """kinkd of `host` with its wall clock `seconds` ahead of the kernel's (libfaketime): UML
    hosts share one kernel clock, so this is how one host's clock is skewed. The monotonic
    clock stays real (trio's timers)."""
    assert host.kinkd is None, "kinkd already running"
    host.control_socket.unlink(missing_ok=True)
    env = {
        **os.environ,
        "LD_PRELOAD": str(FAKETIME_LIB),
        "FAKETIME": f"{seconds:+d}",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_NO_CACHE": "1",
    }
    with host.kinkd_log.open("ab") as out:
        host.kinkd = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                host.name,
                sys.executable,
                "-m",
                "kink.daemon",
                "--config",
                str(host.config_path),
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    host.wait_kinkd()


def _listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.2):
            return True
    except OSError:
        return False


class Kdc:
    """One krb5kdc process of a realm, started from a kdc.conf (KRB5_KDC_PROFILE)."""

    def __init__(self, realm: Realm, kdc_conf: Path, address: str) -> None:
        self.realm = realm
        self.kdc_conf = kdc_conf
        self.address = address
        self.log = kdc_conf.with_name("kdc.log")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self) -> None:
        assert self._process is None, "krb5kdc already running"
        env = {**self.realm.env, "KRB5_KDC_PROFILE": str(self.kdc_conf)}
        with self.kdc_conf.with_name("krb5kdc.out").open("ab") as out:
            self._process = subprocess.Popen(
                ["krb5kdc", "-n", "-r", self.realm.name], env=env, stdout=out, stderr=out
            )
        process = self._process
        wait_until(
            lambda: process.poll() is not None or _listening(self.address, self.realm.port),
            f"krb5kdc on {self.address}",
        )
        if process.poll() is not None:
            self._process = None
            raise RuntimeError(f"krb5kdc on {self.address} exited with {process.returncode}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            process.wait(timeout=10)

    def requests(self) -> int:
        """How many AS/TGS requests this KDC has logged."""
        if not self.log.exists():
            return 0
        return sum(
            1 for line in self.log.read_text(errors="replace").splitlines() if "_REQ " in line
        )


def take_over_kdc(realm: Realm) -> Kdc:
    """The realm's own KDC, stopped (Realm.stop) and started again as a Kdc (same database,
    address and port) that the caller stops and starts: KDC outages."""
    realm.stop()
    kdc = Kdc(realm, realm.kdc_conf, realm.address)
    kdc.start()
    return kdc


def start_replica(realm: Realm, directory: Path, address: str = REPLICA4) -> Kdc:
    """A second KDC of `realm` on `address` (added to the bridge), with a copy of its database;
    the realm's krb5.conf then lists the primary and this replica, in that order."""
    if address not in run("ip", "-4", "addr", "show", "dev", BRIDGE):
        run("ip", "addr", "add", f"{address}/24", "dev", BRIDGE)
    directory.mkdir(parents=True, exist_ok=True)
    for source in realm.directory.iterdir():
        if source.name.startswith("principal") or source.name == "stash":
            shutil.copy2(source, directory / source.name)
    conf = realm.kdc_conf.read_text()
    conf = conf.replace(str(realm.directory), str(directory))
    conf = conf.replace(f"{realm.address}:{realm.port}", f"{address}:{realm.port}")
    kdc_conf = directory / "kdc.conf"
    kdc_conf.write_text(conf)
    replica = Kdc(realm, kdc_conf, address)
    replica.start()
    primary = f"kdc = {realm.address}:{realm.port}"
    text = realm.krb5_conf.read_text()
    if f"{address}:{realm.port}" not in text:
        realm.krb5_conf.write_text(
            text.replace(primary, f"{primary}\n\t\tkdc = {address}:{realm.port}")
        )
    return replica


def drop_replica(realm: Realm, replica: Kdc) -> None:
    """The replica stopped and krb5.conf naming the primary alone again."""
    replica.stop()
    line = f"\n\t\tkdc = {replica.address}:{realm.port}"
    realm.krb5_conf.write_text(realm.krb5_conf.read_text().replace(line, ""))


def kink_headers(packets: list[Packet], source: str) -> list[Header]:
    """The KINK headers of the IPv4 UDP datagrams to KINK_PORT from `source` in a capture."""
    out = []
    for packet in packets:
        frame = packet.data
        if packet.protocol != socket.IPPROTO_UDP or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        udp = ip[(ip[0] & 0x0F) * 4 :]
        if socket.inet_ntoa(ip[12:16]) != source or int.from_bytes(udp[2:4]) != KINK_PORT:
            continue
        if len(udp) >= 8 + HEADER.size:
            out.append(Header(*HEADER.unpack_from(udp, 8)))
    return out


def pin_neighbours(a: Host, b: Host) -> None:
    """Permanent ARP entries between a and b: a netem that drops everything one host sends
    must not take its ARP replies with it (the other host could no longer reach it at all once
    its neighbour entry aged out, and the scenario would test nothing)."""
    for host, peer in ((a, b), (b, a)):
        link = json.loads(run("ip", "-n", peer.name, "-j", "link", "show", "dev", "eth0"))
        mac = link[0]["address"]
        run(
            "ip", "-n", host.name, "neigh", "replace", peer.addresses.v4,
            "lladdr", mac, "dev", "eth0", "nud", "permanent",
        )  # fmt: skip


def settle(seconds: float) -> None:
    """Let retransmissions and grace timers run out before the kernels are compared."""
    time.sleep(seconds)
