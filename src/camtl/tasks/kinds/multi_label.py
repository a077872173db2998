"""Multi-label classification: any number of the task's labels per text or text pair.

A sigmoid per label, trained with binary cross-entropy; a label is predicted when its
probability reaches its threshold (``options.threshold``, per label in
``options.thresholds``). In files the label column holds a list of labels or one string
of labels joined by ``options.delimiter``; an empty list or string means no label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from camtl.errors import DataError
from camtl.tasks.kinds import records
from camtl.tasks.kinds.base import (
    PROBABILITY_PER_LABEL,
    BatchField,
    KindSample,
    TaskKind,
    register_kind,
)
from camtl.tasks.kinds.classification import check_lengths, text_empty_fields, text_fields
from camtl.tasks.kinds.encoding import encode_texts
from camtl.tasks.kinds.heads import PooledHead
from camtl.validation import config_key, require

NO_LABEL = -1  # the padding of a row's label-index list


def _indicators(
    predictions: Sequence[Sequence[int]], references: Sequence[Sequence[int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Both sides as indicator matrices over the labels either of them uses."""
    from sklearn.preprocessing import MultiLabelBinarizer

    check_lengths(predictions, references)
    binarizer = MultiLabelBinarizer().fit([*predictions, *references])
    if not len(binarizer.classes_):  # every set empty: one label no one has (sklearn needs
        binarizer.fit([[-1]])  # a column); the sets agree, and the scores say so
    return binarizer.transform(predictions), binarizer.transform(references)


def micro_f1(predictions: Sequence[Sequence[int]], references: Sequence[Sequence[int]]) -> float:
    """F1 over all (example, label) decisions pooled together."""
    from sklearn.metrics import f1_score

    pred, ref = _indicators(predictions, references)
    return 100.0 * float(f1_score(ref, pred, average="micro", zero_division=0))


def macro_f1(predictions: Sequence[Sequence[int]], references: Sequence[Sequence[int]]) -> float:
    """Unweighted mean of per-label F1 over the labels seen in references or predictions."""
    from sklearn.metrics import f1_score

    pred, ref = _indicators(predictions, references)
    return 100.0 * float(f1_score(ref, pred, average="macro", zero_division=0))


def subset_accuracy(
    predictions: Sequence[Sequence[int]], references: Sequence[Sequence[int]]
) -> float:
    """Share of examples whose predicted label set equals the reference set exactly."""
    from sklearn.metrics import accuracy_score

    pred, ref = _indicators(predictions, references)
    return 100.0 * float(accuracy_score(ref, pred))


@dataclass
class MultiLabelOptions:
    # joins the labels of one row in a string cell ("sports,politics")
    delimiter: str = ","
    # the probability at which a label is predicted, and overrides per label name
    threshold: float = 0.5
    thresholds: dict[str, float] = field(default_factory=dict)


def _label_keys(record: records.Record, column: str, delimiter: str) -> list[str]:
    value = records.field(record, column)
    if records.is_missing(value):
        raise DataError(f"{records.where(record)}: missing labels in column '{column}'")
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(delimiter)]
        return [part for part in parts if part]
    if isinstance(value, (list, tuple)):
        keys = [records.label_in(record, column, item) for item in value]
        if None in keys:
            raise DataError(f"{records.where(record)}: an empty label in column '{column}'")
        return [key for key in keys if key is not None]
    key = records.label_in(record, column, value)  # a lone number
    return [key] if key is not None else []


class MultiLabelHead(PooledHead):
    def loss(self, logits, labels):
        indices = labels["multi_labels"]
        target = torch.zeros_like(logits, dtype=torch.float)
        present = indices != NO_LABEL
        rows = torch.arange(len(indices), device=indices.device).unsqueeze(1).expand_as(indices)
        target[rows[present], indices[present]] = 1.0
        return F.binary_cross_entropy_with_logits(logits.float(), target)

    def distillation_loss(self, logits, teacher, labels, temperature):
        target = torch.sigmoid(teacher.float() / temperature)
        loss = F.binary_cross_entropy_with_logits(logits.float() / temperature, target)
        return loss * temperature**2


