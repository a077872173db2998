"""Summarise experiments/encoders.sh's runs: per encoder the median seconds per training
step (from train_log.jsonl, intervals without an evaluation), dev and test mean and worst
task, parameters, and the step time over MiniLM's.

    python experiments/encoders.py runs/encoders --out FILE
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from camtl.evaluation.compare import load_report, primary_scores, report_lower_is_better
from camtl.evaluation.metrics import aggregate


def seconds_per_step(run_dir: Path) -> float:
    """Median over the logged intervals that hold no evaluation (eval_every from the
    run's config)."""
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    eval_every = int(config["training"]["eval_every"])
    rows = [
        json.loads(line)
        for line in (run_dir / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    rows = [r for r in rows if "elapsed_s" in r and "step" in r]
    rates = []
    for before, after in zip(rows, rows[1:]):
        if after["step"] // eval_every != before["step"] // eval_every:
            continue  # an evaluation ran in between
        rates.append((after["elapsed_s"] - before["elapsed_s"]) / (after["step"] - before["step"]))
    return statistics.median(rates)


def run_entry(run_dir: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"run": str(run_dir)}
    for split in ("dev", "test"):
        report = load_report(run_dir, split)
        scores = primary_scores(report)
        agg = aggregate(scores, lower_is_better=report_lower_is_better(report))
        entry[split] = {"tasks": scores, "mean": agg["mean"], "worst": agg["worst"]}
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    entry["parameters"] = report["run_info"].get("parameters")
    entry["seconds_per_step"] = seconds_per_step(run_dir)
    status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    entry["wall_time_s"] = status.get("wall_time_s")
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = {
        encoder: run_entry(args.root / f"demo_{encoder}")
        for encoder in ("minilm", "mpnet")
        if '"completed"' in (args.root / f"demo_{encoder}" / "status.json").read_text()
    }
    result: dict[str, Any] = {"rows": rows, "command": "bash experiments/encoders.sh"}
    if len(rows) == 2:
        result["mpnet_step_over_minilm"] = (
            rows["mpnet"]["seconds_per_step"] / rows["minilm"]["seconds_per_step"]
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for encoder, row in rows.items():
        print(
            f"{encoder}: {row['seconds_per_step']:.3f} s/step, dev {row['dev']['mean']:.2f} "
            f"(worst {row['dev']['worst']:.2f}), test {row['test']['mean']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
