"""Run reports: ``report.json``, ``report.md``, a terminal table, and the dev-curve plot.

A report is built from three plain dicts: ``results`` (per-task scores, trivial baselines
and aggregates for one split at one step), ``history`` (evaluation records over training)
and ``run_info`` (encoder, architecture, sampler, command line, ...).

File naming: the dev report is ``report.json`` / ``report.md``; other splits get the split
as a suffix (``report_test.json``), see :func:`report_name`, so a test report never
overwrites the dev one. The dev curves go to ``dev_curves.png``. Every file is written
atomically (temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camtl.evaluation.plots import plot_dev_curves
from camtl.fileio import atomic_write_text
from camtl.runfiles import DEV_CURVES_FILE
from camtl.tasks.kinds import higher_is_better

__all__ = [
    "BELOW_BASELINE_MARK",
    "DEV_CURVES_FILE",
    "REPORT_FORMAT_VERSION",
    "beats_baseline",
    "format_table",
    "render_markdown",
    "report_name",
    "write_report",
]

logger = logging.getLogger(__name__)

REPORT_FORMAT_VERSION = 1
# Marks a task whose score does not beat its trivial baseline (terminal and Markdown).
BELOW_BASELINE_MARK = "!!"
_RUN_INFO_ORDER = (
    "encoder",
    "architecture",
    "sampler",
    "max_steps",
    "steps_run",
    "stopped_by",
    "precision",
    "wall_time_s",
    "parameters",
    "command",
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --------------------------------------------------------------------------- public API


def report_name(split: str) -> str:
    """The file stem for a split's report: ``report`` for dev, ``report_<split>`` otherwise."""
    return "report" if split == "dev" else f"report_{split}"


def check_report_folder(folder: Path | None) -> None:
    """Refuse an ``--output-dir`` that is a file before the work whose reports it would hold
    (None: the run's own folder)."""
    from camtl.validation import flag, require

    if folder is not None:
        what = flag("--output-dir", str(folder))
        require(not folder.exists() or folder.is_dir(), what, "is a file, not a folder")


def write_report(
    run_dir: Path,
    results: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    run_info: Mapping[str, Any],
    name: str = "report",
) -> list[Path]:
    """Write ``<name>.json``, ``<name>.md`` and (if history is not empty) the dev curves.

    Returns the paths written, JSON first. ``name`` must be a plain file stem; use
    :func:`report_name` to derive it from the split. A failing plot is logged and skipped.
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"report name must be a plain file stem, got {name!r}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write_text(
        run_dir / f"{name}.json", _report_json(results, history, run_info, name)
    )
    curves = _try_plot(history, run_dir / DEV_CURVES_FILE)
    md_text = render_markdown(results, run_info, curves.name if curves else None)
    md_path = atomic_write_text(run_dir / f"{name}.md", md_text)
    return [json_path, md_path] + ([curves] if curves else [])


def _try_plot(history: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Plot the dev curves; a plotting failure is logged, never fatal to the report."""
    try:
        return plot_dev_curves(history, path)
    except Exception as exc:  # a broken plot must not lose the report
        logger.warning("could not plot dev curves to %s: %s", path, exc)
        return None


def beats_baseline(metric: str, score: Any, baseline: Any) -> bool | None:
    """Whether ``score`` is strictly better than ``baseline``; None if either is missing."""
    s, b = _number(score), _number(baseline)
    if s is None or b is None:
        return None
    return s > b if higher_is_better(metric) else s < b


def format_table(results: Mapping[str, Any]) -> str:
    """A fixed-width per-task table for the terminal, with aggregate lines and a legend."""
    header = ["task", "type", "metric", "score", "baseline", "margin", ""]
    rows = [_task_cells(row, mark_md=False) for row in _task_rows(results)]
    aggregates = [[*cells, ""] for cells in _aggregate_cells(results)]
    widths = [max(len(r[i]) for r in [header, *rows, *aggregates]) for i in range(len(header))]
    numeric = {3, 4, 5}

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        ]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(["-" * w for w in widths]))
    out = [_headline(results), line(header), rule, *map(line, rows)]
    if aggregates:
        out += [rule, *map(line, aggregates)]
    note = negated_note(results)
    out += [rule, *([note] if note else []), *_baseline_summary(results)]
    return "\n".join(out)


