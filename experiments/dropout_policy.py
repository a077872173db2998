"""Summarise experiments/dropout_policy.sh's runs: per run the dev and test primary scores,
mean and worst task; per configuration (config x setting) mean ± sd over the seeds.

    python experiments/dropout_policy.py runs/dropout_policy --out FILE
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

from camtl.evaluation.compare import load_report, primary_scores, report_lower_is_better
from camtl.evaluation.metrics import aggregate

SETTINGS = "pretrained_bits|pretrained|attention0|bits|unfrozen500|unfrozen"  # longer first
RUN = re.compile(rf"(?P<config>\w+?)_(?P<setting>{SETTINGS})_seed(?P<seed>\d+)$")


def run_entry(run_dir: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"run": run_dir.name}
    for split in ("dev", "test"):
        report = load_report(run_dir, split)
        scores = primary_scores(report)
        agg = aggregate(scores, lower_is_better=report_lower_is_better(report))
        entry[split] = {
            "tasks": scores,
            "mean": agg["mean"],
            "worst": agg["worst"],
            "worst_task": agg["worst_task"],
        }
    status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    entry["wall_time_s"] = status.get("wall_time_s")
    return entry


def summarise(entries: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"seeds": len(entries)}
    for split in ("dev", "test"):
        for key in ("mean", "worst"):
            values = [e[split][key] for e in entries]
            out[f"{split}_{key}"] = statistics.fmean(values)
            out[f"{split}_{key}_sd"] = statistics.stdev(values) if len(values) > 1 else None
    times = [e["wall_time_s"] for e in entries if e["wall_time_s"] is not None]
    out["wall_time_s"] = statistics.fmean(times) if times else None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    groups: dict[str, list[dict[str, Any]]] = {}
    for run_dir in sorted(args.root.iterdir()):
        match = RUN.match(run_dir.name)
        if match is None or '"completed"' not in (run_dir / "status.json").read_text():
            continue
        key = f"{match['config']}_{match['setting']}"
        groups.setdefault(key, []).append({**run_entry(run_dir), "seed": int(match["seed"])})
    result = {
        "rows": {key: {"runs": runs, **summarise(runs)} for key, runs in groups.items()},
        "command": "bash experiments/dropout_policy.sh",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for key, row in result["rows"].items():
        print(
            f"{key}: {row['seeds']} seeds, dev {row['dev_mean']:.2f} "
            f"(worst {row['dev_worst']:.2f}), test {row['test_mean']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
