"""Metrics per task type, trivial baselines and cross-task aggregates.

Scores are on a 0-100 scale (correlations x 100) except ``mse``. Every metric function takes
``(predictions, references)`` in that order and returns a Python float.
"""

from __future__ import annotations

import re
import statistics
import string
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from camtl.tasks.spec import DEFAULT_METRICS, TaskSpec, TaskType

# ----------------------------------------------------------------------------- classification


def accuracy(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """Share of predictions equal to their reference."""
    _check_lengths(predictions, references)
    return 100.0 * sum(p == r for p, r in zip(predictions, references)) / len(references)


def f1(predictions: Sequence[int], references: Sequence[int]) -> float:
    """F1 of the positive class (index 1); other classes count as negatives."""
    from sklearn.metrics import f1_score

    _check_lengths(predictions, references)
    # labels=[1] with micro averaging is binary F1 of class 1, and also works when a
    # multi-class task asks for it (sklearn's average="binary" would refuse).
    return 100.0 * float(
        f1_score(references, predictions, labels=[1], average="micro", zero_division=0)
    )


def macro_f1(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Unweighted mean of per-class F1 over the classes seen in references or predictions."""
    from sklearn.metrics import f1_score

    _check_lengths(predictions, references)
    return 100.0 * float(f1_score(references, predictions, average="macro", zero_division=0))


def mcc(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Matthews correlation coefficient x 100."""
    from sklearn.metrics import matthews_corrcoef

    _check_lengths(predictions, references)
    return 100.0 * float(matthews_corrcoef(references, predictions))


# ----------------------------------------------------------------------------- regression


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
    _check_lengths(predictions, references)
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
    _check_lengths(predictions, references)
    diff = np.asarray(predictions, dtype=np.float64) - np.asarray(references, dtype=np.float64)
    return float(np.mean(diff * diff))


# ----------------------------------------------------------------------------- tagging

_IOB_PREFIXES = ("B-", "I-", "E-", "S-")


def _iob_tag(tag: str) -> str:
    """Tags without a prefix ("PER") mean IO tagging: a run of one type is one entity."""
    if tag == "O" or tag.startswith(_IOB_PREFIXES) or tag in ("B", "I", "E", "S"):
        return tag
    return f"I-{tag}"


def entity_f1(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    """Entity-level micro F1 (seqeval, IOB2 tags; un-prefixed tags read as IO tags)."""
    from seqeval.metrics import f1_score

    _check_sequences(predictions, references)
    pred = [[_iob_tag(tag) for tag in sentence] for sentence in predictions]
    ref = [[_iob_tag(tag) for tag in sentence] for sentence in references]
    return 100.0 * float(f1_score(ref, pred, zero_division=0))


def token_accuracy(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
) -> float:
    """Share of words whose predicted tag equals the reference tag."""
    _check_sequences(predictions, references)
    total = sum(len(sentence) for sentence in references)
    if total == 0:
        raise ValueError("token_accuracy: the references hold no words")
    correct = sum(p == r for ps, rs in zip(predictions, references) for p, r in zip(ps, rs))
    return 100.0 * correct / total


# ----------------------------------------------------------------------------- span QA

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _answer_f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:  # both empty: a correct "no answer"
        return float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(pred_tokens)
    recall = common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _best_over_golds(
    score: Callable[[str, str], float],
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
) -> float:
    _check_lengths(predictions, references)
    total = 0.0
    for prediction, golds in zip(predictions, references):
        total += max(score(prediction, gold) for gold in (list(golds) or [""]))
    return 100.0 * total / len(references)


def exact_match(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """SQuAD exact match: normalised prediction equals any normalised gold answer."""
    return _best_over_golds(
        lambda p, g: float(normalize_answer(p) == normalize_answer(g)), predictions, references
    )


def squad_f1(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """SQuAD F1: bag-of-tokens overlap with the best-matching gold answer, averaged."""
    return _best_over_golds(_answer_f1, predictions, references)


# ----------------------------------------------------------------------------- checks


def _check_lengths(predictions: Sequence[Any], references: Sequence[Any]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if len(references) == 0:
        raise ValueError("no predictions to score")


def _check_sequences(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
) -> None:
    _check_lengths(predictions, references)
    for i, (pred, ref) in enumerate(zip(predictions, references)):
        if len(pred) != len(ref):
            raise ValueError(f"sequence {i}: {len(pred)} predicted tags for {len(ref)} words")


# ----------------------------------------------------------------------------- per task

METRICS: dict[str, Callable[[Any, Any], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "macro_f1": macro_f1,
    "mcc": mcc,
    "pearson": pearson,
    "spearman": spearman,
    "mse": mse,
    "entity_f1": entity_f1,
    "token_accuracy": token_accuracy,
    "squad_f1": squad_f1,
    "exact_match": exact_match,
}


def compute_metrics(
    spec: TaskSpec, predictions: Sequence[Any], references: Sequence[Any]
) -> dict[str, float]:
    """Every metric in ``spec.metrics`` (the task type's defaults when empty).

    classification: lists of int; regression: lists of float; token_tagging: lists of lists
    of tag names (word level); span_qa: predicted strings and lists of gold strings.
    """
    names = spec.metrics or DEFAULT_METRICS[TaskType(spec.type)]
    return {name: METRICS[name](predictions, references) for name in names}


def trivial_baseline(
    spec: TaskSpec,
    train_examples: Sequence[dict],
    eval_examples: Sequence[dict],
    labels: Sequence[str] | None,
) -> dict[str, float]:
    """Metrics of a trivial predictor on ``eval_examples``.

    classification: the majority train class; regression: the mean train value;
    token_tagging: the most frequent train tag (normally "O") on every word;
    span_qa: the first word of the context.
    """
    kind = TaskType(spec.type)
    if kind == TaskType.CLASSIFICATION:
        majority = _majority(ex["label"] for ex in train_examples)
        predictions: list = [majority] * len(eval_examples)
        references: list = [ex["label"] for ex in eval_examples]
    elif kind == TaskType.REGRESSION:
        if not train_examples:
            raise ValueError("trivial_baseline: no training labels")
        mean = float(np.mean([float(ex["label"]) for ex in train_examples]))
        predictions = [mean] * len(eval_examples)
        references = [float(ex["label"]) for ex in eval_examples]
    elif kind == TaskType.TOKEN_TAGGING:
        names = list(labels or [])
        majority = names[_majority(tag for ex in train_examples for tag in ex["tags"])]
        predictions = [[majority] * len(ex["tags"]) for ex in eval_examples]
        references = [[names[tag] for tag in ex["tags"]] for ex in eval_examples]
    else:
        predictions = [" ".join(ex["context"].split()[:1]) for ex in eval_examples]
        references = [[answer["text"] for answer in ex["answers"]] for ex in eval_examples]
    return compute_metrics(spec, predictions, references)


def _majority(values: Any) -> Any:
    """Most frequent value; ties go to the smallest."""
    counts = Counter(values)
    if not counts:
        raise ValueError("trivial_baseline: no training labels")
    return min(counts, key=lambda value: (-counts[value], value))


# ----------------------------------------------------------------------------- aggregates


def primary_score(spec: TaskSpec, scores: dict[str, float]) -> float:
    """The task's primary metric (its first) from ``scores``."""
    return scores[spec.primary_metric]


def aggregate(primary_by_task: dict[str, float]) -> dict[str, Any]:
    """Mean, worst (lowest) value and task, and population standard deviation of scores.

    Assumes higher is better, as for every metric but ``mse``.
    """
    if not primary_by_task:
        raise ValueError("aggregate: no task scores")
    values = list(primary_by_task.values())
    worst_task = min(primary_by_task, key=primary_by_task.__getitem__)
    return {
        "mean": float(statistics.fmean(values)),
        "worst": float(primary_by_task[worst_task]),
        "worst_task": worst_task,
        "spread": float(statistics.pstdev(values)),
    }
