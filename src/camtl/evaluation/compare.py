"""`camtl compare RUN_DIR...`: per-task scores and aggregates of several runs side by side."""

from __future__ import annotations

import json
import os
import re
import statistics
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from camtl.errors import CamtlError
from camtl.evaluation.metrics import aggregate, lower_is_better_tasks
from camtl.evaluation.report import report_name
from camtl.runfiles import CONFIG_FILE


def load_report(run_dir: Path, split: str = "dev") -> dict[str, Any]:
    name = f"{report_name(split)}.json"
    path = run_dir / name
    if not path.is_file():
        raise CamtlError(f"{run_dir}: no {name} (is it a finished camtl run?)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        tasks = report["results"]["tasks"]
        for entry in tasks.values():
            float(entry["scores"][entry["primary_metric"]])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CamtlError(
            f"{path}: damaged evaluation report ({type(exc).__name__}: {exc})"
        ) from None
    return report


def primary_scores(report: dict[str, Any]) -> dict[str, float]:
    """Each task's primary score in an evaluation report."""
    tasks = report["results"]["tasks"]
    return {name: entry["scores"][entry["primary_metric"]] for name, entry in tasks.items()}


def report_lower_is_better(report: dict[str, Any]) -> set[str]:
    """The tasks of a report whose primary metric is lower-is-better."""
    tasks = report["results"]["tasks"]
    return lower_is_better_tasks({name: entry["primary_metric"] for name, entry in tasks.items()})


def _row(name: str, report: dict[str, Any]) -> dict[str, Any]:
    info = report.get("run_info", {})
    params = info.get("parameters", {})
    return score_row(
        name,
        primary_scores(report),
        lower_is_better=report_lower_is_better(report),
        total_params=params.get("total"),
        encoder_params=params.get("encoder"),
        wall_time_s=info.get("wall_time_s"),
        data_used=info.get("examples_used_total_fraction"),
        starved=longest_starvation(info),
        single=is_single_task(report),
    )


def score_row(
    name: str,
    scores: dict[str, float],
    *,
    lower_is_better: Collection[str],
    total_params: int | None,
    encoder_params: int | None,
    wall_time_s: float | None,
    data_used: float | None,
    starved: float | None,
    single: bool,
) -> dict[str, Any]:
    """One run's row of the comparison from its primary scores and run facts (a report's,
    or those a results file kept after the run's folder is gone)."""
    return {
        "run": name,
        "scores": scores,
        "lower_is_better": sorted(lower_is_better),
        # mean, worst, worst_task, spread: as the report computed them
        **aggregate(scores, lower_is_better=lower_is_better),
        "total_params": total_params,
        "encoder_params": encoder_params,
        "wall_time_s": wall_time_s,
        "data_used": data_used,
        "starved": starved,
        "models": 1,
        "single": single,
        "seeds": 1,
    }


def display_names(run_dirs: list[Path]) -> list[str]:
    """Each run's folder name, with its parent's in front where two runs share a name
    (runs/a/wnut16 and runs/b/wnut16 become a/wnut16 and b/wnut16)."""
    # abspath, not resolve: "." gets its folder's name and a link keeps its own, not its target's
    paths = [Path(os.path.abspath(d)) for d in run_dirs]
    names = [p.name or str(p) for p in paths]
    counts = Counter(names)
    return [f"{p.parent.name}/{n}" if counts[n] > 1 else n for p, n in zip(paths, names)]


def longest_starvation(info: dict[str, Any]) -> float | None:
    """The longest stretch any task went without an example, as a share of the run's
    steps (None: a report without them, e.g. camtl add-task's)."""
    gaps, steps = info.get("longest_unsampled_steps"), info.get("steps_run")
    if not gaps or not steps:
        return None
    return max(gaps.values()) / steps


def _config_without_seed(run_dir: Path) -> str | None:
    """The run's saved config, every default filled in (a hand-written config may leave
    keys out), without its seed and output folder. None: no config saved."""
    from camtl.config import load_saved_config
    from camtl.model_config import section_in_use
    from camtl.structured import to_dict

    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        config = to_dict(load_saved_config(run_dir))
    except CamtlError:  # not loadable here (a task kind this process lacks): compare as saved
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for key in ("seed", "output_dir"):
        config.pop(key, None)
    model = config.get("model")
    if isinstance(model, dict):
        config["model"] = section_in_use(model)  # other encoder kinds' options: unused
    return json.dumps(config, sort_keys=True)


def seed_group_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs that differ only in their seed as one row: means over seeds, and their
    standard deviations under ``sd`` (per task and for mean, worst and spread)."""
    first = rows[0]
    if len(rows) == 1:
        return first
    tasks = list(first["scores"])

    def over(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), statistics.stdev(values)

    scores, sd = {}, {}
    for task in tasks:
        scores[task], sd[task] = over([r["scores"][task] for r in rows])
    summary = {}
    for key in ("mean", "worst", "spread"):
        summary[key], sd[key] = over([r[key] for r in rows])
    times = [r["wall_time_s"] for r in rows]
    used = [r["data_used"] for r in rows]
    starved = [r["starved"] for r in rows]
    name = re.sub(r"[_-](?:seed|s)\d+$", "", first["run"])  # wide_seed12, camtl_s12
    return {
        **first,
        "run": f"{name} ({len(rows)} seeds)",
        "scores": scores,
        **summary,
        "worst_task": Counter(r["worst_task"] for r in rows).most_common(1)[0][0],
        "wall_time_s": None if None in times else statistics.fmean(times),
        "data_used": None if None in used else statistics.fmean(used),
        "starved": None if None in starved else max(starved),
        "sd": sd,
        "seeds": len(rows),
        "seed_scores": [r["scores"] for r in rows],  # for aggregates over a subset of tasks
    }


def group_by_seed(run_dirs: list[Path], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration (first-seen order); runs without a saved config alone."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for index, (run_dir, row) in enumerate(zip(run_dirs, rows)):
        key = _config_without_seed(run_dir)
        groups.setdefault(key if key is not None else f"#{index}", []).append(row)
    return [seed_group_row(group) for group in groups.values()]


def is_single_task(report: dict[str, Any]) -> bool:
    """A run trained on one task alone (an added task's run has a source run instead)."""
    info = report.get("run_info", {})
    return len(report["results"]["tasks"]) == 1 and "source_run" not in info


def single_task_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The single-task runs as one system: one model per task, parameters summed."""
    scores = {t: s for row in rows for t, s in row["scores"].items()}
    lower = {t for row in rows for t in row["lower_is_better"]}
    agg = aggregate(scores, lower_is_better=lower)
    totals = [r["total_params"] for r in rows]
    times = [r["wall_time_s"] for r in rows]
    return {
        "run": f"single-task ({len(rows)} models)",
        "scores": scores,
        "lower_is_better": sorted(lower),
        **{k: agg[k] for k in ("mean", "worst", "worst_task", "spread")},
        "total_params": None if None in totals else sum(totals),
        "encoder_params": rows[0]["encoder_params"],
        "wall_time_s": None if None in times else sum(times),
        "data_used": None,
        "starved": None,
        "models": len(rows),
    }


def compare_rows(
    run_dirs: list[Path], split: str = "dev", by_seed: bool = False
) -> tuple[list[str], list[dict]]:
    """(task names in first-seen order, one row per run with scores and aggregates).

    ``by_seed``: runs whose saved configs differ only in the seed become one row (means
    over the seeds, standard deviations under ``sd``). Single-task runs: ``rank_rows``.
    """
    all_rows = [
        _row(name, load_report(run_dir, split))
        for run_dir, name in zip(run_dirs, display_names(run_dirs))
    ]
    if by_seed:
        all_rows = group_by_seed(run_dirs, all_rows)
    return rank_rows(all_rows)


def rank_rows(all_rows: list[dict[str, Any]]) -> tuple[list[str], list[dict]]:
    """(task names in first-seen order, the rows to show) from rows built by ``_row`` or
    ``seed_group_row``.

    Runs trained on one task each (distinct tasks) are gathered into one "single-task" row
    (placed first), and every other row counts the tasks on which it reaches or beats that
    row's score. Single-task runs that share a task stay separate rows.
    """
    multi = [row for row in all_rows if not row["single"]]
    single = [row for row in all_rows if row["single"]]
    single_tasks = [t for row in single for t in row["scores"]]
    if len(set(single_tasks)) < len(single_tasks):  # e.g. one task at several budgets:
        multi, single = single + multi, []  # no one single-task system to compare to
    rows = ([single_task_row(single)] if single else []) + multi
    tasks: list[str] = []
    for row in rows:
        tasks += [t for t in row["scores"] if t not in tasks]
    lower = {t for row in rows for t in row.get("lower_is_better", ())}
    add_shared_mean(tasks, rows, lower)
    if single:
        reference = rows[0]["scores"]
        for row in rows:
            shared = [t for t in row["scores"] if t in reference]
            row["reaches_single_task"] = (
                sum(reaches(row["scores"][t], reference[t], t in lower) for t in shared),
                len(shared),
            )
            if row is not rows[0]:  # the reference itself is 100% everywhere
                row["relative_worst"] = relative_worst(row["scores"], reference, lower)
    return tasks, rows


def reaches(score: float, reference: float, lower_is_better: bool, margin: float = 0.0) -> bool:
    """Whether ``score`` is at its single-task ``reference`` or better, or at most
    ``margin`` worse (an mse is better lower)."""
    return score <= reference + margin if lower_is_better else score >= reference - margin


def add_shared_mean(
    tasks: list[str], rows: list[dict[str, Any]], lower_is_better: Collection[str] = ()
) -> None:
    """When the rows cover different tasks (a single-task row still missing a task, an
    added task), each row's "mean" is over its own tasks and the means are not comparable:
    then every row also gets ``shared_mean`` over the tasks all rows have (an mse counted
    negated, as in "mean")."""
    shared = [t for t in tasks if all(t in row["scores"] for row in rows)]
    if not shared or len(shared) == len(tasks):
        return

    def mean(scores: dict[str, float]) -> float:
        return statistics.fmean(-scores[t] if t in lower_is_better else scores[t] for t in shared)

    for row in rows:
        row["shared_mean"] = mean(row["scores"])
        row["shared_tasks"] = len(shared)
        per_seed = row.get("seed_scores")
        if per_seed:
            row["sd"]["shared_mean"] = statistics.stdev(mean(scores) for scores in per_seed)


def relative_worst(
    scores: dict[str, float],
    reference: dict[str, float],
    lower_is_better: Collection[str] = (),
) -> tuple[float, str] | None:
    """The lowest score as a percentage of the same task's single-task score, and its task:
    "worst" on a scale where tasks with different ceilings are comparable (an mse: the
    single-task error as a percentage of this one's)."""
    ratios = {
        t: 100 * reference[t] / scores[t]
        if t in lower_is_better
        else 100 * scores[t] / reference[t]
        for t in scores
        if reference.get(t, 0) > 0 and (t not in lower_is_better or scores[t] > 0)
    }
    if not ratios:
        return None
    task = min(ratios, key=ratios.__getitem__)
    return ratios[task], task


def comparison_table(
    run_dirs: list[Path], split: str = "dev", by_seed: bool = False
) -> tuple[list[str], list[list[str]]]:
    """(header, formatted rows) of the comparison, for text, Markdown or HTML; a row of
    several seeds shows each score as mean ± standard deviation."""
    return table_cells(*compare_rows(run_dirs, split, by_seed))


def table_cells(tasks: list[str], rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, formatted rows) of rows from ``rank_rows``."""
    with_single = "reaches_single_task" in rows[0]
    shared = rows[0].get("shared_tasks")
    header = [
        "run",
        *tasks,
        "mean",
        *([f"mean of the {shared} shared"] if shared else []),
        "worst",
        "spread",
        *(["worst / single-task", "tasks >= single-task"] if with_single else []),
        "data used",
        "starved",
        "params",
        "x encoder",
        "train s",
    ]
    body = []
    for row in rows:
        reach = row.get("reaches_single_task")
        relative = row.get("relative_worst")
        ratio = (
            row["total_params"] / row["encoder_params"]
            if row["total_params"] and row["encoder_params"]
            else None
        )
        sd = row.get("sd", {})
        body.append(
            [
                row["run"],
                *(_num(row["scores"].get(t), sd=sd.get(t)) for t in tasks),
                _num(row["mean"], sd=sd.get("mean")),
                *([_num(row["shared_mean"], sd=sd.get("shared_mean"))] if shared else []),
                f"{_num(row['worst'], sd=sd.get('worst'))} ({row['worst_task']})",
                _num(row["spread"], sd=sd.get("spread")),
                *(
                    [
                        "-" if relative is None else f"{relative[0]:.1f}% ({relative[1]})",
                        "-" if reach is None else f"{reach[0]}/{reach[1]}",
                    ]
                    if with_single
                    else []
                ),
                _percent(row["data_used"]),
                _percent(row.get("starved"), 1),
                _millions(row["total_params"]),
                _num(ratio),
                _num(row["wall_time_s"], 0),
            ]
        )
    return header, body


def format_comparison(
    run_dirs: list[Path], split: str = "dev", markdown: bool = False, by_seed: bool = False
) -> str:
    return render_table(*comparison_table(run_dirs, split, by_seed), markdown=markdown)


def render_table(header: list[str], body: list[list[str]], markdown: bool = False) -> str:
    """A table as Markdown, or as aligned plain text for a terminal."""
    if markdown:
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in body)])


def _num(value: Any, digits: int = 2, sd: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")


def _percent(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def _millions(value: Any) -> str:
    return "-" if value is None else f"{value / 1e6:.2f}M"
