"""The comparison at convergence (docs/research/2026-convergence.md): per row (single-task,
plain, CA-MTL, ladder rows) the per-seed dev and test scores of the selected
checkpoints, where and why each run stopped, and the aggregate columns of the paper's
Table 3.4; plus the dev curves of the rows in one plot.

    python experiments/converged.py --out experiments/results/converged.json \\
        --plot experiments/results/converged_curves.png \\
        --row single_task runs/converged/single_task/* \\
        --row plain runs/converged/plain_s* --row camtl runs/converged/camtl_s*

A row of single-task runs (one task each) is one system: one model per task, parameters
and training time summed. Every other row is one run per seed, averaged over its seeds.

Run folders hold checkpoints and do not travel; the results file does. ``--keep`` carries
every run an earlier results file recorded whose folder is not given again (a finished
run on another machine), so a row can gain a seed without the folders of the others:

    python experiments/converged.py --keep experiments/results/converged.json \\
        --out experiments/results/converged.json \\
        --row ladder_3_cond_bottleneck runs/converged/ladder_3_*
    python experiments/converged.py --table experiments/results/converged.json [--split test]

``--table`` prints a results file as the Markdown table of `camtl compare --by-seed`;
``--keep-row NAME`` (repeatable) carries only the rows named, e.g. one row of issue 12's
file into another results file; ``--keep FILE --recorded NAME`` answers (exit status)
whether FILE records that run;
``--targets DIR`` prints each finished single-task run's primary dev score under DIR as a
YAML mapping, score_dro's ``targets`` (experiments/converged.sh, row camtl_distill_dro).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from camtl.evaluation.compare import (
    load_report,
    longest_starvation,
    primary_scores,
    rank_rows,
    reaches,
    relative_worst,
    render_table,
    score_row,
    seed_group_row,
    table_cells,
)
from camtl.evaluation.metrics import aggregate
from camtl.fileio import read_jsonl
from camtl.runfiles import TRAIN_LOG_FILE
from camtl.yamlio import read_yaml

# the offline suite's primary metrics (accuracy, F1, correlations): all higher-is-better
LOWER_IS_BETTER_TASKS: frozenset[str] = frozenset()

WITHIN = 0.5  # points below a task's single-task score that still count as level with it

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
    config = read_yaml(run_dir / "config.yaml")
    seed = config.get("seed")

    params = info.get("parameters", {})
    records = read_jsonl(run_dir / "metrics.jsonl")
    history = [{"step": r["step"], "mean": r["mean"]} for r in records]
    return {
        "run": str(run_dir),
        "seed": seed,
        # taught by teachers: the row's compute then includes theirs
        "distilled": bool((config.get("training") or {}).get("distillation")),
        "dev": primary_scores(dev),
        "test": primary_scores(test) if test else None,
        "selected_step": status.get("best_step"),
        "steps_run": status.get("step"),
        "stopped_by": status.get("stopped_by"),
        "wall_time_s": status.get("wall_time_s"),
        "data_used": info.get("examples_used_total_fraction"),
        "starved": longest_starvation(info),
        "precision": info.get("precision"),
        "params_total": params.get("total"),
        "encoder_params": params.get("encoder"),
        "dev_gain_last_20pct": late_gain(history, status.get("step")),
        "dev_task_peaks": task_peaks(records),
        "loss_weights": loss_weights(run_dir / TRAIN_LOG_FILE),
        "history": history,
    }


def loss_weights(train_log: Path) -> dict[str, dict[str, float]] | None:
    """How the run's balancer weighted each task's loss: the mean over the logged steps and
    the last logged weights (None for a run without a train log or logged weights)."""
    if not train_log.is_file():
        return None
    logged = [r["task_weights"] for r in read_jsonl(train_log) if r.get("task_weights")]
    if not logged:
        return None
    tasks = list(logged[-1])
    return {
        "mean": {t: statistics.fmean(w[t] for w in logged if t in w) for t in tasks},
        "last": dict(logged[-1]),
    }


def task_peaks(records: list[dict[str, Any]]) -> dict[str, float] | None:
    """Each task's best dev score over a run's evaluations, wherever it came: what one
    model could score were each task free to pick its own checkpoint."""
    per_task: dict[str, list[float]] = {}
    for record in records:
        for task, score in (record.get("tasks") or {}).items():
            per_task.setdefault(task, []).append(score)
    if not per_task:
        return None
    pick = {t: (min if t in LOWER_IS_BETTER_TASKS else max) for t in per_task}
    return {t: pick[t](scores) for t, scores in per_task.items()}


def is_single_task_row(name: str) -> bool:
    """A row of one model per task (``single_task``, or a variant such as
    ``single_task_attention0``): one system, not seeds to average."""
    return name.startswith("single_task")


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
    single = is_single_task_row(name)
    summary: dict[str, Any] = {"runs": runs, "seeds": 1 if single else len(runs)}
    for split in ("dev", "test"):
        scores = system_scores(runs, split, single)
        if not scores:
            continue
        agg = aggregate(scores, lower_is_better=LOWER_IS_BETTER_TASKS)
        entry: dict[str, Any] = {"tasks": scores, **agg}
        if not single and len(runs) > 1:
            per_seed = [
                aggregate(r[split], lower_is_better=LOWER_IS_BETTER_TASKS) for r in runs if r[split]
            ]
            entry["sd"] = {
                key: statistics.stdev(a[key] for a in per_seed) for key in ("mean", "worst")
            }
        peaks = [r.get("dev_task_peaks") for r in runs]
        if split == "dev" and not single and all(peaks):
            # the mean over seeds of each seed's mean of task peaks (issue 38: is the gap to
            # single-task the shared checkpoint, or the model?)
            entry["mean_of_task_peaks"] = statistics.fmean(
                statistics.fmean(p.values()) for p in peaks if p
            )
        if reference is not None and split in reference:
            ref = reference[split]
            shared = [t for t in scores if t in ref]
            lower = LOWER_IS_BETTER_TASKS
            entry["tasks_at_or_above_single_task"] = [
                sum(reaches(scores[t], ref[t], t in lower) for t in shared),
                len(shared),
            ]
            # issue 38's target: a task counts when at most WITHIN below its single-task model
            entry["tasks_within_0_5_of_single_task"] = [
                sum(reaches(scores[t], ref[t], t in lower, WITHIN) for t in shared),
                len(shared),
            ]
            rel = relative_worst(scores, ref, lower)
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
        if is_single_task_row(name):  # the reference line; a variant's curves would mix tasks
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


def finished_runs(groups: dict[str, list[Path]]) -> dict[str, list[dict[str, Any]]]:
    """Each row's finished runs among the folders given (an unfinished one is left out)."""
    return {
        name: [
            run_entry(d)
            for d in dirs
            if (d / "status.json").is_file()
            and json.loads((d / "status.json").read_text())["status"] == "completed"
        ]
        for name, dirs in groups.items()
    }


