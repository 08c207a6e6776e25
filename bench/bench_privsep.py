"""kink_privsep: requests/s through the helper's Unix socket (recording backend): one at a time,
pipelined (one message each) and in batches of protocol.MAX_BATCH (one message each way per
batch); us per request of a rekey as kinkd sends it (one message: add_sa in and out, delete_sa
of the old pair, tunnel mode with selectors, as in bench_exchange); the cost of encoding one SA
message; as root, requests on the running kernel (XFRM without ESP, in a network namespace of
its own): policy add+delete and ALLOCSPI+DELSA pairs, and a NEWSA the kernel refuses for want
of ESP (encoding, the round trip and the kernel's checks of the message, all but the state's
creation), straight through netlink and through the helper; and, when user-mode Linux can run,
SA add+delete pairs/s on a real ESP kernel, both ways, and the rekey figure there."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import emit, netns, rate
from kink_privsep import protocol, validate, xfrm
from kink_privsep.client import Client, PrivsepError
from kink_privsep.errors import KernelError
from kink_privsep.model import (
    IPPROTO_ESP,
    MODE_TRANSPORT,
    AddPolicy,
    Config,
    SaId,
    SaSpec,
    SpiRequest,
)

REPO = Path(__file__).resolve().parents[1]
REQID = Config().reqid_range[0] + 1
SA_ARGS: dict[str, Any] = {
    "proto": "esp",
    "mode": "transport",
    "src": "192.0.2.1",
    "dst": "192.0.2.2",
    "spi": 0x1000,
    "reqid": REQID,
    "enc": "aes-gcm",
    "enc_key": bytes(range(20)),
    "lifetime": {"soft_add_seconds": 3000, "hard_add_seconds": 3600},
}
SA_ID = {"proto": "esp", "dst": "192.0.2.2", "spi": 0x1000}
# _spec()'s algorithms. Why not SA_ARGS on the host kernel: without rfc4106(gcm(aes)) built in,
# each NEWSA asking for it makes the kernel try to load a module (~0.4 ms, not the helper's).
CBC_SA_ARGS = SA_ARGS | {
    "enc": "aes-cbc",
    "enc_key": bytes(16),
    "auth": "hmac-sha256-128",
    "auth_key": bytes(32),
}
SPI_ARGS = {"proto": "esp", "src": "192.0.2.1", "dst": "192.0.2.2", "reqid": REQID}
POLICY_ARGS: dict[str, Any] = {
    "dir": "out",
    "selector": {"src": "10.20.0.0/24", "dst": "10.21.0.0/24", "proto": 17, "dport": 5000},
    "priority": Config().priority_band[0] + 1,
    "templates": [
        {"proto": "esp", "mode": "tunnel", "reqid": REQID, "src": "192.0.2.1", "dst": "192.0.2.2"}
    ],
}
POLICY_ID = {"dir": "out", "selector": POLICY_ARGS["selector"]}
PIPELINE = 64  # requests in flight


def _spec() -> SaSpec:
    src, dst = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
    return SaSpec(
        id=SaId(dst, 0x1000, IPPROTO_ESP),
        src=src,
        mode=MODE_TRANSPORT,
        reqid=REQID,
        enc="aes-cbc",
        enc_key=bytearray(16),
        auth="hmac-sha256-128",
        auth_key=bytearray(32),
    )


@contextlib.contextmanager
def _helper(backend: str, netns: str | None = None) -> Iterator[str]:
    """`python -m kink_privsep` on a fresh socket, for this uid (in network namespace `netns`
    if given); yields the socket path."""
    with tempfile.TemporaryDirectory(prefix="kpb-") as d:
        path = os.path.join(d, "privsep.sock")
        command = [sys.executable, "-m", "kink_privsep", "--socket", path, "--backend", backend]
        command += ["--daemon-uid", str(os.getuid()), "--log-level", "WARNING"]
        if netns is not None:
            command = ["ip", "netns", "exec", netns, *command]
        process = subprocess.Popen(command, cwd=REPO)
        try:
            deadline = time.monotonic() + 60
            while not _listening(path):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("kink_privsep did not start")
                time.sleep(0.02)
            yield path
        finally:
            process.terminate()
            process.wait()


def _listening(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


def _rekey_sa(spi: int, inbound: bool) -> dict[str, Any]:
    """add_sa as kinkd sends it for bench_exchange's tunnels (kink.daemon.helper_args.sa)."""
    here, there = "192.0.2.1", "192.0.2.2"
    local, remote = "10.1.0.0/24", "10.2.0.0/24"
    return {
        "proto": "esp",
        "mode": "tunnel",
        "src": there if inbound else here,
        "dst": here if inbound else there,
        "spi": spi,
        "reqid": REQID,
        "replay_window": 32,
        "selector": {
            "src": remote if inbound else local,
            "dst": local if inbound else remote,
            "proto": 0,
            "sport": 0,
            "dport": 0,
        },
        "enc": "aes-cbc",
        "enc_key": bytes(16),
        "auth": "hmac-sha1-96",
        "auth_key": bytes(20),
        "lifetime": {"soft_add_seconds": 2880, "hard_add_seconds": 3600},
    }


