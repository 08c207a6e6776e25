"""The README's demo (`./scripts/demo`) end to end, on both of its machines: user-mode Linux
(the running kernel here has no ESP, or --uml), and the network-namespace mode the demo takes on
a kernel with ESP (exercised by running the demo inside UML, whose kernel has it)."""

import re
from pathlib import Path

import pytest

from demo.__main__ import run
from tests.support.uml import require_uml, run_in_uml

pytestmark = [pytest.mark.uml, pytest.mark.kdc]

_OK = (
    "demo: OK — kinkd on a and b negotiated ESP SAs over KINK and carried 20 datagrams between them"
)
# A `kinkctl sas` row: peer, SA, state, role, mode, protocol, SPI-IN, SPI-OUT (kink/ctl).
_SAS_ROW = re.compile(
    r"^ {4}(?P<peer>[ab]) +1 +installed +(?P<role>initiator|responder) +transport +esp +"
    r"(?P<spi_in>0x[0-9a-f]{8}) +(?P<spi_out>0x[0-9a-f]{8}) ",
    re.M,
)
_COUNTER = re.compile(r"^ {4}([ab]) (in |out) SPI (0x[0-9a-f]{8}) \S+: (\d+) packets", re.M)


def check_report(out: str) -> None:
    """The OK line; both hosts' `kinkctl sas` show the same SPIs, crossed; each kernel SA of
    those SPIs counted traffic; no key material anywhere."""
    assert _OK in out.splitlines(), out
    sas = out.split("`kinkctl sas` on each host", 1)[1]
    rows = {m["peer"]: m for m in _SAS_ROW.finditer(sas)}
    assert sorted(rows) == ["a", "b"], sas  # a's row names its peer b, and b's a
    at_a, at_b = rows["b"], rows["a"]
    assert (at_a["role"], at_b["role"]) == ("initiator", "responder")
    assert (at_a["spi_in"], at_a["spi_out"]) == (at_b["spi_out"], at_b["spi_in"])
    counters = _COUNTER.findall(out)
    assert sorted((h, d) for h, d, _, _ in counters) == [
        ("a", "in "),
        ("a", "out"),
        ("b", "in "),
        ("b", "out"),
    ]
    spis = {at_a["spi_in"], at_a["spi_out"]}
    assert {spi for _, _, spi, _ in counters} == spis
    assert all(int(packets) > 0 for _, _, _, packets in counters)
    assert "kinkctl status" in out and out.count("helper     connected (backend xfrm") == 2
    assert not re.search(r"0x[0-9a-f]{16,}", out)


def test_demo_in_user_mode_linux(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_uml()
    status = run(tmp_path, uml=True)
    out = capsys.readouterr().out
    assert status == 0, out
    assert "demo: booting a user-mode Linux kernel" in out
    check_report(out)


def test_demo_in_namespaces_of_a_kernel_with_esp() -> None:
    """`python -m demo` where the kernel has ESP: the namespace mode, which must leave no
    namespace, bridge, process or temp dir behind."""
    require_uml()
    script = (
        "python -m demo; echo rc=$?\n"
        "echo leftover netns: $(ip netns list) links: $(ip -o link show | grep -c kinkbr0)\n"
        "echo leftover processes: $(ps -eo comm= | grep -cE '^(krb5kdc|kinkd|python)')\n"
        "echo leftover files: $(ls /tmp | grep -c kink-demo)\n"
    )
    result = run_in_uml(script, timeout=240, mem="1024M")
    out = result.output
    assert "demo: the running kernel has ESP: hosts are network namespaces of it" in out, out
    assert "rc=0" in out.splitlines(), out
    check_report(out)
    assert "leftover netns: links: 0" in out.splitlines(), out
    assert "leftover processes: 0" in out.splitlines(), out
    assert "leftover files: 0" in out.splitlines(), out
