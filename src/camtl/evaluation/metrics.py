"""Scoring a task's predictions, trivial baselines and cross-task aggregates.

Each task kind owns its metrics (camtl.tasks.kinds); they are re-exported here (``macro_f1``
is classification's; multi-label's, over label sets, stays in its module). Scores are
on a 0-100 scale (correlations x 100) except ``mse``. Every metric function takes
``(predictions, references)`` in that order and returns a Python float.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from camtl.tasks.kinds import higher_is_better
from camtl.tasks.kinds.classification import accuracy, f1, macro_f1, mcc
from camtl.tasks.kinds.multi_label import micro_f1, subset_accuracy
from camtl.tasks.kinds.regression import mse, pearson, spearman
from camtl.tasks.kinds.span_qa import exact_match, normalize_answer, squad_f1
from camtl.tasks.kinds.token_tagging import entity_f1, token_accuracy
from camtl.tasks.spec import TaskSpec

__all__ = [
    "accuracy",
    "aggregate",
    "compute_metrics",
    "entity_f1",
    "exact_match",
    "f1",
    "higher_is_better",
    "lower_is_better_tasks",
    "macro_f1",
    "mcc",
    "micro_f1",
    "mse",
    "normalize_answer",
    "pearson",
    "primary_score",
    "spearman",
    "squad_f1",
    "subset_accuracy",
    "token_accuracy",
    "trivial_baseline",
]


def compute_metrics(
    spec: TaskSpec, predictions: Sequence[Any], references: Sequence[Any]
) -> dict[str, float]:
    """Every metric in ``spec.metrics`` (the kind's defaults when empty), in the form the
    kind's ``decode`` and ``references`` give."""
    kind = spec.kind
    names = spec.metrics or kind.default_metrics
    return {name: kind.metrics[name](predictions, references) for name in names}


def trivial_baseline(
    spec: TaskSpec,
    train_examples: Sequence[dict],
    eval_examples: Sequence[dict],
    labels: Sequence[str] | None,
) -> dict[str, float]:
    """Metrics of the kind's trivial predictor on ``eval_examples`` (the majority class, the
    mean value, the most frequent tag, the context's first word, ...)."""
    kind = spec.kind
    names = list(labels or [])
    predictions = kind.baseline(spec, names, train_examples, eval_examples)
    return compute_metrics(spec, predictions, kind.references(spec, names, eval_examples))


# ----------------------------------------------------------------------------- aggregates


def primary_score(spec: TaskSpec, scores: dict[str, float]) -> float:
    """The task's primary metric (its first) from ``scores``."""
    return scores[spec.primary_metric]


def aggregate(
    primary_by_task: Mapping[str, float], *, lower_is_better: Collection[str]
) -> dict[str, Any]:
    """Mean, worst value and task, and population standard deviation of primary scores.

    ``lower_is_better``: the tasks whose primary metric declares that a smaller value is
    better (``lower_is_better_tasks``). Their scores enter negated, so that a better model
    always has a higher mean and the worst task is the one with the lowest entry: every
    selection, early stop and comparison can take the maximum.
    """
    if not primary_by_task:
        raise ValueError("aggregate: no task scores")
    oriented = {
        task: -score if task in lower_is_better else score
        for task, score in primary_by_task.items()
    }
    values = list(oriented.values())
    worst_task = min(oriented, key=oriented.__getitem__)
    return {
        "mean": float(statistics.fmean(values)),
        "worst": float(oriented[worst_task]),
        "worst_task": worst_task,
        "spread": float(statistics.pstdev(values)),
    }


def lower_is_better_tasks(metric_by_task: Mapping[str, str]) -> set[str]:
    """The tasks whose (primary) metric is lower-is-better, from task -> metric name."""
    return {task for task, metric in metric_by_task.items() if not higher_is_better(metric)}
