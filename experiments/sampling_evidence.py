"""Sampling and balancing evidence from finished runs: time to a target dev mean, and task
starvation.

For every run it reads metrics.jsonl (dev mean and training seconds at each evaluation,
evaluations and checkpoints excluded from the clock), train_log.jsonl (examples drawn per
task, logged every few steps) and report.json, and reports:

  final_mean, train_s           the last evaluation's dev mean and the training time
  reaches_baseline_at           the first evaluation whose dev mean is at least the baseline
                                run's final dev mean: its step and training seconds (null
                                if never), and ``pays_for_itself``: reached in no more time
                                than the baseline took
  task_share                    share of all trained examples per task
  longest_unsampled_steps       per task, the longest stretch of logging windows in which
                                the task got no example (the paper saw QA tasks starve)
  min_window_share              per task, its smallest share in any logging window

    python experiments/sampling_evidence.py runs/sampling/*/ \
        --baseline runs/sampling/1_uniform_equal \
        --out experiments/results/sampling_evidence.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def starvation(log: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task: share of all examples, longest run of steps without one, smallest share."""
    previous: dict[str, int] = {}
    last_step = 0
    stats: dict[str, dict[str, Any]] = {}
    for record in log:
        drawn, step = record["examples_drawn"], record["step"]
        window_total = sum(drawn.values()) - sum(previous.values())
        for task, count in drawn.items():
            entry = stats.setdefault(
                task, {"run": 0, "longest_unsampled_steps": 0, "min_window_share": 1.0}
            )
            new = count - previous.get(task, 0)
            entry["run"] = entry["run"] + (step - last_step) if new == 0 else 0
            entry["longest_unsampled_steps"] = max(entry["longest_unsampled_steps"], entry["run"])
            if window_total:
                entry["min_window_share"] = min(entry["min_window_share"], new / window_total)
        previous, last_step = dict(drawn), step
    total = sum(previous.values()) or 1
    return {
        task: {
            "task_share": round(previous[task] / total, 4),
            "longest_unsampled_steps": entry["longest_unsampled_steps"],
            "min_window_share": round(entry["min_window_share"], 4),
        }
        for task, entry in stats.items()
    }


def summarise(run: Path, target: float | None, baseline_train_s: float | None) -> dict[str, Any]:
    history = read_jsonl(run / "metrics.jsonl")
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    info = report.get("run_info", {})
    final = history[-1]
    reached = next((r for r in history if target is not None and r["mean"] >= target), None)
    return {
        "run": run.name,
        "sampler": info.get("sampler"),
        "balancer": info.get("balancer"),
        "final_mean": final["mean"],
        "train_s": final.get("train_s"),
        "wall_time_s": info.get("wall_time_s"),
        "examples_used_total_fraction": info.get("examples_used_total_fraction"),
        "reaches_baseline_at": None
        if reached is None
        else {"step": reached["step"], "train_s": reached.get("train_s")},
        "pays_for_itself": None
        if reached is None or baseline_train_s is None
        else reached.get("train_s", float("inf")) <= baseline_train_s,
        "curve": [
            {"step": r["step"], "train_s": r.get("train_s"), "mean": r["mean"], "worst": r["worst"]}
            for r in history
        ],
        "tasks": starvation(read_jsonl(run / "train_log.jsonl")),
    }


def markdown(results: list[dict[str, Any]], target: float) -> str:
    lines = [
        f"target: the baseline's final dev mean, {target:.2f}",
        "",
        "| run | final mean | train s | reaches target at (step, train s) | "
        "longest unsampled stretch (steps, task) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        at = r["reaches_baseline_at"]
        worst = max(r["tasks"].items(), key=lambda kv: kv[1]["longest_unsampled_steps"])
        lines.append(
            f"| {r['run']} | {r['final_mean']:.2f} | {_seconds(r['train_s'])} | "
            + ("never" if at is None else f"{at['step']}, {_seconds(at['train_s'])}")
            + f" | {worst[1]['longest_unsampled_steps']} ({worst[0]}) |"
        )
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument(
        "--baseline", type=Path, required=True, help="the run whose final dev mean is the target"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    baseline = read_jsonl(args.baseline / "metrics.jsonl")[-1]
    target, budget = baseline["mean"], baseline.get("train_s")
    results = [summarise(run, target, budget) for run in args.runs]
    print(markdown(results, target))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {"target_mean": target, "baseline": args.baseline.name, "runs": results}, indent=2
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
