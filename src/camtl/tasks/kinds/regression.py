"""Regression: one real-valued target per text or text pair."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from camtl.errors import DataError
from camtl.tasks.kinds import records
from camtl.tasks.kinds.base import BatchField, KindSample, TaskKind, register_kind
from camtl.tasks.kinds.classification import check_lengths, text_empty_fields, text_fields
from camtl.tasks.kinds.encoding import encode_texts
from camtl.tasks.kinds.heads import PooledHead


def pearson(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Pearson correlation x 100 (0.0 when either side is constant)."""
    from scipy.stats import pearsonr

    return _correlation(pearsonr, predictions, references)


def spearman(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Spearman rank correlation x 100 (0.0 when either side is constant)."""
    from scipy.stats import spearmanr

    return _correlation(spearmanr, predictions, references)


def _correlation(
    function: Callable, predictions: Sequence[float], references: Sequence[float]
) -> float:
    import warnings

    check_lengths(predictions, references)
    pred = np.asarray(predictions, dtype=np.float64)
    ref = np.asarray(references, dtype=np.float64)
    # A correlation is undefined (scipy gives nan and a warning) when one side is constant,
    # e.g. a model that collapsed to one value or the mean-value baseline. Such a predictor
    # carries no ranking information, so score it 0.0: nan would poison means and plots.
    if len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(ref) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(function(pred, ref)[0])
    return 0.0 if np.isnan(value) else 100.0 * value


def mse(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Mean squared error (raw scale, not x 100)."""
    check_lengths(predictions, references)
    diff = np.asarray(predictions, dtype=np.float64) - np.asarray(references, dtype=np.float64)
    return float(np.mean(diff * diff))


def target(record: records.Record, column: str) -> float:
    value = records.field(record, column)
    try:
        if isinstance(value, bool) or records.is_missing(value):
            raise ValueError
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise DataError(
            f"{records.where(record)}: regression target {value!r} in column '{column}' "
            "is not a number"
        ) from None
    if not math.isfinite(number):
        raise DataError(
            f"{records.where(record)}: regression target {value!r} in column "
            f"'{column}' is not a finite number"
        )
    return number


class RegressionHead(PooledHead):
    def __init__(self, hidden_size: int, num_outputs: int, dropout: float, pooling: str) -> None:
        super().__init__(hidden_size, 1, dropout, pooling)

    def forward(self, hidden, mask, inputs=None, generator=None):
        return super().forward(hidden, mask, inputs, generator).squeeze(-1)

    def loss(self, logits, labels):
        return F.mse_loss(logits.float(), labels["reg_labels"].float())

    def distillation_loss(self, logits, teacher, labels, temperature):
        # the teacher's score is the target; a temperature has nothing to soften here
        return F.mse_loss(logits.float(), teacher.float())


@register_kind("regression")
class Regression(TaskKind):
    """Example: ``{"text_a", "text_b" (None for one text), "label": float}``.

    Uncertainty: the Gaussian entropy 0.5 log(2 pi e s2) of the predictive variance s2 of
    MC-dropout samples of the head; normalised as min(1, s2 / var(train targets)), the
    entropy gap to the prior exp(2 (H - H')) mapped into [0, 1]."""

    fold_fields = ("text_a", "text_b")

    text_arity = (1, 2)
    metrics = {"pearson": pearson, "spearman": spearman, "mse": mse}
    default_metrics = ("pearson", "spearman")
    lower_is_better = frozenset({"mse"})
    batch_fields = (BatchField("reg_labels", torch.float, math.nan),)

    def sample(self):
        return KindSample(
            ["text"],
            "score",
            [
                {"text": "an absolute joy to watch", "score": 4.5},
                {"text": "dull and far too long", "score": 1.0},
                {"text": "fine, nothing more", "score": 2.5},
                {"text": "the best film of the year", "score": 5.0},
            ],
        )

    def example(self, spec, record, split, index, labels):
        return {**text_fields(spec, record), "label": target(record, spec.label_column)}

    def unlabelled_example(self, spec, record, split):
        return {**text_fields(spec, record), "label": None}

    def encode(self, spec, examples, tokenizer):
        features, truncated = encode_texts(examples, tokenizer, spec.max_length)
        for feature, example in zip(features, examples):
            label = example.get("label")
            feature["reg_labels"] = None if label is None else float(label)
        return features, truncated

    def build_head(self, spec, hidden_size, num_labels, dropout, pooling):
        return RegressionHead(hidden_size, 1, dropout, pooling)

    def decode(self, spec, labels, examples, features, outputs):
        return [float(o) for o in outputs]

    def references(self, spec, labels, examples):
        return [float(ex["label"]) for ex in examples]

    def baseline(self, spec, labels, train, examples):
        if not train:
            raise ValueError("trivial_baseline: no training labels")
        return [float(np.mean([float(ex["label"]) for ex in train]))] * len(examples)

    def empty_fields(self, spec):
        return text_empty_fields(spec)

    def prediction_schema(self):
        return {
            "type": "object",
            "required": ["score"],
            "properties": {"score": {"type": "number", "description": "the predicted value"}},
        }

    def readable(self, spec, labels, example, prediction, output):
        return {"score": prediction}

    def uncertainty_prior(self, train_examples):
        return float(np.var([ex["label"] for ex in train_examples]))

    def uncertainty(self, head, hidden, mask, inputs, features, num_labels, context):
        samples = torch.stack(
            [
                head(hidden, mask, inputs, generator=context.generator).float()
                for _ in range(context.mc_samples)
            ]
        )
        var = samples.var(0).clamp(min=1e-12)
        raw = 0.5 * torch.log(2 * math.pi * math.e * var)
        norm = (var / max(context.prior, 1e-12)).clamp(max=1.0)
        return norm.cpu().numpy(), raw.cpu().numpy()
