"""Metrics against sklearn/scipy/seqeval or hand-computed values; baselines; aggregates."""

from __future__ import annotations

import math
import statistics
import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from seqeval.metrics import f1_score as seqeval_f1
from sklearn.metrics import f1_score, matthews_corrcoef

from camtl.evaluation import metrics as m
from camtl.tasks.spec import TaskSpec

RNG = np.random.default_rng(0)
REFS = RNG.integers(0, 2, 50).tolist()
PREDS = [r if RNG.random() < 0.7 else 1 - r for r in REFS]
REFS3 = RNG.integers(0, 3, 60).tolist()
PREDS3 = [r if RNG.random() < 0.6 else int(RNG.integers(0, 3)) for r in REFS3]


def spec(kind: str, metrics: list[str] | None = None, **kwargs) -> TaskSpec:
    columns = ["q", "c"] if kind == "span_qa" else ["a"]
    return TaskSpec(
        name="t",
        type=kind,
        text_columns=columns,
        label_column="label",
        metrics=metrics or [],
        **kwargs,
    )


# ----------------------------------------------------------------------------- classification


def test_accuracy():
    assert m.accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 50.0


def test_binary_f1_matches_sklearn():
    assert m.f1(PREDS, REFS) == pytest.approx(100 * f1_score(REFS, PREDS))
    assert m.f1([0, 0], [0, 0]) == 0.0  # no positives anywhere


def test_f1_on_multiclass_is_f1_of_class_one():
    expected = f1_score(REFS3, PREDS3, labels=[1], average=None)[0]
    assert m.f1(PREDS3, REFS3) == pytest.approx(100 * expected)


def test_macro_f1_and_mcc_match_sklearn():
    assert m.macro_f1(PREDS3, REFS3) == pytest.approx(
        100 * f1_score(REFS3, PREDS3, average="macro")
    )
    assert m.mcc(PREDS3, REFS3) == pytest.approx(100 * matthews_corrcoef(REFS3, PREDS3))
    assert m.mcc(PREDS, REFS) == pytest.approx(100 * matthews_corrcoef(REFS, PREDS))


def test_length_mismatch_and_empty_are_errors():
    with pytest.raises(ValueError, match="2 predictions for 3"):
        m.accuracy([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="no predictions"):
        m.accuracy([], [])


# ----------------------------------------------------------------------------- regression

X = RNG.normal(size=40)
Y = X + RNG.normal(scale=0.5, size=40)


def test_correlations_match_scipy():
    assert m.pearson(X.tolist(), Y.tolist()) == pytest.approx(100 * pearsonr(X, Y)[0])
    assert m.spearman(X.tolist(), Y.tolist()) == pytest.approx(100 * spearmanr(X, Y)[0])


def test_constant_predictions_correlate_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert m.pearson([2.0] * 5, [1.0, 2.0, 3.0, 4.0, 5.0]) == 0.0
        assert m.spearman([2.0] * 5, [1.0, 2.0, 3.0, 4.0, 5.0]) == 0.0
        assert m.pearson([1.0, 2.0], [3.0, 3.0]) == 0.0


def test_mse_is_raw_scale():
    assert m.mse([1.0, 2.0, 4.0], [1.0, 3.0, 2.0]) == pytest.approx(5 / 3)


# ----------------------------------------------------------------------------- tagging

TAG_REFS = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "O", "B-PER"]]
TAG_PREDS = [["B-PER", "I-PER", "O", "O"], ["O", "B-ORG", "O", "O", "B-LOC"]]


def test_entity_f1_matches_seqeval():
    assert m.entity_f1(TAG_PREDS, TAG_REFS) == pytest.approx(100 * seqeval_f1(TAG_REFS, TAG_PREDS))
    # by hand: 1 of 4 gold entities found, 1 of 3 predicted correct -> F1 = 2/7
    assert m.entity_f1(TAG_PREDS, TAG_REFS) == pytest.approx(100 * 2 / 7)


