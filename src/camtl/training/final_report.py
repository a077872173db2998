"""The end of a run: the best checkpoint's dev and test reports, the task-share plot and,
for a balancer whose weights move, the loss-weight plot."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from camtl.data.prepare import TaskData
from camtl.errors import CamtlError
from camtl.evaluation.evaluate import add_baselines, evaluate_tasks
from camtl.fileio import read_jsonl
from camtl.model_card import write_model_card
from camtl.modeling.model import MultiTaskModel
from camtl.runfiles import LOSS_WEIGHTS_FILE, TASK_SHARES_FILE, TRAIN_LOG_FILE
from camtl.sampling import BatchScheduler, TaskSampler


def selected_step(history: list[dict[str, Any]], select_by: str) -> int:
    """The step of the best dev evaluation, as selection saved it: the first of the highest
    finite scores (a NaN or infinite one, an mse of NaN predictions, is never saved)."""
    finite = [record for record in history if math.isfinite(record[select_by])]
    if not finite:
        raise CamtlError(
            f"every dev evaluation scored {select_by} NaN or infinite, so no model was saved "
            "(did training diverge? try a lower learning rate)"
        )
    return max(finite, key=lambda record: record[select_by])["step"]


@dataclass
class FinalReportSettings:
    select_by: str  # the aggregate that chose the best checkpoint
    eval_batch_size: int
    pad_token_id: int
    device: torch.device
    precision: str


def write_final_reports(
    run_dir: Path,
    best: MultiTaskModel,
    tasks: list[TaskData],
    history: list[dict[str, Any]],
    best_dev_results: dict[str, Any] | None,
    info: dict[str, Any],
    settings: FinalReportSettings,
) -> int:
    """report.{json,md} (dev, with the curves) and report_test.{json,md} of the best model;
    returns its step. Dev results of the saved model, when the run evaluated it itself, are
    reused rather than computed again."""
    from camtl.evaluation.report import format_table, report_name, write_report

    best_step = selected_step(history, settings.select_by)
    for split in ("dev", "test"):
        if not any(t.examples.get(split) for t in tasks):
            continue
        if split == "dev" and best_dev_results is not None:
            results = add_baselines(best_dev_results, tasks, split)
        else:
            results = evaluate_tasks(
                best,
                tasks,
                split,
                settings.eval_batch_size,
                settings.pad_token_id,
                settings.device,
                precision=settings.precision,
            )
        results.update(step=best_step, select_by=settings.select_by)
        write_report(
            run_dir, results, history if split == "dev" else [], info, name=report_name(split)
        )
        print(f"\n{split} scores of the best checkpoint (step {best_step}):")
        print(format_table(results))
    write_model_card(run_dir)
    return best_step


def plot_task_shares_from_log(run_dir: Path) -> None:
    """Share of each task per logging window (the paper's Figure 3.8), from the train log."""
    from camtl.evaluation.plots import plot_task_shares

    shares, previous = [], None
    for record in read_jsonl(run_dir / TRAIN_LOG_FILE):
        drawn = record["examples_drawn"]
        window = {k: v - (previous or {}).get(k, 0) for k, v in drawn.items()}
        shares.append({"step": record["step"], "shares": window})
        previous = drawn
    plot_task_shares(shares, run_dir / TASK_SHARES_FILE)


def plot_loss_weights_from_log(run_dir: Path) -> None:
    """Each task's share of the loss weight per logged step, for balancers whose weights
    move (score DRO, group DRO, FAMO, uncertainty); nothing for fixed or equal weights."""
    from camtl.evaluation.plots import plot_task_shares

    records = [
        {"step": r["step"], "shares": r["task_weights"]}
        for r in read_jsonl(run_dir / TRAIN_LOG_FILE)
        if r.get("task_weights")
    ]
    if all(r["shares"] == records[0]["shares"] for r in records):
        return
    plot_task_shares(
        records,
        run_dir / LOSS_WEIGHTS_FILE,
        ylabel="share of the loss weight",
        title="Task weights of the balancer",
    )


def sampling_info(
    tasks: list[TaskData], batch_scheduler: BatchScheduler, sampler: TaskSampler, step: int
) -> dict[str, Any]:
    """The report's account of what the batch scheduler drew in ``step`` steps."""
    names = [t.spec.name for t in tasks]
    seen = batch_scheduler.seen
    return {
        "examples_drawn": dict(zip(names, batch_scheduler.drawn)),
        "examples_used_total_fraction": round(
            sum(int(s.sum()) for s in seen) / sum(len(s) for s in seen), 4
        ),
        "examples_used_fraction": {
            names[t]: round(f, 4) for t, f in batch_scheduler.used_fraction().items()
        },
        "candidates_scored": sampler.candidates_scored(),
        "longest_unsampled_steps": dict(zip(names, batch_scheduler.longest_unsampled(step))),
    }