@register_kind("multi_label")
class MultiLabel(TaskKind):
    """Example: ``{"text_a", "text_b" (None for one text), "labels": [label index, ...]}``;
    predictions and references are sorted lists of label indices."""

    fold_fields = ("text_a", "text_b")

    text_arity = (1, 2)
    metrics = {"micro_f1": micro_f1, "macro_f1": macro_f1, "subset_accuracy": subset_accuracy}
    default_metrics = ("micro_f1", "macro_f1", "subset_accuracy")
    has_labels = True
    batch_fields = (BatchField("multi_labels", torch.long, NO_LABEL, layout="vector"),)
    Options = MultiLabelOptions

    def sample(self):
        return KindSample(
            ["text"],
            "topics",
            [
                {"text": "the striker scored twice in the final", "topics": "sports"},
                {"text": "parliament passed the budget", "topics": ["politics", "economy"]},
                {"text": "the minister opened the new stadium", "topics": "politics,sports"},
                {"text": "a quiet day with light rain", "topics": ""},
            ],
        )

    def check_spec(self, spec, path, prefix):
        options = self.options(spec)
        require(
            options.delimiter, config_key(f"{path}.options.delimiter", prefix), "must not be empty"
        )
        for label, value in [("threshold", options.threshold), *options.thresholds.items()]:
            name = label if label == "threshold" else f"thresholds.{label}"
            require(
                0.0 < value < 1.0,
                config_key(f"{path}.options.{name}", prefix),
                f"a probability between 0 and 1, got {value}",
            )
        unknown = sorted(set(options.thresholds) - set(spec.labels or options.thresholds))
        require(
            not unknown,
            config_key(f"{path}.options.thresholds", prefix),
            f"{', '.join(unknown)} not among the task's labels",
        )

    def record_labels(self, spec, record):
        return _label_keys(record, spec.label_column, self.options(spec).delimiter)

    def example(self, spec, record, split, index, labels):
        keys = _label_keys(record, spec.label_column, self.options(spec).delimiter)
        for key in keys:
            if key not in index:
                raise DataError(
                    f"{records.where(record)}: label {key!r} in column '{spec.label_column}' "
                    f"is not one of the task's labels ({records.show(labels)})"
                )
        return {**text_fields(spec, record), "labels": sorted({index[key] for key in keys})}

    def unlabelled_example(self, spec, record, split):
        return {**text_fields(spec, record), "labels": None}

    def encode(self, spec, examples, tokenizer):
        features, truncated = encode_texts(examples, tokenizer, spec.max_length)
        for feature, example in zip(features, examples):
            labels = example.get("labels")
            feature["multi_labels"] = None if labels is None else list(labels)
        return features, truncated

    def build_head(self, spec, hidden_size, num_labels, dropout, pooling):
        return MultiLabelHead(hidden_size, num_labels, dropout, pooling)

    def _thresholds(self, spec: Any, labels: list[str]) -> np.ndarray:
        options = self.options(spec)
        return np.array([options.thresholds.get(name, options.threshold) for name in labels])

    def decode(self, spec, labels, examples, features, outputs):
        thresholds = self._thresholds(spec, labels)
        return [
            np.flatnonzero(_sigmoid(np.asarray(o, dtype=np.float64)) >= thresholds).tolist()
            for o in outputs
        ]

    def references(self, spec, labels, examples):
        return [list(ex["labels"]) for ex in examples]

    def baseline(self, spec, labels, train, examples):
        """Every label that more than half of the train examples carry (usually none)."""
        counts = np.zeros(len(labels))
        for ex in train:
            counts[ex["labels"]] += 1
        common = np.flatnonzero(counts > len(train) / 2).tolist()
        return [list(common) for _ in examples]

    def empty_fields(self, spec):
        return text_empty_fields(spec)

    def prediction_schema(self):
        return {
            "type": "object",
            "required": ["labels", "probabilities"],
            "properties": {
                "labels": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "every label whose probability passes its threshold",
                },
                "probabilities": PROBABILITY_PER_LABEL,
            },
        }

    def readable(self, spec, labels, example, prediction, output):
        probs = _sigmoid(np.asarray(output, dtype=np.float64))
        return {
            "labels": [labels[i] for i in prediction],
            "probabilities": {name: round(float(p), 6) for name, p in zip(labels, probs)},
        }

    def uncertainty(self, head, hidden, mask, inputs, features, num_labels, context):
        """Mean binary entropy over the labels; H' = log 2."""
        p = torch.sigmoid(head(hidden, mask, inputs).float()).clamp(1e-7, 1 - 1e-7)
        raw = -(p * p.log() + (1 - p) * (1 - p).log()).mean(-1).cpu().numpy()
        return raw / math.log(2), raw


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
