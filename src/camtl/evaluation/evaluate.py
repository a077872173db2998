"""Evaluating a model on every task of a split: scores, trivial baselines, aggregates."""

from __future__ import annotations

import copy
from typing import Any

import torch

from camtl.data.prepare import TaskData
from camtl.evaluation.decode import run_model
from camtl.evaluation.metrics import (
    aggregate,
    compute_metrics,
    lower_is_better_tasks,
    trivial_baseline,
)


def evaluate_tasks(
    model: Any,
    tasks: list[TaskData],
    split: str,
    batch_size: int,
    pad_token_id: int,
    device: torch.device | str = "cpu",
    with_baselines: bool = True,
    precision: str = "no",
) -> dict[str, Any]:
    """Scores of every task that has ``split``; see camtl.evaluation.report for the shape.

    ``precision``: the autocast setting the model runs in (camtl.precision)."""
    results: dict[str, Any] = {"split": split, "tasks": {}}
    for task in tasks:
        examples = task.examples.get(split)
        if not examples:
            continue
        spec = task.spec
        outputs = run_model(
            model, task.features[split], spec.name, batch_size, pad_token_id, device, precision
        )
        preds = spec.kind.decode(spec, task.labels, examples, task.features[split], outputs)
        scores = compute_metrics(spec, preds, spec.kind.references(spec, task.labels, examples))
        results["tasks"][spec.name] = {
            "type": spec.type,
            "primary_metric": spec.primary_metric,
            "scores": scores,
            "n_examples": len(examples),
        }
    primary = {n: e["scores"][e["primary_metric"]] for n, e in results["tasks"].items()}
    lower = lower_is_better_tasks({n: e["primary_metric"] for n, e in results["tasks"].items()})
    results["aggregate"] = aggregate(primary, lower_is_better=lower) if primary else {}
    return add_baselines(results, tasks, split) if with_baselines else results


def add_baselines(results: dict[str, Any], tasks: list[TaskData], split: str) -> dict[str, Any]:
    """Trivial-baseline scores beside ``results`` of ``split`` (no model run needed)."""
    results = copy.deepcopy(results)
    for task in tasks:
        entry = results["tasks"].get(task.spec.name)
        if entry is not None:
            entry["baseline"] = trivial_baseline(
                task.spec, task.examples["train"], task.examples[split], task.labels
            )
    if results["tasks"]:
        results["baseline_aggregate"] = aggregate(
            {n: e["baseline"][e["primary_metric"]] for n, e in results["tasks"].items()},
            lower_is_better=lower_is_better_tasks(
                {n: e["primary_metric"] for n, e in results["tasks"].items()}
            ),
        )
    return results
