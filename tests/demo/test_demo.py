"""The README's demo (`./scripts/demo`) end to end: its host side boots UML and runs the inside."""

import re
from pathlib import Path

import pytest

from demo.__main__ import run
from tests.support.uml import require_uml

pytestmark = [pytest.mark.uml, pytest.mark.kdc]


def test_demo_negotiates_and_carries_esp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_uml()
    status = run(tmp_path)
    out = capsys.readouterr().out
    assert status == 0, out
    assert "demo: OK — 10 datagrams carried over ESP between a and b" in out.splitlines()
    assert re.search(r"a -> b {2}CREATE xid=0x[0-9a-f]{8} \d+ octets \[ApReq, KINK_ENCRYPT\]", out)
    assert re.search(r"b -> a {2}REPLY xid=0x[0-9a-f]{8} \d+ octets \[ApRep, KINK_ENCRYPT\]", out)
    counts = re.findall(r"^ {4}([ab]) (in |out) SPI 0x[0-9a-f]{8}: (\d+) packets", out, re.M)
    assert sorted((h, d) for h, d, _ in counts) == [
        ("a", "in "),
        ("a", "out"),
        ("b", "in "),
        ("b", "out"),
    ]
    assert all(int(packets) >= 5 for _, _, packets in counts)
    # No key material in what the demo prints (ip xfrm state's keys are masked).
    assert not re.search(r"0x[0-9a-f]{16,}", out)
    assert out.count("<key not shown>") == 4
