"""Evaluating a model on every task of a split: scores, trivial baselines, aggregates."""

from __future__ import annotations

from typing import Any

import torch

from camtl.data.prepare import TaskData
from camtl.evaluation.decode import decode, references, run_model
from camtl.evaluation.metrics import aggregate, compute_metrics, trivial_baseline


def evaluate_tasks(model: Any, tasks: list[TaskData], split: str, batch_size: int,
                   pad_token_id: int, device: torch.device | str = "cpu",
                   with_baselines: bool = True, precision: str = "no") -> dict[str, Any]:
    """Scores of every task that has ``split``; see camtl.evaluation.report for the shape.

    ``precision``: the autocast setting the model runs in (camtl.precision)."""
    results: dict[str, Any] = {"split": split, "tasks": {}}
    for task in tasks:
        examples = task.examples.get(split)
        if not examples:
            continue
        spec = task.spec
        outputs = run_model(model, task.features[split], spec.name, batch_size,
                            pad_token_id, device, precision)
        preds = decode(spec, task.labels, examples, task.features[split], outputs)
        scores = compute_metrics(spec, preds, references(spec, task.labels, examples))
        entry: dict[str, Any] = {"type": spec.type.value, "primary_metric": spec.primary_metric,
                                 "scores": scores, "n_examples": len(examples)}
        if with_baselines:
            entry["baseline"] = trivial_baseline(spec, task.examples["train"], examples,
                                                 task.labels)
        results["tasks"][spec.name] = entry
    primary = {n: e["scores"][e["primary_metric"]] for n, e in results["tasks"].items()}
    results["aggregate"] = aggregate(primary) if primary else {}
    if with_baselines and primary:
        results["baseline_aggregate"] = aggregate(
            {n: e["baseline"][e["primary_metric"]] for n, e in results["tasks"].items()})
    return results