def carry_over(
    runs: dict[str, list[dict[str, Any]]],
    earlier: dict[str, Any],
    only_rows: list[str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """``runs`` plus every run of ``earlier`` (a results file) not read again here, the
    earlier file's rows first, in its order; each row's runs by seed. ``only_rows``: carry
    those rows of ``earlier`` and no other."""
    fresh = {run["run"] for entries in runs.values() for run in entries}
    merged: dict[str, list[dict[str, Any]]] = {}
    for name, row in kept_rows(earlier, only_rows).items():
        merged[name] = [run for run in row["runs"] if run["run"] not in fresh]
    for name, entries in runs.items():
        merged.setdefault(name, []).extend(entries)
    return {
        name: sorted(entries, key=lambda run: (run["seed"] is None, run["seed"] or 0, run["run"]))
        for name, entries in merged.items()
    }


def read_results(path: Path) -> dict[str, Any]:
    """A results file this script wrote, or one clear error naming the file."""
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SystemExit(f"{path}: not a readable results file ({error})") from None
    if not isinstance(results, dict) or not isinstance(results.get("rows"), dict):
        raise SystemExit(f"{path}: no 'rows' (not a results file of experiments/converged.py)")
    return results


def kept_rows(results: dict[str, Any], only_rows: list[str] | None) -> dict[str, Any]:
    """A results file's rows, or those of them named in ``only_rows``."""
    rows = results["rows"]
    return rows if only_rows is None else {n: r for n, r in rows.items() if n in only_rows}


def recorded_names(results: dict[str, Any], only_rows: list[str] | None = None) -> set[str]:
    """The row names of a results file and the folder names of the runs it records (all
    of them finished); of the rows ``only_rows`` names, where given."""
    rows = kept_rows(results, only_rows)
    return set(rows) | {Path(run["run"]).name for row in rows.values() for run in row["runs"]}


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Every row with a finished run, the single-task row first (the reference)."""
    reference: dict[str, dict[str, float]] | None = None
    rows: dict[str, dict[str, Any]] = {}
    if runs.get("single_task"):
        rows["single_task"] = row_summary("single_task", runs["single_task"], None)
        reference = {
            s: rows["single_task"][s]["tasks"] for s in ("dev", "test") if s in rows["single_task"]
        }
    for name, entries in runs.items():
        if name != "single_task" and entries:
            rows[name] = row_summary(name, entries, reference)
            if any(run.get("distilled") for run in entries) and "single_task" in rows:
                # a distilled model's compute includes its teachers' (the single-task runs)
                teachers = rows["single_task"]["training_time_s"]
                rows[name]["teachers_training_time_s"] = teachers
                rows[name]["total_compute_s"] = teachers + rows[name]["training_time_s"]
    return rows


def markdown_table(result: dict[str, Any], split: str) -> str:
    """A results file's rows as `camtl compare --by-seed --markdown` shows run folders:
    one row per results row (a row of several seeds as mean ± sd), single-task first."""
    table_rows = []
    for name, row in result["rows"].items():
        single = is_single_task_row(name)
        per_run = [
            score_row(
                Path(run["run"]).name,
                run[split],
                lower_is_better=LOWER_IS_BETTER_TASKS,
                total_params=run["params_total"],
                encoder_params=run["encoder_params"],
                wall_time_s=run["wall_time_s"],
                data_used=run["data_used"],
                starved=run.get("starved"),  # None: recorded before the file kept it
                single=single,
            )
            for run in row["runs"]
            if run.get(split)
        ]
        if single:
            table_rows += per_run
        elif per_run:
            table_rows.append(seed_group_row(per_run))
    if not table_rows:
        raise SystemExit(f"no {split} scores in the results file")
    return render_table(*table_cells(*rank_rows(table_rows)), markdown=True)


def single_task_targets(root: Path) -> dict[str, float]:
    """task -> primary dev score of every finished run under ``root`` (one task each)."""
    targets: dict[str, float] = {}
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        status = run_dir / "status.json"
        if not status.is_file() or '"completed"' not in status.read_text(encoding="utf-8"):
            continue
        targets.update(primary_scores(load_report(run_dir, "dev")))
    return targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument(
        "--row",
        nargs="+",
        action="append",
        default=[],
        metavar=("NAME", "RUN_DIR"),
        help="a row's name, then its finished run directories",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="RESULTS_JSON",
        help="carry over the runs this earlier results file recorded and --row does not give",
    )
    parser.add_argument(
        "--keep-row",
        action="append",
        metavar="NAME",
        help="with --keep: carry over this row of the file and no other (repeatable)",
    )
    parser.add_argument(
        "--table",
        type=Path,
        metavar="RESULTS_JSON",
        help="print this results file as a Markdown table and exit",
    )
    parser.add_argument(
        "--recorded",
        metavar="NAME",
        help="with --keep: exit 0 if that file records a row or a finished run of this name, "
        "else 1 (experiments/converged.sh asks before training a run)",
    )
    parser.add_argument(
        "--targets",
        type=Path,
        metavar="SINGLE_TASK_ROOT",
        help="print the single-task runs' primary dev scores as a YAML mapping and exit",
    )
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    args = parser.parse_args()
    if args.targets:
        targets = single_task_targets(args.targets) if args.targets.is_dir() else {}
        if not targets:
            print(f"{args.targets}: no finished single-task run", file=sys.stderr)
            return 1
        print("{" + ", ".join(f"{task}: {score:.4f}" for task, score in targets.items()) + "}")
        return 0
    if args.keep_row and not args.keep:
        parser.error("--keep-row needs --keep RESULTS_JSON")
    if args.recorded:
        if not args.keep:
            parser.error("--recorded needs --keep RESULTS_JSON")
        if not args.keep.is_file():
            return 1
        recorded = recorded_names(read_results(args.keep), args.keep_row)
        return 0 if args.recorded in recorded else 1
    if args.table:
        print(markdown_table(read_results(args.table), args.split))
        return 0
    if args.out is None or not (args.row or args.keep):
        parser.error("--out and at least one --row or --keep are required (or --table alone)")
    groups = {row[0]: [Path(p) for p in row[1:]] for row in args.row}
    runs = finished_runs(groups)
    for name, entries in runs.items():
        if not entries:  # a row not run yet, or a mistyped path: say so, not a silent gap
            shown = " ".join(str(d) for d in groups[name])
            print(f"row {name}: no finished run in {shown}", file=sys.stderr)
    result: dict[str, Any] = {}
    if args.keep:
        earlier = read_results(args.keep)
        missing = sorted(set(args.keep_row or []) - set(earlier["rows"]))
        if missing:
            raise SystemExit(f"{args.keep}: no row {', '.join(missing)} (--keep-row)")
        runs = carry_over(runs, earlier, args.keep_row)
        # the commands that built the runs carried over, oldest first
        commands = [*earlier.get("earlier_commands", []), earlier.get("command")]
        result["earlier_commands"] = [c for c in commands if c]
    rows = summarise(runs)
    result = {"rows": rows, "command": "python " + " ".join(sys.argv), **result}
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
