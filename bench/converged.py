"""The comparison at convergence (docs/results.md): per row (single-task, plain, CA-MTL,
ladder rows) the per-seed dev and test scores of the selected checkpoints, where and why
each run stopped, and the aggregate columns of the paper's Table 3.4; plus the dev curves
of the rows in one plot.

    python bench/converged.py --out bench/results/converged.json \\
        --plot bench/results/converged_curves.png \\
        --row single_task runs/converged_single_task/* \\
        --row plain runs/converged/plain_s* --row camtl runs/converged/camtl_s*

A row of single-task runs (one task each) is one system: one model per task, parameters
and training time summed. Every other row is one run per seed, averaged over its seeds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from camtl.evaluation.compare import load_report, relative_worst
from camtl.evaluation.metrics import aggregate
from camtl.fileio import read_jsonl
from camtl.yamlio import read_yaml

LATE_SHARE = 0.2  # the convergence test: the dev mean's gain over the last 20% of steps


def late_gain(history: list[dict[str, Any]], steps_run: int | None) -> float | None:
    """How much the best dev mean rose over the run's last LATE_SHARE of steps."""
    if not history or not steps_run:
        return None
    early = [h["mean"] for h in history if h["step"] <= steps_run * (1 - LATE_SHARE)]
    return max(h["mean"] for h in history) - max(early) if early else None


def run_entry(run_dir: Path) -> dict[str, Any]:
    """One finished run: its seed, selected scores on dev and test, and how it stopped."""
    dev = load_report(run_dir, "dev")
    info = dev.get("run_info", {})
    test = load_report(run_dir, "test") if (run_dir / "report_test.json").is_file() else None
    status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    seed = read_yaml(run_dir / "config.yaml").get("seed")

    def scores(report: dict[str, Any] | None) -> dict[str, float] | None:
        if report is None:
            return None
        tasks = report["results"]["tasks"]
        return {t: e["scores"][e["primary_metric"]] for t, e in tasks.items()}

    params = info.get("parameters", {})
    history = [
        {"step": r["step"], "mean": r["mean"]} for r in read_jsonl(run_dir / "metrics.jsonl")
    ]
    return {
        "run": str(run_dir),
        "seed": seed,
        "dev": scores(dev),
        "test": scores(test),
        "selected_step": status.get("best_step"),
        "steps_run": status.get("step"),
        "stopped_by": status.get("stopped_by"),
        "wall_time_s": status.get("wall_time_s"),
        "data_used": info.get("examples_used_total_fraction"),
        "params_total": params.get("total"),
        "encoder_params": params.get("encoder"),
        "dev_gain_last_20pct": late_gain(history, status.get("step")),
        "history": history,
    }


def system_scores(runs: list[dict[str, Any]], split: str, single: bool) -> dict[str, float]:
    """Per-task scores of the row: union over single-task runs, else mean over seeds."""
    if single:
        return {t: s for r in runs for t, s in (r[split] or {}).items()}
    tasks = list(runs[0][split] or {})
    return {
        t: statistics.fmean(r[split][t] for r in runs) for t in tasks if all(r[split] for r in runs)
    }


def row_summary(
    name: str, runs: list[dict[str, Any]], reference: dict[str, dict[str, float]] | None
) -> dict[str, Any]:
    single = name == "single_task"
    summary: dict[str, Any] = {"runs": runs, "seeds": 1 if single else len(runs)}
    for split in ("dev", "test"):
        scores = system_scores(runs, split, single)
        if not scores:
            continue
        agg = aggregate(scores)
        entry: dict[str, Any] = {"tasks": scores, **agg}
        if not single and len(runs) > 1:
            per_seed = [aggregate(r[split]) for r in runs if r[split]]
            entry["sd"] = {
                key: statistics.stdev(a[key] for a in per_seed) for key in ("mean", "worst")
            }
        if reference is not None and split in reference:
            ref = reference[split]
            shared = [t for t in scores if t in ref]
            entry["tasks_at_or_above_single_task"] = [
                sum(scores[t] >= ref[t] for t in shared),
                len(shared),
            ]
            rel = relative_worst(scores, ref)
            entry["relative_worst"] = None if rel is None else {"percent": rel[0], "task": rel[1]}
        summary[split] = entry
    totals = [r["params_total"] for r in runs]
    encoder = runs[0]["encoder_params"]
    total = sum(totals) if single else totals[0]
    summary["params_total"] = total
    summary["params_x_encoder"] = total / encoder if total and encoder else None
    times = [r["wall_time_s"] for r in runs]
    summary["training_time_s"] = sum(times) if single else statistics.fmean(times)
    used = [r["data_used"] for r in runs if r["data_used"] is not None]
    summary["data_used"] = statistics.fmean(used) if used and not single else None
    return summary


def plot(rows: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    # one colour per row, fixed by its place (every seed of a row shares it; grey is the
    # single-task line's, so the cycle skips it; more rows than colours wrap around)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = itertools.cycle([c for c in palette if c != "#7f7f7f"])
    for name, row in rows.items():
        if name == "single_task":
            ax.axhline(row["dev"]["mean"], linestyle="--", color="grey", label="single-task")
            continue
        colour = next(colours)
        for k, run in enumerate(row["runs"]):
            steps = [h["step"] for h in run["history"]]
            means = [h["mean"] for h in run["history"]]
            ax.plot(steps, means, alpha=0.8, color=colour, label=name if k == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("dev mean (primary metric)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plot", type=Path)
    parser.add_argument(
        "--row",
        nargs="+",
        action="append",
        required=True,
        metavar=("NAME", "RUN_DIR"),
        help="a row's name, then its finished run directories",
    )
    args = parser.parse_args()
    groups = {row[0]: [Path(p) for p in row[1:]] for row in args.row}
    runs = {
        name: [
            run_entry(d)
            for d in dirs
            if (d / "status.json").is_file()
            and json.loads((d / "status.json").read_text())["status"] == "completed"
        ]
        for name, dirs in groups.items()
    }
    for name, entries in runs.items():
        if not entries:  # a row not run yet, or a mistyped path: say so, not a silent gap
            shown = " ".join(str(d) for d in groups[name])
            print(f"row {name}: no finished run in {shown}", file=sys.stderr)
    reference = None
    rows: dict[str, dict[str, Any]] = {}
    if runs.get("single_task"):
        rows["single_task"] = row_summary("single_task", runs["single_task"], None)
        reference = {
            s: rows["single_task"][s]["tasks"] for s in ("dev", "test") if s in rows["single_task"]
        }
    for name, entries in runs.items():
        if name != "single_task" and entries:
            rows[name] = row_summary(name, entries, reference)
    result = {"rows": rows, "command": "python " + " ".join(sys.argv)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        plot(rows, args.plot)
    for name, row in rows.items():
        dev = row.get("dev", {})
        print(name, {k: dev.get(k) for k in ("mean", "worst", "worst_task", "spread")})
        for run in row["runs"]:
            gain = run["dev_gain_last_20pct"]
            late = "-" if gain is None else f"{gain:+.2f}"
            print(
                f"  {run['run']}: stopped at {run['steps_run']} ({run['stopped_by']}), "
                f"best at {run['selected_step']}, dev mean gain over the last 20%: {late}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
