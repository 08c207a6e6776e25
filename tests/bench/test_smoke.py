"""Each daemon benchmark at a tiny size, so that none can rot: it runs and prints well-formed
JSON lines (bench.common.emit). No timing is asserted."""

import json
import os
from collections.abc import Callable

import pytest

from bench import bench_exchange, bench_flood, bench_scale, bench_storm, bench_traffic

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="kinkd drops from root to nobody")

TINY: dict[str, Callable[[], None]] = {
    "exchange": lambda: bench_exchange.run(loads=(20,), seconds=0.2),
    "storm": lambda: bench_storm.run(rounds=1),
    "scale": lambda: bench_scale.run(peers=4),
    "flood": lambda: bench_flood.run(count=200),
    "traffic": lambda: bench_traffic.run((("tiny", 4, 4),), (("tiny", 4, 4),)),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_benchmark_emits_json_lines(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    TINY[name]()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines and all(line["bench"].startswith(name) for line in lines)
    for line in lines:
        assert isinstance(line["value"], int | float) and isinstance(line["unit"], str)
        assert line["machine"]["cores"] == os.cpu_count()
    for line in lines:
        if line["bench"] == "exchange.load":
            # how far the offered load fell behind its schedule (bench.harness.Pacing)
            assert line["trigger_late_max_ms"] >= 0 and line["all_pairs_busy"] >= 0, line
