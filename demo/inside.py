"""The demo proper, run as root on a machine whose kernel has ESP (`python -m demo.inside`):
user-mode Linux, or a private network namespace of the running kernel (see __main__).

The topology is the end-to-end suite's (tests.support.e2e): a bridge with the MIT KDC, hosts a
and b as network namespaces on it. Each host runs kink-privsep (root, XFRM) and kinkd (drops to
nobody). a's policy for b is a trap: the first datagram a sends to b makes the kernel ACQUIRE
an SA, kinkd on a sends a KINK CREATE to b over UDP 910 (RFC 4430 §3.2), and both helpers
install the SAs. Then datagrams cross both ways as ESP, captured on the wire, and `kinkctl`
shows each host's view.
"""

import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.e2e import (
    BRIDGE,
    HOSTS,
    IPPROTO_ESP,
    MARKER,
    Capture,
    Host,
    Network,
    Receiver,
    Sender,
    run,
    wait_until,
)

ROUNDS = 10  # datagrams a -> b, and as many b -> a, once the SAs are up
PROPOSAL = {"esp": {"encryption": "aes-gcm", "key_length": 128}}
_PREFIX = "demo: "


class DemoFailed(Exception):
    pass


def say(text: str = "") -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say()
    say(f"{_PREFIX}{title}")


def indented(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.rstrip("\n").splitlines())


def kinkctl(host: Host, *args: str) -> str:
    """What an operator on `host` sees: `kinkctl --socket <its control socket> ARGS`, run in
    the host's namespace."""
    argv = ["ip", "netns", "exec", host.name, sys.executable, "-m", "kink.ctl"]
    argv += ["--socket", str(host.control_socket), *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DemoFailed(f"kinkctl {' '.join(args)} on {host.name}: {done.stderr.strip()}")
    return done.stdout


def configure(a: Host, b: Host) -> None:
    """a traps traffic to b (negotiates on demand); b only answers. Both offer one proposal:
    ESP AES-GCM, 16-octet ICV, 128-bit key (RFC 4106), transport mode."""
    a.write_config({"b": {**b.peer_settings(), "start_action": "trap", "proposals": [PROPOSAL]}})
    b.write_config({"a": {**a.peer_settings(), "start_action": "none", "proposals": [PROPOSAL]}})


def established(a: Host, b: Host) -> bool:
    """Each host holds two ESP SAs, and they are the same two."""
    ends = [{(s.spi, s.src, s.dst) for s in h.states() if s.proto == "esp"} for h in (a, b)]
    return len(ends[0]) == 2 and ends[0] == ends[1]


def traffic(net: Network) -> int:
    """The first datagram a -> b (it triggers the negotiation and is dropped meanwhile), then
    ROUNDS datagrams each way; every one of those must arrive. How many arrived."""
    a, b = net["a"], net["b"]
    capture = Capture(a)
    with Receiver(b, b.addresses.v4) as at_b, Sender(a, a.addresses.v4, b.addresses.v4) as to_b:
        to_b.send()
        say(f"    a -> b: first datagram to {b.addresses.v4} port {at_b.sock.getsockname()[1]}")
        say("    a's kernel holds it and sends kinkd an ACQUIRE; kinkd sends b a CREATE")
        wait_until(lambda: established(a, b), "the SAs on both hosts")
        for h in (a, b):
            for s in h.states():
                say(f"    {h.name}: {s.proto.upper()} SA {s.src} -> {s.dst} SPI {s.spi:#010x}")
        seqs = [to_b.send() for _ in range(ROUNDS)]
        if not at_b.wait_for(seqs):
            raise DemoFailed(f"b received {len(at_b.received)} of {ROUNDS} datagrams")
    with Receiver(a, a.addresses.v4) as at_a, Sender(b, b.addresses.v4, a.addresses.v4) as to_a:
        seqs = [to_a.send() for _ in range(ROUNDS)]
        if not at_a.wait_for(seqs):
            raise DemoFailed(f"a received {len(at_a.received)} of {ROUNDS} datagrams")
    say(f"    a -> b {ROUNDS} datagrams, b -> a {ROUNDS} datagrams: all arrived")
    packets = capture.stop(frames=2 * ROUNDS)
    esp = [p for p in packets if p.protocol == IPPROTO_ESP]
    clear = [p for p in packets if MARKER in p.data]
    if len(esp) < 2 * ROUNDS or clear:
        raise DemoFailed(f"on the wire: {len(esp)} ESP packets, {len(clear)} in the clear")
    say(f"    on a's wire: {len(esp)} ESP packets, none of the datagrams in the clear")
    return 2 * ROUNDS


def show(net: Network) -> None:
    for command in ("status", "sas"):
        step(f"`kinkctl {command}` on each host")
        for h in net.hosts.values():
            say(f"  [{h.name}]")
            say(indented(kinkctl(h, command)))


def counters(net: Network) -> None:
    """The kernel's per-SA counters (`ip -s xfrm state`, parsed; keys never shown); each SA
    must have carried the traffic."""
    step("ESP counters in each kernel (`ip -s xfrm state`, keys not shown)")
    for h in net.hosts.values():
        for s in sorted(h.states(), key=lambda s: s.src != h.addresses.v4):
            direction = "out" if s.src == h.addresses.v4 else "in "
            say(
                f"    {h.name} {direction} SPI {s.spi:#010x} {'/'.join(s.algorithms)}: "
                f"{s.packets} packets, {s.bytes} bytes"
            )
            if s.packets < ROUNDS:
                raise DemoFailed(f"{h.name}: SA {s.spi:#x} counted {s.packets} packets")


def demo(net: Network) -> int:
    a, b = net["a"], net["b"]
    step(f"realm {net.realm.name}: MIT krb5kdc on the bridge {BRIDGE}, one keytab per host")
    for h in net.hosts.values():
        say(f"    {h.name}: {h.addresses.v4}, principal {h.principal}")
    configure(a, b)
    step("a's kink.toml")
    say(indented(a.config_path.read_text()))
    net.start()
    step("kink-privsep (root) and kinkd (as nobody) running on both hosts")
    for h in net.hosts.values():
        assert h.helper is not None and h.kinkd is not None
        say(f"    {h.name}: kink-privsep pid {h.helper.pid}, kinkd pid {h.kinkd.pid}")
    step("traffic from a to b negotiates the SAs (trap policy), then flows over ESP")
    carried = traffic(net)
    show(net)
    counters(net)
    return carried


def teardown(net: Network | None, work: Path) -> None:
    """Daemons and KDC stopped, namespaces and bridge removed, files deleted: nothing left
    behind when this ran in the running kernel's namespace."""
    if net is not None:
        for h in net.hosts.values():
            h.stop(signal.SIGTERM)
        net.realm.stop()
    for name in HOSTS:
        run("ip", "netns", "delete", name, check=False)
    run("ip", "link", "delete", BRIDGE, check=False)
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    # Not under a private directory: kinkd runs as nobody and reaches its files here.
    work = Path(tempfile.mkdtemp(prefix="kink-demo-"))
    net: Network | None = None
    try:
        net = Network.build(work)
        carried = demo(net)
    except Exception as exc:  # every failure ends in the one FAILED line, with the logs
        if net is not None:
            for h in net.hosts.values():
                say(h.logs())
        say(f"{_PREFIX}FAILED: {type(exc).__name__}: {exc}")
        sys.exit(1)
    finally:
        teardown(net, work)
    say()
    say(
        f"{_PREFIX}OK — kinkd on a and b negotiated ESP SAs over KINK and carried {carried} "
        "datagrams between them"
    )


if __name__ == "__main__":
    main()