def test_entity_f1_reads_unprefixed_tags_as_io():
    refs = [["PER", "PER", "O", "LOC"]]
    assert m.entity_f1([["PER", "PER", "O", "LOC"]], refs) == 100.0
    # one of the two entities found (the run "PER PER" is one entity)
    assert m.entity_f1([["PER", "PER", "O", "O"]], refs) == pytest.approx(100 * 2 / 3)
    assert m.entity_f1([["O", "O"]], [["O", "O"]]) == 0.0


def test_entity_f1_reads_bilou_as_iobes():
    """L- and U- are IOBES's E- and S-: two single-token entities are two, and a cut-short
    entity is not found (read as un-prefixed types, U-PER U-PER was one 'U-PER' entity)."""
    refs = [["B-PER", "L-PER", "U-LOC", "U-LOC", "O"]]
    as_iobes = [["B-PER", "E-PER", "S-LOC", "S-LOC", "O"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "seems not to be NE tag" from seqeval
        assert m.entity_f1(refs, refs) == 100.0
        assert m.entity_f1([["B-PER", "O", "U-LOC", "U-LOC", "O"]], refs) == pytest.approx(
            100 * seqeval_f1(as_iobes, [["B-PER", "O", "S-LOC", "S-LOC", "O"]])
        )
        assert m.entity_f1([["O", "O", "B-LOC", "L-LOC", "O"]], refs) == 0.0


def test_multi_label_scores_of_sets_all_empty():
    """An eval split whose every gold set is empty, predicted empty: scored, not a crash."""
    empty = [[], []]
    assert m.subset_accuracy(empty, empty) == 100.0
    assert m.micro_f1(empty, empty) == m.micro_f1([[0]], [[0]]) == 100.0
    assert m.subset_accuracy([[1], []], empty) == 50.0


def test_token_accuracy():
    assert m.token_accuracy(TAG_PREDS, TAG_REFS) == pytest.approx(100 * 6 / 9)
    with pytest.raises(ValueError, match="sequence 0"):
        m.token_accuracy([["O"]], [["O", "O"]])


# ----------------------------------------------------------------------------- span QA


def test_normalize_answer():
    assert m.normalize_answer("  The Cat's   hat, (a) RED one!") == "cats hat red one"
    assert m.normalize_answer("theory and an anthem") == "theory and anthem"


def test_squad_scores_by_hand():
    # "cat sat" vs "cat sat on": precision 1, recall 2/3 -> F1 0.8; not an exact match
    assert m.squad_f1(["the cat sat"], [["a cat sat on"]]) == pytest.approx(80.0)
    assert m.exact_match(["the cat sat"], [["a cat sat on"]]) == 0.0
    # normalisation makes these equal
    assert m.exact_match(["The Cat!"], [["cat"]]) == 100.0
    # best over gold answers, then the mean over examples
    preds = ["the cat sat", "paris", "dog"]
    golds = [["a cat sat on", "cat sat"], ["London", "Paris."], ["blue whale"]]
    assert m.exact_match(preds, golds) == pytest.approx(100 * 2 / 3)
    assert m.squad_f1(preds, golds) == pytest.approx(100 * 2 / 3)
    # repeated tokens count once per occurrence: "cat cat dog" vs "cat dog dog" -> 2/3
    assert m.squad_f1(["cat cat dog"], [["cat dog dog"]]) == pytest.approx(100 * 2 / 3)


def test_squad_empty_answers():
    assert m.squad_f1([""], [[]]) == 100.0 and m.exact_match([""], [[]]) == 100.0
    assert m.squad_f1(["cat"], [[]]) == 0.0 and m.squad_f1([""], [["cat"]]) == 0.0


# ----------------------------------------------------------------------------- compute_metrics


def test_compute_metrics_by_type():
    scores = m.compute_metrics(spec("classification", ["mcc", "accuracy", "f1"]), PREDS, REFS)
    assert list(scores) == ["mcc", "accuracy", "f1"]
    assert scores["accuracy"] == m.accuracy(PREDS, REFS)
    scores = m.compute_metrics(
        spec("regression", ["pearson", "spearman", "mse"]), X.tolist(), Y.tolist()
    )
    assert scores["mse"] == pytest.approx(float(np.mean((X - Y) ** 2)))
    scores = m.compute_metrics(spec("token_tagging"), TAG_PREDS, TAG_REFS)
    assert set(scores) == {"entity_f1", "token_accuracy"}
    scores = m.compute_metrics(spec("span_qa"), ["paris"], [["Paris"]])
    assert scores == {"squad_f1": 100.0, "exact_match": 100.0}
    assert all(isinstance(value, float) for value in scores.values())


# ----------------------------------------------------------------------------- baselines


def test_baseline_classification_majority():
    train = [{"label": 1}, {"label": 1}, {"label": 0}]
    dev = [{"label": 1}, {"label": 0}, {"label": 1}, {"label": 1}]
    scores = m.trivial_baseline(
        spec("classification", ["accuracy", "mcc"]), train, dev, ["neg", "pos"]
    )
    assert scores == {"accuracy": 75.0, "mcc": 0.0}


def test_baseline_regression_mean_scores_zero_correlation():
    train = [{"label": 1.0}, {"label": 3.0}]
    dev = [{"label": 0.0}, {"label": 4.0}]
    scores = m.trivial_baseline(
        spec("regression", ["pearson", "spearman", "mse"]), train, dev, None
    )
    assert scores == {"pearson": 0.0, "spearman": 0.0, "mse": pytest.approx(4.0)}


def test_baseline_tagging_majority_tag():
    labels = ["O", "B-PER", "I-PER"]
    train = [{"tokens": ["a", "b", "c"], "tags": [0, 1, 0]}]
    dev = [{"tokens": ["a", "b"], "tags": [1, 0]}, {"tokens": ["c"], "tags": [0]}]
    scores = m.trivial_baseline(spec("token_tagging", labels=labels), train, dev, labels)
    assert scores == {"entity_f1": 0.0, "token_accuracy": pytest.approx(100 * 2 / 3)}


def test_baseline_span_qa_first_word():
    dev = [
        {"context": "Paris is big.", "answers": [{"text": "Paris", "start": 0}]},
        {"context": "the cat sits", "answers": [{"text": "cat", "start": 4}]},
    ]
    scores = m.trivial_baseline(spec("span_qa"), [], dev, None)
    assert scores == {"squad_f1": 50.0, "exact_match": 50.0}


# ----------------------------------------------------------------------------- aggregates


def test_primary_score_and_aggregate():
    task = spec("classification", ["macro_f1", "accuracy"])
    assert m.primary_score(task, {"accuracy": 90.0, "macro_f1": 80.0}) == 80.0
    summary = m.aggregate({"a": 80.0, "b": 60.0, "c": 70.0}, lower_is_better=())
    assert summary["mean"] == pytest.approx(70.0)
    assert summary["worst"] == 60.0 and summary["worst_task"] == "b"
    assert summary["spread"] == pytest.approx(statistics.pstdev([80, 60, 70]))
    assert m.aggregate({"only": 50.0}, lower_is_better=())["spread"] == 0.0
    with pytest.raises(ValueError):
        m.aggregate({}, lower_is_better=())
    assert not math.isnan(summary["spread"])


def test_every_metric_declares_its_direction_and_aggregates_follow_it():
    from camtl.tasks.kinds import get_kind, kind_names

    for name in kind_names():
        for metric in get_kind(name).metrics:
            assert isinstance(m.higher_is_better(metric), bool)
    assert not m.higher_is_better("mse") and m.higher_is_better("pearson")
    with pytest.raises(KeyError, match="unknown metric 'nope'"):
        m.higher_is_better("nope")
    lower = m.lower_is_better_tasks({"acc": "accuracy", "reg": "mse"})
    assert lower == {"reg"}
    better = m.aggregate({"acc": 80.0, "reg": 0.5}, lower_is_better=lower)
    worse = m.aggregate({"acc": 80.0, "reg": 5.0}, lower_is_better=lower)
    assert better["mean"] > worse["mean"]  # a lower mse is the better model
    assert worse["worst_task"] == "reg" and worse["worst"] == -5.0