def _rekey_sa_id(spi: int, inbound: bool) -> dict[str, Any]:
    return {"proto": "esp", "dst": "192.0.2.1" if inbound else "192.0.2.2", "spi": spi}


def _check(c: Client, requests: list[tuple[str, dict[str, Any]]]) -> None:
    """Send `requests` as one batch; RuntimeError if any is refused."""
    for i in c.send_batch(requests):
        if not c.wait(i).ok:
            raise RuntimeError("request refused")


def _socket_figures(path: str, where: str, seconds: float) -> list[tuple[str, float, str]]:
    with Client(path) as c:

        def pair() -> None:
            c.call("add_sa", SA_ARGS)
            c.call("delete_sa", SA_ID)

        def pipelined() -> None:
            ids = []
            for i in range(PIPELINE // 2):
                ids.append(c.send("add_sa", SA_ARGS | {"spi": 0x1000 + i}))
                ids.append(c.send("delete_sa", SA_ID | {"spi": 0x1000 + i}))
            for i in ids:
                if not c.wait(i).ok:
                    raise RuntimeError("request refused")

        def batched() -> None:
            requests: list[tuple[str, dict[str, Any]]] = []
            for i in range(protocol.MAX_BATCH // 2):
                requests.append(("add_sa", SA_ARGS | {"spi": 0x1000 + i}))
                requests.append(("delete_sa", SA_ID | {"spi": 0x1000 + i}))
            for i in c.send_batch(requests):
                if not c.wait(i).ok:
                    raise RuntimeError("request refused")

        spis = itertools.count(0x2000, 2)
        old = next(spis)
        _check(c, [("add_sa", _rekey_sa(old, True)), ("add_sa", _rekey_sa(old + 1, False))])

        def rekey() -> None:
            nonlocal old
            new = next(spis)
            _check(
                c,
                [
                    ("add_sa", _rekey_sa(new, True)),
                    ("add_sa", _rekey_sa(new + 1, False)),
                    ("delete_sa", _rekey_sa_id(old + 1, False)),
                    ("delete_sa", _rekey_sa_id(old, True)),
                ],
            )
            old = new

        serial = rate(pair, seconds)
        piped = rate(pipelined, seconds) * PIPELINE / 2
        in_batches = rate(batched, seconds) * protocol.MAX_BATCH / 2
        rekeys = rate(rekey, seconds / 2)
    return [
        (f"privsep_{where}_rekey_batch", 1e6 / rekeys / 4, "us"),
        (f"privsep_{where}_sa_add_del_serial", serial, "pairs/s"),
        (f"privsep_{where}_sa_add_del_pipelined", piped, "pairs/s"),
        (f"privsep_{where}_requests_pipelined", piped * 2, "requests/s"),
        (f"privsep_{where}_sa_add_del_batched", in_batches, "pairs/s"),
        (f"privsep_{where}_requests_batched", in_batches * 2, "requests/s"),
    ]


def _direct_figure(seconds: float) -> tuple[str, float, str]:
    """SA add+del pairs straight through XfrmBackend: the kernel's own cost plus encoding."""
    from kink_privsep.backend import XfrmBackend

    backend, spec = XfrmBackend(), _spec()
    try:

        def pair() -> None:
            backend.add_sa(spec, update=False)
            backend.delete_sa(spec.id)

        return ("privsep_kernel_sa_add_del_netlink", rate(pair, seconds), "pairs/s")
    finally:
        backend.close()


def _host_direct_figures(seconds: float) -> list[tuple[str, float, str]]:
    """Kernel requests straight through XfrmBackend (made in the namespace): us per request."""
    from kink_privsep.backend import XfrmBackend

    config = Config()
    policy = validate.command("add_policy", POLICY_ARGS, config)
    spi_request = validate.command("alloc_spi", SPI_ARGS, config)
    assert isinstance(policy, AddPolicy) and isinstance(spi_request, SpiRequest)
    backend, spec = XfrmBackend(), _spec()
    try:

        def policy_pair() -> None:
            backend.add_policy(policy.policy, update=False)
            backend.delete_policy(policy.policy.id)

        def spi_pair() -> None:
            spi = backend.alloc_spi(spi_request)
            backend.delete_sa(SaId(spi_request.dst, spi, spi_request.proto))

        def refused_newsa() -> None:
            try:
                backend.add_sa(spec, update=False)
            except KernelError:
                return
            raise RuntimeError("this kernel has ESP: the UML figures measure it")

        return [
            ("privsep_host_netlink_policy_add_del", 1e6 / rate(policy_pair, seconds) / 2, "us"),
            ("privsep_host_netlink_allocspi_delsa", 1e6 / rate(spi_pair, seconds) / 2, "us"),
            ("privsep_host_netlink_newsa_refused", 1e6 / rate(refused_newsa, seconds), "us"),
        ]
    finally:
        backend.close()


def _host_helper_figures(path: str, seconds: float) -> list[tuple[str, float, str]]:
    """The same requests through the helper on the running kernel: us per request."""
    with Client(path) as c:

        def policy_pair() -> None:
            c.call("add_policy", POLICY_ARGS)
            c.call("delete_policy", POLICY_ID)

        def policies_batched() -> None:
            requests: list[tuple[str, dict[str, Any]]] = []
            for i in range(protocol.MAX_BATCH // 2):
                selector = POLICY_ARGS["selector"] | {"dport": 5000 + i}
                requests.append(("add_policy", POLICY_ARGS | {"selector": selector}))
                requests.append(("delete_policy", POLICY_ID | {"selector": selector}))
            for i in c.send_batch(requests):
                if not c.wait(i).ok:
                    raise RuntimeError("request refused")

        def spi_pair() -> None:
            spi = c.call("alloc_spi", SPI_ARGS)["spi"]
            c.call("delete_sa", SA_ID | {"spi": spi})

        def refused_newsa() -> None:
            try:
                c.call("add_sa", CBC_SA_ARGS)  # as _spec(): the kernel has these algorithms
            except PrivsepError as e:
                if e.code == protocol.ERR_KERNEL:
                    return
                raise
            raise RuntimeError("this kernel has ESP: the UML figures measure it")

        batched = rate(policies_batched, seconds) * protocol.MAX_BATCH
        return [
            ("privsep_host_helper_policy_add_del", 1e6 / rate(policy_pair, seconds) / 2, "us"),
            ("privsep_host_helper_policy_batched", 1e6 / batched, "us"),
            ("privsep_host_helper_allocspi_delsa", 1e6 / rate(spi_pair, seconds) / 2, "us"),
            ("privsep_host_helper_newsa_refused", 1e6 / rate(refused_newsa, seconds), "us"),
        ]


def host_figures() -> list[tuple[str, float, str]]:
    """Per request on the running kernel, in a namespace of our own (root only)."""
    from tests.support.e2e import in_namespace

    with netns() as name:
        with in_namespace(name):
            figures = _host_direct_figures(0.5)
        with _helper("xfrm", netns=name) as path:
            figures += _host_helper_figures(path, 0.5)
    return figures


def uml_figures() -> None:
    """Run inside UML (real ESP): print one JSON line per figure for main() to emit."""
    figures = [_direct_figure(1.0)]
    with _helper("xfrm") as path:
        figures += _socket_figures(path, "kernel", 1.0)
    for name, value, unit in figures:
        print(json.dumps({"name": name, "value": value, "unit": unit}), flush=True)


def _us_per_call(fn: Callable[[], object]) -> float:
    return 1e6 / rate(fn, 0.5)


def main() -> None:
    spec = _spec()
    emit("privsep_encode_newsa", _us_per_call(lambda: xfrm.encode_newsa(spec, False)), "us")
    request = protocol.encode_request(1, "add_sa", SA_ARGS)
    config = Config()

    def decode_and_validate() -> object:
        req = protocol.decode_request(request)
        return validate.command(req.op, req.args, config)

    emit("privsep_decode_validate_add_sa", _us_per_call(decode_and_validate), "us")
    with _helper("recording") as path:
        for name, value, unit in _socket_figures(path, "recording", 1.0):
            emit(name, value, unit, backend="recording")
    if os.geteuid() == 0:
        for name, value, unit in host_figures():
            emit(name, value, unit, backend="xfrm", where="host kernel, no ESP", per="request")

    from tests.support import uml  # the harness of the test suite: boots UML with ESP

    if uml.available() is not None:
        return
    script = "exec python -c 'from bench.bench_privsep import uml_figures; uml_figures()'\n"
    result = uml.run_in_uml(script, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"the UML part failed:\n{result.output}")
    for line in result.output.splitlines():
        if line.startswith("{"):
            figure = json.loads(line)
            emit(figure["name"], figure["value"], figure["unit"], backend="xfrm", where="UML")


if __name__ == "__main__":
    main()