def render_markdown(
    results: Mapping[str, Any], run_info: Mapping[str, Any], curves_file: str | None = None
) -> str:
    """The Markdown report: title, run info, per-task table, aggregates, baseline count."""
    split = str(results.get("split", "dev"))
    parts = [f"# camtl run report ({split})", "", _headline(results), ""]
    info = _run_info_lines(run_info)
    if info:
        parts += ["## Run", "", *info, ""]
    parts += ["## Scores", "", *_markdown_table(results), ""]
    note = negated_note(results)
    parts += [*([note, ""] if note else []), *_baseline_summary(results, markdown=True), ""]
    if curves_file:
        parts += ["## Dev curves", "", f"![dev curves]({curves_file})", ""]
    return "\n".join(parts)


# ------------------------------------------------------------------------------ rows


@dataclass(frozen=True)
class _TaskRow:
    task: str
    type: str
    metric: str
    score: float | None
    baseline: float | None
    beats: bool | None
    others: dict[str, float | None]

    @property
    def margin(self) -> float | None:
        """How much better than the baseline (positive = better, also for mse)."""
        if self.score is None or self.baseline is None:
            return None
        diff = self.score - self.baseline
        return diff if higher_is_better(self.metric) else -diff


def _task_rows(results: Mapping[str, Any]) -> list[_TaskRow]:
    """One row per task, in the order the results list them."""
    return [_task_row(str(task), entry) for task, entry in results.get("tasks", {}).items()]


def _task_row(task: str, entry: Mapping[str, Any]) -> _TaskRow:
    """Pull the primary metric, its baseline and the other metrics out of a task entry."""
    scores = entry.get("scores", {}) or {}
    baseline = entry.get("baseline", {}) or {}
    metric = str(entry.get("primary_metric") or next(iter(scores), "-"))
    score, base = _number(scores.get(metric)), _number(baseline.get(metric))
    others = {str(k): _number(v) for k, v in scores.items() if k != metric}
    return _TaskRow(
        task,
        str(entry.get("type", "-")),
        metric,
        score,
        base,
        beats_baseline(metric, score, base),
        others,
    )


def _task_cells(row: _TaskRow, mark_md: bool) -> list[str]:
    """Cells for task, type, metric, score, baseline, margin, marker."""
    mark = BELOW_BASELINE_MARK if row.beats is False else ""
    cells = [
        row.task,
        row.type,
        row.metric,
        _fmt(row.score, row.metric),
        _fmt(row.baseline, row.metric),
        _fmt_margin(row.margin, row.metric),
        mark,
    ]
    if mark_md:
        cells[5] = f"{cells[5]} {mark}".strip()
        cells[6] = ", ".join(f"{k} {_fmt(v, k)}" for k, v in row.others.items()) or "-"
    return cells


def _aggregate_cells(results: Mapping[str, Any]) -> list[list[str]]:
    """Rows for mean, worst task (named) and spread; baselines from ``baseline_aggregate``."""
    agg = results.get("aggregate") or {}
    base = results.get("baseline_aggregate") or {}
    if not agg:
        return []
    worst_label = f"worst ({agg['worst_task']})" if agg.get("worst_task") else "worst"
    rows = []
    for label, key, with_margin in (
        ("mean", "mean", True),
        (worst_label, "worst", True),
        ("spread", "spread", False),
    ):
        value, baseline = _number(agg.get(key)), _number(base.get(key))
        margin = None if value is None or baseline is None else value - baseline
        rows.append(
            [
                label,
                "",
                "",
                _fmt(value, key),
                _fmt(baseline, key),
                _fmt_margin(margin, key) if with_margin else "",
            ]
        )
    return rows


# ------------------------------------------------------------------------ text pieces


def _headline(results: Mapping[str, Any]) -> str:
    """One line: split, step, selection criterion, number of tasks."""
    bits = [f"split: {results.get('split', 'dev')}"]
    if results.get("step") is not None:
        bits.append(f"step: {results['step']}")
    if results.get("select_by"):
        bits.append(f"selected by: {results['select_by']}")
    bits.append(f"tasks: {len(results.get('tasks', {}))}")
    return " | ".join(bits)


def _baseline_summary(results: Mapping[str, Any], markdown: bool = False) -> list[str]:
    """E.g. ``3 of 4 tasks beat their trivial baseline (not: wnut16).``, plus a legend line."""
    rows = _task_rows(results)
    judged = [r for r in rows if r.beats is not None]
    losers = [r.task for r in judged if not r.beats]
    text = f"{len(judged) - len(losers)} of {len(judged)} tasks beat their trivial baseline"
    text += f" (not: {', '.join(losers)})." if losers else "."
    if len(judged) < len(rows):
        text += f" {len(rows) - len(judged)} not compared (score or baseline missing)."
    if not losers:
        return [text]
    legend = f"{BELOW_BASELINE_MARK} = does not beat its trivial baseline."
    return [f"**{text}**", "", legend] if markdown else [text, legend]


