"""`camtl compare RUN_DIR...`: per-task scores and aggregates of several runs side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from camtl.errors import CamtlError
from camtl.evaluation.report import report_name


def load_report(run_dir: Path, split: str = "dev") -> dict[str, Any]:
    name = f"{report_name(split)}.json"
    path = run_dir / name
    if not path.is_file():
        raise CamtlError(f"{run_dir}: no {name} (is it a finished camtl run?)")
    return json.loads(path.read_text(encoding="utf-8"))


def compare_rows(run_dirs: list[Path], split: str = "dev") -> tuple[list[str], list[dict]]:
    """(task names in first-seen order, one row per run with scores and aggregates)."""
    tasks: list[str] = []
    rows = []
    for run_dir in run_dirs:
        report = load_report(run_dir, split)
        results = report["results"]
        scores = {name: entry["scores"][entry["primary_metric"]]
                  for name, entry in results["tasks"].items()}
        tasks += [t for t in scores if t not in tasks]
        params = report.get("run_info", {}).get("parameters", {})
        rows.append({"run": run_dir.name or str(run_dir), "scores": scores,
                     **{k: results["aggregate"][k] for k in ("mean", "worst", "worst_task",
                                                              "spread")},
                     "total_params": params.get("total"),
                     "trainable_params": params.get("trainable"),
                     "wall_time_s": report.get("run_info", {}).get("wall_time_s"),
                     "data_used": report.get("run_info", {}).get(
                         "examples_used_total_fraction")})
    return tasks, rows


def format_comparison(run_dirs: list[Path], split: str = "dev", markdown: bool = False) -> str:
    tasks, rows = compare_rows(run_dirs, split)
    header = ["run", *tasks, "mean", "worst", "spread", "data used", "params", "train s"]
    body = []
    for row in rows:
        body.append([row["run"], *(_num(row["scores"].get(t)) for t in tasks),
                     _num(row["mean"]), f"{_num(row['worst'])} ({row['worst_task']})",
                     _num(row["spread"]), _percent(row["data_used"]),
                     _millions(row["total_params"]),
                     _num(row["wall_time_s"], 0)])
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
