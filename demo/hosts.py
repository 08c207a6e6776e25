"""One demo host: its Kerberos identity, its kink protocol engine, and its kink_privsep helper
(a real process in the host's network namespace, programming that namespace's XFRM).

The engine's SA actions are carried out against the helper exactly as the daemon does
(kink/daemon/runner.py: helper_args conversions, update_sa for an allocated inbound SPI, add_sa
for outbound, delete + add for UpdateSa since XFRM never changes a mature SA's keys).
"""

import errno
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kink.daemon import helper_args
from kink.daemon.helper_args import HelperRanges
from kink.engine import Engine, EngineConfig, Krb5Port, PeerConfig
from kink.engine.events import (
    Action,
    AllocateSpi,
    DeleteSa,
    FetchTicket,
    FetchU2uTicket,
    HelperResult,
    InstallSa,
    SendDatagram,
    TicketResult,
    UpdateSa,
)
from kink.krb5.acceptor import Acceptor
from kink.krb5.context import Context
from kink.krb5.credentials import Credentials
from kink.krb5.errors import Krb5Error
from kink.krb5.initiator import Initiator
from kink_privsep.client import Client, PrivsepError

_HELPER_START_TIMEOUT = 30.0  # a Python start in UML takes ~2 s


@dataclass
class Helper:
    """A running `python -m kink_privsep` in namespace `netns`, and a client connected to it."""

    netns: str
    socket_path: str
    process: subprocess.Popen[bytes]
    log: Path
    client: Client | None = None
    hello: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def spawn(cls, netns: str, run_dir: Path) -> "Helper":
        """Start the helper (serving our uid); connect() waits for it."""
        path = str(run_dir / f"kink-{netns}.sock")
        log = run_dir / f"kink-privsep-{netns}.log"
        command = ["ip", "netns", "exec", netns, sys.executable, "-m", "kink_privsep"]
        command += ["--socket", path, "--daemon-uid", str(os.getuid()), "--backend", "xfrm"]
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        return cls(netns, path, process, log)

    def connect(self) -> None:
        deadline = time.monotonic() + _HELPER_START_TIMEOUT
        while self.client is None:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"kink_privsep in {self.netns} exited {self.process.returncode}: "
                    + self.log.read_text(errors="replace")
                )
            try:
                self.client = Client(self.socket_path)
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kink_privsep in {self.netns} did not listen") from None
                time.sleep(0.05)
        self.hello = self.client.call("hello")

    def call(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.client is None:
            raise RuntimeError(f"kink_privsep in {self.netns} is not connected")
        return self.client.call(op, args)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.process.terminate()
        self.process.wait(timeout=10)


@dataclass
class Host:
    name: str
    address: str
    principal: str
    credentials: Credentials
    engine: Engine
    helper: Helper
    ranges: HelperRanges
    outbox: list[SendDatagram] = field(default_factory=list)
    notices: list[Action] = field(default_factory=list)


def kerberos(
    krb5_conf: Path, principal: str, keytab: Path, rcache: Path
) -> tuple[Credentials, Krb5Port]:
    """Credentials from the keytab (a TGT now) and the engine's Kerberos port over them, as
    tests/engine/conftest.py builds them."""
    credentials = Credentials(Context(krb5_conf), principal, str(keytab))
    credentials.acquire()
    rcache.mkdir(parents=True, exist_ok=True)
    context = Context(krb5_conf, rcache_dir=rcache)
    acceptor = Acceptor(context, principal, keytab=str(keytab), credentials=credentials)
    return credentials, Krb5Port(Initiator(context), acceptor, credentials)


def make_host(
    name: str,
    address: str,
    principal: str,
    credentials: Credentials,
    port: Krb5Port,
    peer: PeerConfig,
    helper: Helper,
    epoch: int,
) -> Host:
    config = EngineConfig(address, principal, (peer,))
    engine = Engine(config, port, epoch=epoch, now=time.monotonic())
    ranges = HelperRanges.from_hello(helper.hello)
    return Host(name, address, principal, credentials, engine, helper, ranges)


def install_policies(host: Host, peer: PeerConfig) -> list[dict[str, Any]]:
    """The kernel policies (out, in) that send host <-> peer traffic through the SAs."""
    policies = helper_args.policies(
        peer, host.engine.peer_policies[peer.name], host.address, host.ranges
    )
    for policy in policies:
        host.helper.call("add_policy", policy)
    return policies


def drain(host: Host) -> None:
    """Carry out the engine's actions in order: SA actions through the helper, ticket fetches
    against the KDC; datagrams and notices are collected for the caller."""
    engine = host.engine
    while (action := engine.next_action()) is not None:
        if isinstance(action, SendDatagram):
            host.outbox.append(action)
        elif isinstance(action, AllocateSpi | InstallSa | UpdateSa | DeleteSa):
            engine.helper_result(_sa_action(host, action), time.monotonic())
        elif isinstance(action, FetchTicket | FetchU2uTicket):
            engine.ticket_result(_fetch(host, action), time.monotonic())
        else:
            host.notices.append(action)


def _sa_action(host: Host, action: AllocateSpi | InstallSa | UpdateSa | DeleteSa) -> HelperResult:
    try:
        if isinstance(action, AllocateSpi):
            reply = host.helper.call("alloc_spi", helper_args.alloc_spi(action, host.ranges))
            return HelperResult(action.token, spi=int(reply["spi"]))
        if isinstance(action, DeleteSa):
            host.helper.call("delete_sa", helper_args.delete_sa(action))
            return HelperResult(action.token)
        spec = action.spec
        args = helper_args.sa(spec, host.ranges)
        if isinstance(action, UpdateSa):
            host.helper.call("delete_sa", helper_args.sa_id(spec.protocol, spec.spi, spec.dst))
            host.helper.call("add_sa", args)
        else:
            host.helper.call("update_sa" if spec.inbound else "add_sa", args)
        del args  # the request held copies of the keys; the spec's are zeroed here
        for key in (spec.enc_key, spec.auth_key):
            key[:] = bytes(len(key))
        return HelperResult(action.token)
    except PrivsepError as exc:
        name = errno.errorcode.get(exc.errno or 0, exc.code)
        return HelperResult(action.token, error=name)
    except helper_args.Unsupported:
        return HelperResult(action.token, error="EINVAL")


def _fetch(host: Host, action: FetchTicket | FetchU2uTicket) -> TicketResult:
    try:
        if isinstance(action, FetchTicket):
            host.credentials.get_ticket(action.principal)
        else:
            host.credentials.get_u2u_ticket(action.principal, action.peer_tgt)
    except Krb5Error as exc:
        return TicketResult(action.token, False, exc.protocol_code)
    return TicketResult(action.token, True)