def _markdown_table(results: Mapping[str, Any]) -> list[str]:
    """The per-task Markdown table, with mean / worst / spread rows at the bottom."""
    header = ["task", "type", "primary metric", "score", "baseline", "margin", "other metrics"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---", "---", "---:", "---:", "---:", "---"]) + "|",
    ]
    for row in _task_rows(results):
        lines.append(_md_row(_task_cells(row, mark_md=True)))
    for cells in _aggregate_cells(results):
        cells[0] = f"**{cells[0]}**"
        lines.append(_md_row([*cells, ""]))
    return lines


def _md_row(cells: Sequence[str]) -> str:
    """A Markdown table row with pipes in cells escaped."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _run_info_lines(run_info: Mapping[str, Any]) -> list[str]:
    """Run info as a short Markdown list, well-known keys first."""
    keys = [k for k in _RUN_INFO_ORDER if k in run_info]
    keys += [k for k in run_info if k not in _RUN_INFO_ORDER]
    return [f"- **{k}**: {_fmt_info(k, run_info[k])}" for k in keys if run_info[k] is not None]


def _fmt_info(key: str, value: Any) -> str:
    """Human-readable value for one run-info entry."""
    if key == "wall_time_s" and _number(value) is not None:
        return _fmt_duration(float(value))
    if key == "parameters" and isinstance(value, Mapping):
        return _fmt_parameters(value)
    if key == "command":
        text = shlex.join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        return _md_code(text)
    if isinstance(value, (Mapping, list, tuple)):
        return _md_code(json.dumps(_jsonable(value)))
    return str(value)


def _fmt_duration(seconds: float) -> str:
    """``3723`` -> ``1h 02m 03s``."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{seconds:.1f}s"


def _fmt_parameters(params: Mapping[str, Any]) -> str:
    """``{"total": 1000, "trainable": 10}`` -> ``1,000 total, 10 trainable (1.0%)``."""
    total, trainable = _number(params.get("total")), _number(params.get("trainable"))
    bits = []
    if total is not None:
        bits.append(f"{int(total):,} total")
    if trainable is not None:
        share = f" ({100 * trainable / total:.1f}%)" if total else ""
        bits.append(f"{int(trainable):,} trainable{share}")
    return ", ".join(bits) or _md_code(json.dumps(_jsonable(params)))


def _md_code(text: str) -> str:
    """Inline code that survives single backticks inside ``text``."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


AGGREGATE_KEYS = ("mean", "worst", "spread")


def _decimals(name: str) -> int:
    """2 for 0-100 scores and the aggregates, 4 for a lower-is-better metric (mse)."""
    return 2 if name in AGGREGATE_KEYS or higher_is_better(name) else 4


def _fmt(value: float | None, metric: str) -> str:
    """A score, or ``-`` when missing."""
    return "-" if value is None else f"{value:.{_decimals(metric)}f}"


def _fmt_margin(value: float | None, metric: str) -> str:
    """A signed margin; ``-`` when missing."""
    return "-" if value is None else f"{value:+.{_decimals(metric)}f}"


def negated_note(results: Mapping[str, Any]) -> str | None:
    """A line saying which tasks enter the mean and worst negated, when any do."""
    lower = sorted(
        f"{name} ({entry['primary_metric']})"
        for name, entry in (results.get("tasks") or {}).items()
        if entry.get("primary_metric") and not higher_is_better(entry["primary_metric"])
    )
    if not lower:
        return None
    return (
        f"mean and worst take {', '.join(lower)} negated: lower is better there, "
        "and a higher mean is always the better model."
    )


def _number(value: Any) -> float | None:
    """A finite float, or None for missing / non-numeric / NaN / inf values."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ------------------------------------------------------------------------------- JSON


def _report_json(
    results: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    run_info: Mapping[str, Any],
    name: str,
) -> str:
    """The full report as strict JSON (non-finite numbers become null)."""
    rows = _task_rows(results)
    summary = {
        "n_tasks": len(rows),
        "tasks_beating_baseline": [r.task for r in rows if r.beats],
        "tasks_not_beating_baseline": [r.task for r in rows if r.beats is False],
    }
    payload = {
        "format_version": REPORT_FORMAT_VERSION,
        "name": name,
        "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "run_info": run_info,
        "results": results,
        "summary": summary,
        "history": list(history),
    }
    return json.dumps(_jsonable(payload), indent=2, allow_nan=False) + "\n"


def _jsonable(value: Any) -> Any:
    """Recursively convert to JSON-safe values: NaN/inf -> None, Paths and others -> str."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return _jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)
