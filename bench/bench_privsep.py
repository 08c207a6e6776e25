"""kink_privsep: requests/s through the helper's Unix socket (recording backend): one at a time,
pipelined (one message each) and in batches of protocol.MAX_BATCH (one message each way per
batch); the cost of encoding one SA message, and, when user-mode Linux can run, SA add+delete
pairs/s on a real ESP kernel: straight through netlink and through the helper."""

from __future__ import annotations

import contextlib
import ipaddress
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

from bench.common import emit, rate
from kink_privsep import protocol, validate, xfrm
from kink_privsep.client import Client
from kink_privsep.model import IPPROTO_ESP, MODE_TRANSPORT, Config, SaId, SaSpec

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
def _helper(backend: str) -> Iterator[str]:
    """`python -m kink_privsep` on a fresh socket, for this uid; yields the socket path."""
    with tempfile.TemporaryDirectory(prefix="kpb-") as d:
        path = os.path.join(d, "privsep.sock")
        command = [sys.executable, "-m", "kink_privsep", "--socket", path, "--backend", backend]
        command += ["--daemon-uid", str(os.getuid()), "--log-level", "WARNING"]
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

        serial = rate(pair, seconds)
        piped = rate(pipelined, seconds) * PIPELINE / 2
        in_batches = rate(batched, seconds) * protocol.MAX_BATCH / 2
    return [
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
