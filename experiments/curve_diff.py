"""Two runs' dev curves side by side (docs/research/2026-convergence.md, the unfrozen
CA-MTL run): each run's best step and per-task dev scores there (and test scores where
both runs have them: a finished run's report_test.json, or its results-file record), and
the difference of the dev means at the steps both evaluated (range, mean, how many
within a point; `--per-step` lists them). Reads metrics.jsonl, so it works on an
unfinished run; a run whose folder is gone is read from the results file of
experiments/converged.py as FILE.json:RUN_NAME (its dev mean at every evaluation, its
per-task scores at the selected step only).

    python experiments/curve_diff.py runs/converged/camtl_s12 runs/converged/camtl_unfrozen_s12
    python experiments/curve_diff.py experiments/results/converged.json:camtl_s13 \\
        runs/converged/plain_s13
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from camtl.evaluation.compare import load_report, primary_scores
from camtl.fileio import read_jsonl
from converged import read_results  # experiments/ is on sys.path (script folder)


def compare(base: list[dict[str, Any]], other: list[dict[str, Any]], per_step: bool) -> str:
    """The report for two runs' metrics.jsonl records (each with step, mean and tasks; the
    selected one of a finished run also with test)."""
    best_base = max(base, key=lambda r: r["mean"])
    best_other = max(other, key=lambda r: r["mean"])
    lines = [
        f"best: base step {best_base['step']} mean {best_base['mean']:.2f}; "
        f"other step {best_other['step']} mean {best_other['mean']:.2f}"
    ]
    tests = (best_base.get("test"), best_other.get("test"))
    for task, score in best_base["tasks"].items():
        change = best_other["tasks"][task] - score
        line = f"  {task}: base {score:.2f} other {best_other['tasks'][task]:.2f} ({change:+.2f})"
        if tests[0] and tests[1]:
            base_test, other_test = tests[0][task], tests[1][task]
            line += f"; test base {base_test:.2f} other {other_test:.2f}"
            line += f" ({other_test - base_test:+.2f})"
        lines.append(line)
    base_mean = {r["step"]: r["mean"] for r in base}
    matched = [
        (r["step"], base_mean[r["step"]], r["mean"]) for r in other if r["step"] in base_mean
    ]
    if per_step:
        lines.append("step: base other (other - base)")
        lines += [f"  {s}: {b:.2f} {o:.2f} ({o - b:+.2f})" for s, b, o in matched]
    diffs = [o - b for _, b, o in matched]
    within = sum(abs(d) <= 1.0 for d in diffs)
    lines.append(
        f"matched steps: {len(diffs)}, other - base from {min(diffs):+.2f} to "
        f"{max(diffs):+.2f}, mean {statistics.fmean(diffs):+.2f}, within one point at {within}"
    )
    return "\n".join(lines)


def recorded_curve(results: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """A run's records rebuilt from a converged.py results file: the dev mean at every
    evaluation, and the per-task dev scores at the selected (best) step."""
    runs = [run for row in results["rows"].values() for run in row["runs"]]
    found = [run for run in runs if Path(run["run"]).name == name]
    if len(found) != 1:
        known = ", ".join(sorted(Path(run["run"]).name for run in runs))
        raise SystemExit(f"{len(found)} runs named {name!r} in the results file; it has: {known}")
    run = found[0]
    records = [{**point, "tasks": {}} for point in run["history"]]
    best = max(records, key=lambda r: r["mean"])
    if best["step"] != run["selected_step"]:
        raise SystemExit(f"{name}: the best dev mean is not at the selected step")
    best["tasks"] = run["dev"]
    if run.get("test"):
        best["test"] = run["test"]
    return records


def load_curve(source: str) -> list[dict[str, Any]]:
    """A run folder's metrics.jsonl, or RESULTS.json:RUN_NAME (see the module docstring)."""
    path, _, name = source.partition(".json:")
    if name:
        return recorded_curve(read_results(Path(path + ".json")), name)
    records = [r for r in read_jsonl(Path(source) / "metrics.jsonl") if "mean" in r]
    if not records:
        raise SystemExit(f"{source}: no dev evaluation in metrics.jsonl (not a run folder?)")
    run_dir = Path(source)
    if (run_dir / "report_test.json").is_file():  # finished: the selected checkpoint on test
        selected = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
        for record in records:
            if record["step"] == selected.get("best_step"):
                record["test"] = primary_scores(load_report(run_dir, "test"))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base", help="a run folder, or RESULTS.json:RUN_NAME")
    parser.add_argument("other", help="a run folder, or RESULTS.json:RUN_NAME")
    parser.add_argument("--per-step", action="store_true", help="list every matched step")
    args = parser.parse_args()
    print(compare(load_curve(args.base), load_curve(args.other), args.per_step))


if __name__ == "__main__":
    main()
