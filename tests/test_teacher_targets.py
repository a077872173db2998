"""experiments/teacher_targets.py: what the teachers' outputs say beyond the gold labels,
per task kind, against hand-computed values."""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType

import pytest
import torch


@pytest.fixture(scope="module")
def targets(experiment_script: Callable[[str], ModuleType]) -> ModuleType:
    return experiment_script("teacher_targets")


def test_classification_counts_the_top_class_and_the_gold_probability(
    targets: ModuleType,
) -> None:
    logits = [torch.tensor([math.log(3.0), 0.0]), torch.tensor([0.0, 0.0])]
    features = [{"cls_labels": 0}, {"cls_labels": 1}, {"cls_labels": -100}]
    stats = targets.task_stats("classification", [*logits, torch.zeros(2)], features, (1.0, 2.0))
    assert stats["count"] == 2  # the unlabelled window is left out
    # window 1: probs (0.75, 0.25), top = gold; window 2: (0.5, 0.5), argmax 0 != gold 1
    assert stats["top_is_gold"] == pytest.approx(0.5)
    assert stats["mean_top_prob_t1"] == pytest.approx((0.75 + 0.5) / 2)
    assert stats["mean_gold_prob_t1"] == pytest.approx((0.75 + 0.5) / 2)
    # at temperature 2 the first becomes sqrt(3) : 1
    soft = math.sqrt(3.0) / (math.sqrt(3.0) + 1.0)
    assert stats["mean_gold_prob_t2"] == pytest.approx((soft + 0.5) / 2)


def test_tagging_reads_labelled_tokens_only(targets: ModuleType) -> None:
    logits = [torch.tensor([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])]
    features = [{"tag_labels": [0, -100, 1, 0]}]  # the 4th label lies past the window
    stats = targets.task_stats("token_tagging", logits, features)
    assert stats["count"] == 2 and stats["top_is_gold"] == pytest.approx(0.5)


def test_span_qa_needs_start_and_end(targets: ModuleType) -> None:
    window = torch.tensor([[0.0, 0.0], [9.0, 0.0], [0.0, 9.0]])  # start 1, end 2
    features = [
        {"start_positions": 1, "end_positions": 2},
        {"start_positions": 1, "end_positions": 1},
    ]
    stats = targets.task_stats("span_qa", [window, window], features)
    assert stats["top_is_gold"] == pytest.approx(0.5)
    assert 0.99 < stats["mean_top_prob_t1"] < 1.0


def test_regression_is_the_pearson_r(targets: ModuleType) -> None:
    outputs = [torch.tensor(v) for v in (1.0, 2.0, 3.0)]
    features = [{"reg_labels": v} for v in (1.0, 3.0, 2.0)]
    stats = targets.task_stats("regression", outputs, features)
    # (1, 2, 3) against (1, 3, 2): covariance 0.5 over variances 1 and 1
    assert stats["pearson_with_gold"] == pytest.approx(0.5)
