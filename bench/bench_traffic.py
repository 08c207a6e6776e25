"""One traffic poll of dead peer detection (RFC 4430 §3.7, kink.daemon.traffic): the CPU it
takes in the helper and in kinkd, and the helper's longest turn (what a queued SA install waits
behind), for the two ways of reading the kernel's byte counters:
- "dump": a dump of every SA the helper owns, all its fields, in one request (kinkd's poll until
  session 8, kept here as the baseline: _dump_poll);
- "counters": the `counters` request for the installed children's SAs only, a few dozen SAs a
  request, one request in flight (traffic.poll, as kinkd runs it).

Each request goes through the helper's own steps (kink_privsep.server: decode, validate,
execute, encode; no socket), timed apart from kinkd's (its decode of the replies and the
poll's own work), by thread CPU time: load-immune but for cache effects. The engine is a
stand-in holding the children (its sa_activity does nothing: the same for both ways).

Shapes: bench_exchange's host b under load (64 installed pairs, ~2,000 old inbound SAs waiting
out their DELETE grace, §3.3), and 100,000 installed pairs. Backends: the recording one; and as
root, the running kernel's XFRM in a network namespace of its own (no ESP there: the SAs are
larval ones from ALLOCSPI, which have counters all the same).
"""

import os
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address
from types import SimpleNamespace
from typing import Any, cast

import trio

from bench.common import emit, netns, quick
from kink.daemon import traffic
from kink.daemon.helper_args import PROTOCOL_NAMES
from kink.daemon.helper_client import HelperClient
from kink.engine import Engine
from kink.engine.sadb import ChildState, SaPair
from kink.wire.ipsec_doi import ProtocolId
from kink_privsep import protocol, validate
from kink_privsep.backend import Backend
from kink_privsep.model import (
    IPPROTO_ESP,
    MODE_TUNNEL,
    Config,
    Hello,
    SaId,
    SaSpec,
    SpiRequest,
)
from kink_privsep.recording import RecordingBackend
from kink_privsep.service import Service

LOCAL, REMOTE = "192.0.2.1", "192.0.2.2"
REQID = Config().reqid_range[0] + 1
IN_SPI, OUT_SPI, OLD_SPI = 0x1000_0000, 0x2000_0000, 0x3000_0000
Shape = tuple[str, int, int]  # name, installed pairs, old inbound SAs besides
EXCHANGE_B: Shape = ("bench_exchange b", 64, 1_970)  # b held ~2,100 SAs under load
MANY: Shape = ("100,000 pairs", 100_000, 0)
XFRM_MANY: Shape = ("10,000 pairs", 10_000, 0)  # ALLOCSPI of 100,000s would take the bench's time


class _Loopback:
    """What traffic.poll needs of a HelperClient, in this thread: each call goes through the
    helper's steps for a request, timed apart from the caller's."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.hello = service.execute(Hello())[0]
        self.turns: list[float] = []  # thread CPU of each request in the helper

    async def call(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        on_part: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        began = time.thread_time()
        _, (request,) = protocol.decode_requests(protocol.encode_request(1, op, args or {}))
        assert isinstance(request, protocol.Request)
        command = validate.command(request.op, request.args, self.service.config)
        results = self.service.execute(command)
        last = len(results) - 1
        replies = [protocol.encode_reply(1, r, more=i < last) for i, r in enumerate(results)]
        self.turns.append(time.thread_time() - began)
        whole: dict[str, Any] = {}
        for data in replies:  # kinkd's reader
            (reply,) = protocol.decode_messages(data)
            assert isinstance(reply, protocol.Reply) and reply.ok
            if on_part is None:
                protocol.extend_result(whole, reply.result)
            else:
                on_part(reply.result)
        return whole


def _engine(pairs: int) -> Engine:
    """The engine's part a poll reads: its address and installed children (one ESP pair each)."""
    peer = SimpleNamespace(config=SimpleNamespace(address=REMOTE))
    children = {
        i: SimpleNamespace(
            state=ChildState.INSTALLED,
            peer=peer,
            sas=[SaPair(ProtocolId.ESP, IN_SPI + i, OUT_SPI + i)],
        )
        for i in range(pairs)
    }
    stand_in = SimpleNamespace(
        config=SimpleNamespace(address=LOCAL),
        sadb=SimpleNamespace(children=children),
        sa_activity=lambda *args: None,
    )
    return cast(Engine, stand_in)


