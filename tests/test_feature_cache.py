"""The on-disk cache of tokenized features: exact hits, misses on any changed input."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from camtl.data import feature_cache
from camtl.data.feature_cache import cached_encode
from camtl.data.tokenize import encode_examples
from camtl.tasks.spec import TaskSpec
from camtl.testing.runs import qa_example

SPECS_AND_EXAMPLES = {
    "classification": (
        TaskSpec(
            name="c",
            type="classification",
            text_columns=["a", "b"],
            label_column="label",
            labels=["no", "yes"],
        ),
        [
            {"text_a": "the movie is good", "text_b": "it is", "label": 1},
            {"text_a": "bad", "text_b": "very bad film", "label": 0},
        ],
    ),
    "regression": (
        TaskSpec(name="r", type="regression", text_columns=["a"], label_column="y"),
        [
            {"text_a": "good good", "text_b": None, "label": 0.1 + 0.2},
            {"text_a": "awful", "text_b": None, "label": -1.5},
        ],
    ),
    "tagging": (
        TaskSpec(
            name="t",
            type="token_tagging",
            text_columns=["tokens"],
            label_column="tags",
            labels=["O", "B-PER"],
        ),
        [{"tokens": ["john", "is", "good"], "tags": [1, 0, 0]}],
    ),
    "span_qa": (
        TaskSpec(
            name="q",
            type="span_qa",
            text_columns=["question", "context"],
            label_column="answers",
            max_length=16,
            doc_stride=4,
        ),
        [qa_example("who", "the good film with john and mary in paris", "john")],
    ),
}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(feature_cache.DIR_ENV, str(tmp_path / "features"))
    return tmp_path / "features"


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.json")) if cache.is_dir() else []


@pytest.mark.parametrize("kind", list(SPECS_AND_EXAMPLES))
def test_hit_equals_fresh_encoding(tiny_tokenizer, cache: Path, kind: str) -> None:
    spec, examples = SPECS_AND_EXAMPLES[kind]
    fresh = encode_examples(spec, examples, tiny_tokenizer, task_id=2)
    first = cached_encode(spec, examples, tiny_tokenizer, task_id=2)
    assert len(entries(cache)) == 1
    second = cached_encode(spec, examples, tiny_tokenizer, task_id=5)  # read back
    assert len(entries(cache)) == 1
    assert first.features == fresh.features and first.truncated == fresh.truncated
    for feature in second.features:
        assert feature.pop("task_id") == 5
    for feature in fresh.features:
        feature.pop("task_id")
    assert second.features == fresh.features  # floats, None and lists round-trip exactly


def test_changed_inputs_are_never_served_stale(tiny_tokenizer, cache: Path, tmp_path: Path) -> None:
    spec, examples = SPECS_AND_EXAMPLES["classification"]
    cached_encode(spec, examples, tiny_tokenizer, 0)
    edited = copy.deepcopy(examples)
    edited[0]["text_a"] = "the movie is bad"  # a changed data file
    got = cached_encode(spec, edited, tiny_tokenizer, 0)
    assert got.features == encode_examples(spec, edited, tiny_tokenizer, 0).features
    shorter = copy.deepcopy(spec)
    shorter.max_length = 4  # a changed spec
    got = cached_encode(shorter, examples, tiny_tokenizer, 0)
    assert got.truncated == 2 and all(len(f["input_ids"]) == 4 for f in got.features)
    other = copy.deepcopy(tiny_tokenizer)  # a changed tokenizer
    other.backend_tokenizer.normalizer = None  # cased: no lower-casing any more
    assert feature_cache.tokenizer_fingerprint(other) != feature_cache.tokenizer_fingerprint(
        tiny_tokenizer
    )
    cached_encode(spec, examples, other, 0)
    assert len(entries(cache)) == 4


def test_a_damaged_entry_is_encoded_again(tiny_tokenizer, cache: Path) -> None:
    spec, examples = SPECS_AND_EXAMPLES["regression"]
    cached_encode(spec, examples, tiny_tokenizer, 0)
    (entry,) = entries(cache)
    entry.write_text('{"features": [', encoding="utf-8")  # cut short
    got = cached_encode(spec, examples, tiny_tokenizer, 0)
    assert got.features == encode_examples(spec, examples, tiny_tokenizer, 0).features
    assert entry.read_text(encoding="utf-8").startswith('{"features":[{')  # rewritten whole


def test_cache_can_be_turned_off(
    tiny_tokenizer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(feature_cache.ENV, "0")
    spec, examples = SPECS_AND_EXAMPLES["classification"]
    cached_encode(spec, examples, tiny_tokenizer, 0)
    assert entries(cache) == []


def test_selection_keys_do_not_split_entries(tiny_tokenizer, cache: Path) -> None:
    """The examples are hashed themselves: a different max_train_examples that loads the
    same dev examples shares their entry."""
    spec, examples = SPECS_AND_EXAMPLES["classification"]
    cached_encode(spec, examples, tiny_tokenizer, 0)
    capped = copy.deepcopy(spec)
    capped.max_train_examples = 10
    cached_encode(capped, examples, tiny_tokenizer, 0)
    assert len(entries(cache)) == 1


def test_fingerprint_ignores_the_last_calls_truncation(tiny_tokenizer) -> None:
    """A fast tokenizer keeps the truncation of its last call in its backend state; that is
    no change of the tokenizer and must not change the key."""
    before = feature_cache.tokenizer_fingerprint(tiny_tokenizer)
    tiny_tokenizer(["a long sentence here"], truncation=True, max_length=3)
    assert feature_cache.tokenizer_fingerprint(tiny_tokenizer) == before
