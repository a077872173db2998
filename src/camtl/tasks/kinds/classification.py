"""Classification of a text or a text pair into one of the task's labels."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from camtl.constants import IGNORE_INDEX
from camtl.errors import DataError
from camtl.tasks.kinds import records
from camtl.tasks.kinds.base import (
    PROBABILITY_PER_LABEL,
    BatchField,
    KindSample,
    TaskKind,
    entropy,
    register_kind,
)
from camtl.tasks.kinds.encoding import encode_texts
from camtl.tasks.kinds.heads import PooledHead, soft_cross_entropy


def check_lengths(predictions: Sequence[Any], references: Sequence[Any]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if len(references) == 0:
        raise ValueError("no predictions to score")


def accuracy(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """Share of predictions equal to their reference."""
    check_lengths(predictions, references)
    return 100.0 * sum(p == r for p, r in zip(predictions, references)) / len(references)


def f1(predictions: Sequence[int], references: Sequence[int]) -> float:
    """F1 of the positive class (index 1); other classes count as negatives."""
    from sklearn.metrics import f1_score

    check_lengths(predictions, references)
    # labels=[1] with micro averaging is binary F1 of class 1, and also works when a
    # multi-class task asks for it (sklearn's average="binary" would refuse).
    return 100.0 * float(
        f1_score(references, predictions, labels=[1], average="micro", zero_division=0)
    )


def macro_f1(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Unweighted mean of per-class F1 over the classes seen in references or predictions."""
    from sklearn.metrics import f1_score

    check_lengths(predictions, references)
    return 100.0 * float(f1_score(references, predictions, average="macro", zero_division=0))


def mcc(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Matthews correlation coefficient x 100."""
    from sklearn.metrics import matthews_corrcoef

    check_lengths(predictions, references)
    return 100.0 * float(matthews_corrcoef(references, predictions))


def majority(values: Any) -> Any:
    """Most frequent value; ties go to the smallest."""
    counts = Counter(values)
    if not counts:
        raise ValueError("trivial_baseline: no training labels")
    return min(counts, key=lambda value: (-counts[value], value))


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def text_empty_fields(spec: Any) -> str:
    """``text_fields``'s rule in one sentence."""
    if not spec.is_pair:
        return "The text may not be empty."
    first, second = spec.text_columns[:2]
    return f"Either of {first} and {second} may be empty, not both."


def text_fields(spec: Any, record: records.Record) -> dict[str, Any]:
    """``text_a`` and ``text_b`` (None for a single text) of a text or text-pair task.

    Either text of a pair may be empty (an e-mail without a subject, a missing second
    sentence): the encoder reads the other one. A single text, or a pair with both
    empty, gives the model nothing to read and is refused.
    """
    if not spec.is_pair:
        return {"text_a": records.text(record, spec.text_columns[0]), "text_b": None}
    first, second = (records.text(record, c, allow_empty=True) for c in spec.text_columns[:2])
    if not first.strip() and not second.strip():
        raise DataError(
            f"{records.where(record)}: empty text in both columns "
            f"'{spec.text_columns[0]}' and '{spec.text_columns[1]}'"
        )
    return {"text_a": first, "text_b": second}


class OneOfOutputs:
    """Outputs that pick one of several options (a class, a choice): the argmax is the
    prediction, the example's ``label`` index the reference, the most frequent train label
    the trivial baseline."""

    def decode(self, spec, labels, examples, features, outputs):
        return [int(np.argmax(o)) for o in outputs]

    def references(self, spec, labels, examples):
        return [ex["label"] for ex in examples]

    def baseline(self, spec, labels, train, examples):
        return [majority(ex["label"] for ex in train)] * len(examples)


class ClassificationHead(PooledHead):
    def loss(self, logits, labels):
        return F.cross_entropy(logits.float(), labels["cls_labels"])

    def distillation_loss(self, logits, teacher, labels, temperature):
        return soft_cross_entropy(logits, teacher, temperature).mean()


@register_kind("classification")
class Classification(OneOfOutputs, TaskKind):
    """Example: ``{"text_a", "text_b" (None for one text), "label": class index}``."""

    fold_fields = ("text_a", "text_b")

    text_arity = (1, 2)
    metrics = {"accuracy": accuracy, "f1": f1, "macro_f1": macro_f1, "mcc": mcc}
    default_metrics = ("accuracy", "macro_f1")
    has_labels = True
    batch_fields = (BatchField("cls_labels", torch.long, IGNORE_INDEX),)
    can_proxy = True

    def sample(self):
        return KindSample(
            ["premise", "hypothesis"],
            "label",
            [
                {
                    "premise": "a man plays guitar",
                    "hypothesis": "a person plays music",
                    "label": "yes",
                },
                {"premise": "a dog runs in a park", "hypothesis": "a cat sleeps", "label": "no"},
                {
                    "premise": "two kids eat lunch",
                    "hypothesis": "children are eating",
                    "label": "yes",
                },
                {"premise": "the shop is closed", "hypothesis": "the shop is open", "label": "no"},
            ],
        )

    def record_labels(self, spec, record):
        key = records.label_in(record, spec.label_column, records.field(record, spec.label_column))
        if key is None:
            raise DataError(
                f"{records.where(record)}: missing label in column '{spec.label_column}'"
            )
        return [key]

    def example(self, spec, record, split, index, labels):
        label = records.class_index(record, spec.label_column, index, labels)
        return {**text_fields(spec, record), "label": label}

    def unlabelled_example(self, spec, record, split):
        return {**text_fields(spec, record), "label": None}

    def encode(self, spec, examples, tokenizer):
        features, truncated = encode_texts(examples, tokenizer, spec.max_length)
        for feature, example in zip(features, examples):
            label = example.get("label")
            feature["cls_labels"] = None if label is None else int(label)
        return features, truncated

    def build_head(self, spec, hidden_size, num_labels, dropout, pooling):
        return ClassificationHead(hidden_size, num_labels, dropout, pooling)

    def empty_fields(self, spec):
        return text_empty_fields(spec)

    def prediction_schema(self):
        return {
            "type": "object",
            "required": ["label", "probabilities"],
            "properties": {
                "label": {"type": "string", "description": "the most probable class"},
                "probabilities": PROBABILITY_PER_LABEL,
            },
        }

    def readable(self, spec, labels, example, prediction, output):
        probs = softmax(np.asarray(output, dtype=np.float64))
        return {
            "label": labels[prediction],
            "probabilities": {name: round(float(p), 6) for name, p in zip(labels, probs)},
        }

    def uncertainty(self, head, hidden, mask, inputs, features, num_labels, context):
        raw = entropy(head(hidden, mask, inputs)).cpu()
        return (raw / math.log(max(2, num_labels))).numpy(), raw.numpy()
