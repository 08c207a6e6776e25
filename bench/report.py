"""bench/run's last step: summary.md (every figure) and latency.png (latency against offered
load, from the exchange.load lines) from DIR/results.jsonl."""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(out: Path) -> None:
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x]
    rows = ["| benchmark | value | unit | details |", "|---|---|---|---|"]
    for line in lines:
        extra = {k: v for k, v in line.items() if k not in ("bench", "value", "unit", "machine")}
        rows.append(f"| {line['bench']} | {line['value']} | {line['unit']} | {json.dumps(extra)} |")
    machine = lines[0]["machine"] if lines else {}
    (out / "summary.md").write_text(f"Machine: {json.dumps(machine)}\n\n" + "\n".join(rows) + "\n")
    loads = [x for x in lines if x["bench"] == "exchange.load"]
    if loads:
        offered = [x["offered_rate"] for x in loads]
        fig, ax = plt.subplots()
        ax.plot(offered, [x["p50_ms"] for x in loads], "o-", label="p50")
        ax.plot(offered, [x["p99_ms"] for x in loads], "s-", label="p99")
        ax.set_xlabel("offered load (CREATE exchanges/s)")
        ax.set_ylabel("latency (ms)")
        ax.set_yscale("log")
        ax.legend()
        fig.savefig(out / "latency.png", dpi=100)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