async def _dump_poll(engine: Engine, helper: _Loopback) -> None:
    """The poll as kinkd made it until session 8 (Daemon._poll_traffic): a dump of every SA."""
    octets: dict[tuple[str, int, str], int] = {}

    def part(result: dict[str, Any]) -> None:
        for sa in result.get("sas", ()):
            if "counters" in sa:
                key = sys.intern(str(sa["proto"])), int(sa["spi"]), sys.intern(str(sa["dst"]))
                octets[key] = int(sa["counters"]["bytes"])

    await helper.call("dump", {"what": "sa"}, part)
    now = trio.current_time()
    for child in engine.sadb.children.values():
        if child.state is ChildState.INSTALLED:
            for pair in child.sas:
                name = PROTOCOL_NAMES[pair.protocol]
                got = octets.get((name, pair.inbound_spi, engine.config.address))
                sent = octets.get((name, pair.outbound_spi, child.peer.config.address))
                if got is not None and sent is not None:
                    engine.sa_activity(pair.protocol, pair.inbound_spi, got, sent, now)


def _nothing() -> None:
    pass


_Ip = IPv4Address | IPv6Address


def _sas(pairs: int, old: int) -> list[tuple[_Ip, _Ip, int]]:
    """(destination, source, SPI) of the SAs of a shape: each installed pair's inbound and
    outbound SA, and the `old` inbound SAs waiting out their DELETE grace."""
    here, there = ip_address(LOCAL), ip_address(REMOTE)
    sas = [(here, there, IN_SPI + i) for i in range(pairs)]
    sas += [(there, here, OUT_SPI + i) for i in range(pairs)]
    sas += [(here, there, OLD_SPI + i) for i in range(old)]
    return sas


def _recording(pairs: int, old: int) -> Backend:
    backend = RecordingBackend()
    for dst, src, spi in _sas(pairs, old):
        spec = SaSpec(
            SaId(dst, spi, IPPROTO_ESP),
            src,
            MODE_TUNNEL,
            REQID,
            "aes-cbc",
            bytearray(16),
            "hmac-sha1-96",
            bytearray(20),
        )
        backend.add_sa(spec, update=False)
    return backend


def _xfrm(pairs: int, old: int) -> Backend:
    from kink_privsep.backend import XfrmBackend

    backend = XfrmBackend()
    for dst, src, spi in _sas(pairs, old):
        backend.alloc_spi(SpiRequest(IPPROTO_ESP, MODE_TUNNEL, src, dst, REQID, spi, spi))
    return backend


def _poll_figures(backend: Backend, shape: Shape, where: str) -> None:
    name, pairs, old = shape
    engine = _engine(pairs)
    for way in ("dump", "counters"):
        helper = _Loopback(Service(backend, Config()))
        began = time.thread_time()
        if way == "dump":
            trio.run(_dump_poll, engine, helper)
        else:
            trio.run(traffic.poll, engine, cast(HelperClient, helper), _nothing)
        spent = time.thread_time() - began
        emit(
            "traffic.poll_longest_helper_turn",
            max(helper.turns) * 1e3,
            "ms",
            way=way,
            backend=where,
            shape=name,
            sas_in_kernel=2 * pairs + old,
            installed_pairs=pairs,
            requests=len(helper.turns),
            helper_cpu_ms=round(sum(helper.turns) * 1e3, 2),
            kinkd_cpu_ms=round((spent - sum(helper.turns)) * 1e3, 2),
        )


def run(shapes: tuple[Shape, ...], kernel_shapes: tuple[Shape, ...]) -> None:
    """The figures of each shape on the recording backend, and as root of each kernel shape
    on the running kernel."""
    for shape in shapes:
        _poll_figures(_recording(*shape[1:]), shape, "recording")
    if os.geteuid() != 0:
        return
    from tests.support.e2e import in_namespace

    for shape in kernel_shapes:
        with netns() as name, in_namespace(name):
            backend = _xfrm(*shape[1:])
            try:
                _poll_figures(backend, shape, "xfrm (host kernel, larval SAs)")
            finally:
                backend.close()


def main() -> None:
    many = ("20,000 pairs", 20_000, 0) if quick() else MANY
    run((EXCHANGE_B, many), (EXCHANGE_B, XFRM_MANY))


if __name__ == "__main__":
    main()
