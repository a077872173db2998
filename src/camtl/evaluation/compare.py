"""`camtl compare RUN_DIR...`: per-task scores and aggregates of several runs side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from camtl.errors import CamtlError
from camtl.evaluation.metrics import aggregate
from camtl.evaluation.report import report_name


def load_report(run_dir: Path, split: str = "dev") -> dict[str, Any]:
    name = f"{report_name(split)}.json"
    path = run_dir / name
    if not path.is_file():
        raise CamtlError(f"{run_dir}: no {name} (is it a finished camtl run?)")
    return json.loads(path.read_text(encoding="utf-8"))


def _row(run_dir: Path, report: dict[str, Any]) -> dict[str, Any]:
    results, info = report["results"], report.get("run_info", {})
    params = info.get("parameters", {})
    return {"run": run_dir.name or str(run_dir),
            "scores": {name: entry["scores"][entry["primary_metric"]]
                       for name, entry in results["tasks"].items()},
            **{k: results["aggregate"][k] for k in ("mean", "worst", "worst_task", "spread")},
            "total_params": params.get("total"), "encoder_params": params.get("encoder"),
            "wall_time_s": info.get("wall_time_s"),
            "data_used": info.get("examples_used_total_fraction"), "models": 1}


def is_single_task(report: dict[str, Any]) -> bool:
    """A run trained on one task alone (an added task's run has a source run instead)."""
    info = report.get("run_info", {})
    return len(report["results"]["tasks"]) == 1 and "source_run" not in info


def single_task_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The single-task runs as one system: one model per task, parameters summed."""
    scores = {t: s for row in rows for t, s in row["scores"].items()}
    agg = aggregate(scores)
    totals = [r["total_params"] for r in rows]
    times = [r["wall_time_s"] for r in rows]
    return {"run": f"single-task ({len(rows)} models)", "scores": scores,
            **{k: agg[k] for k in ("mean", "worst", "worst_task", "spread")},
            "total_params": None if None in totals else sum(totals),
            "encoder_params": rows[0]["encoder_params"],
            "wall_time_s": None if None in times else sum(times), "data_used": None,
            "models": len(rows)}


def compare_rows(run_dirs: list[Path], split: str = "dev") -> tuple[list[str], list[dict]]:
    """(task names in first-seen order, one row per run with scores and aggregates).

    Runs trained on one task each (distinct tasks) are gathered into one "single-task" row
    (placed first), and every other row counts the tasks on which it reaches or beats that
    row's score. Single-task runs that share a task stay separate rows.
    """
    multi, single = [], []
    for run_dir in run_dirs:
        report = load_report(run_dir, split)
        (single if is_single_task(report) else multi).append(_row(run_dir, report))
    single_tasks = [t for row in single for t in row["scores"]]
    if len(set(single_tasks)) < len(single_tasks):  # e.g. one task at several budgets:
        multi, single = single + multi, []          # no one single-task system to compare to
    rows = ([single_task_row(single)] if single else []) + multi
    tasks: list[str] = []
    for row in rows:
        tasks += [t for t in row["scores"] if t not in tasks]
    if single:
        reference = rows[0]["scores"]
        for row in rows:
            shared = [t for t in row["scores"] if t in reference]
            row["reaches_single_task"] = (
                sum(row["scores"][t] >= reference[t] for t in shared), len(shared))
    return tasks, rows


def comparison_table(run_dirs: list[Path], split: str = "dev"
                     ) -> tuple[list[str], list[list[str]]]:
    """(header, formatted rows) of the comparison, for text, Markdown or HTML."""
    tasks, rows = compare_rows(run_dirs, split)
    with_single = "reaches_single_task" in rows[0]
    header = ["run", *tasks, "mean", "worst", "spread",
              *(["tasks >= single-task"] if with_single else []),
              "data used", "params", "x encoder", "train s"]
    body = []
    for row in rows:
        reach = row.get("reaches_single_task")
        ratio = (row["total_params"] / row["encoder_params"]
                 if row["total_params"] and row["encoder_params"] else None)
        body.append([row["run"], *(_num(row["scores"].get(t)) for t in tasks),
                     _num(row["mean"]), f"{_num(row['worst'])} ({row['worst_task']})",
                     _num(row["spread"]),
                     *([f"{reach[0]}/{reach[1]}"] if with_single else []),
                     _percent(row["data_used"]), _millions(row["total_params"]),
                     _num(ratio), _num(row["wall_time_s"], 0)])
    return header, body


def format_comparison(run_dirs: list[Path], split: str = "dev", markdown: bool = False) -> str:
    header, body = comparison_table(run_dirs, split)
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in body)])


def _num(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _millions(value: Any) -> str:
    return "-" if value is None else f"{value / 1e6:.2f}M"
