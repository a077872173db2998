"""The SuperGLUE, MRQA and WNUT 2017 recipes on small files with the hub's fields: each
reads, derives its columns, filters its subset and validates into examples of its kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camtl.data.examples import load_task_examples, to_examples
from camtl.errors import ConfigError, DataError
from camtl.tasks.benchmarks import BENCHMARK_TASKS, MRQA_SUBSETS, WNUT17_LABELS
from camtl.tasks.registry import resolve_task, task_names
from camtl.tasks.spec import TaskSpec

# two rows per recipe, in the hub's own fields (labels as the hub's class names)
ROWS: dict[str, list[dict]] = {
    "boolq": [
        {"question": "is paris in france", "passage": "Paris is in France.", "label": "True"},
        {"question": "is rome in spain", "passage": "Rome is in Italy.", "label": "False"},
    ],
    "cb": [
        {"premise": "He said it rained.", "hypothesis": "It rained.", "label": "entailment"},
        {"premise": "She doubts it.", "hypothesis": "It is so.", "label": "neutral"},
    ],
    "copa": [
        {
            "premise": "The man broke his toe.",
            "question": "cause",
            "choice1": "He dropped a hammer.",
            "choice2": "He got a hole in his sock.",
            "label": "choice1",
        },
        {
            "premise": "I poured water.",
            "question": "effect",
            "choice1": "The cup filled.",
            "choice2": "The cup broke.",
            "label": 0,
        },
    ],
    "wic": [
        {
            "word": "bank",
            "sentence1": "The river bank.",
            "sentence2": "The bank lent money.",
            "start1": 10,
            "end1": 14,
            "start2": 4,
            "end2": 8,
            "label": "False",
        },
        {
            "word": "run",
            "sentence1": "I run daily.",
            "sentence2": "They run fast.",
            "start1": 2,
            "end1": 5,
            "start2": 5,
            "end2": 8,
            "label": "True",
        },
    ],
    "wsc": [
        {
            "text": "Mark told Pete he was late.",
            "span1_index": 0,
            "span2_index": 3,
            "span1_text": "Mark",
            "span2_text": "he",
            "label": "True",
        },
        {
            "text": "The cup hit the vase and it broke.",
            "span1_index": 1,
            "span2_index": 6,
            "span1_text": "cup",
            "span2_text": "it",
            "label": "False",
        },
    ],
    "wnut17": [
        {
            "id": "0",
            "tokens": ["Ann", "likes", "Paris"],
            "ner_tags": ["B-person", "O", "B-location"],
        },
        {"id": "1", "tokens": ["new", "iPhone", "out"], "ner_tags": ["O", "B-product", "O"]},
    ],
}


def _mrqa_rows(subset: str) -> list[dict]:
    """Rows of two subsets mixed, as the hub dataset holds them; answers are strings."""
    other = "NewsQA" if subset != "NewsQA" else "SQuAD"
    return [
        {
            "subset": subset,
            "qid": "a",
            "question": "where does ann live?",
            "context": "Ann lives in Paris, near Paris Zoo.",
            "answers": ["Paris"],
        },
        {
            "subset": other,
            "qid": "b",
            "question": "who?",
            "context": "Bob ran.",
            "answers": ["Bob"],
        },
        {
            "subset": subset,
            "qid": "c",
            "question": "what did bob eat?",
            "context": "Bob ate an apple.",
            "answers": ["an apple", "apple"],
        },
    ]


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _local(name: str, rows: list[dict], tmp_path: Path) -> TaskSpec:
    """The recipe with its source replaced by local files, as a user with copies would."""
    path = _write(tmp_path / f"{name}.jsonl", rows)
    entry = {"name": name, "source": {"kind": "files", "paths": {"train": path, "dev": path}}}
    return resolve_task(entry, "tasks[0]")


def test_the_recipes_are_registered_and_listed() -> None:
    names = set(task_names())
    assert {"boolq", "cb", "copa", "wic", "wsc", "wnut17", *MRQA_SUBSETS} <= names
    assert BENCHMARK_TASKS["copa"].type == "multiple_choice"
    assert BENCHMARK_TASKS["wnut17"].labels == WNUT17_LABELS and len(WNUT17_LABELS) == 13


@pytest.mark.parametrize("name", sorted(ROWS))
def test_superglue_and_wnut17_recipes_read_their_fields(name: str, tmp_path: Path) -> None:
    spec = _local(name, ROWS[name], tmp_path)
    examples, labels = load_task_examples(spec, ("train", "dev"))
    assert len(examples["train"]) == 2 and labels == list(spec.labels or [])
    first = examples["train"][0]
    if name == "copa":  # premise and question make the context; labels name a column
        assert first["context"] == "The man broke his toe. What was the cause?"
        assert [e["label"] for e in examples["train"]] == [0, 0]
    elif name == "wic":
        assert first["text_a"] == "bank: The river bank."
    elif name == "wsc":
        assert first["text_b"] == 'Does "he" refer to "Mark"?'
    elif name == "wnut17":
        assert first["tags"] == [labels.index("B-person"), 0, labels.index("B-location")]
    else:
        assert first["text_a"] and first["text_b"]


@pytest.mark.parametrize("name", sorted(MRQA_SUBSETS))
def test_mrqa_recipes_keep_their_subset_and_locate_string_answers(
    name: str, tmp_path: Path
) -> None:
    spec = _local(name, _mrqa_rows(MRQA_SUBSETS[name]), tmp_path)
    assert spec.source.filter == {"subset": MRQA_SUBSETS[name]}  # kept by the override
    examples, _ = load_task_examples(spec, ("train",))
    assert [e["id"] for e in examples["train"]] == ["a", "c"]
    assert examples["train"][0]["answers"] == [{"text": "Paris", "start": 13}]


def test_derived_columns_errors_name_the_column(tmp_path: Path) -> None:
    spec = TaskSpec(
        name="t",
        type="classification",
        text_columns=["q"],
        label_column="label",
        derived_columns={"q": "{question} / {missing}"},
    )
    spec.validate("tasks[0]", "")
    rows = [{"question": "why", "label": "a", "_file": "f.jsonl", "_row": 3}]
    with pytest.raises(
        DataError,
        match=r"f.jsonl, row 3: derived column 'q' reads column "
        r"'missing'",
    ):
        to_examples(spec, rows, "train")
    bad = TaskSpec(
        name="t",
        type="classification",
        text_columns=["q"],
        label_column="label",
        derived_columns={"q": "{question"},
    )
    with pytest.raises(ConfigError, match=r"derived_columns.q': not a format template"):
        bad.validate("tasks[0]", "")


def test_the_paper_24task_config_loads() -> None:
    """configs/paper_24task.yaml validates: every task resolves to its recipe (no data read)."""
    from camtl.config import load_config

    config = load_config(Path(__file__).parents[1] / "configs" / "paper_24task.yaml")
    kinds = {t.type for t in config.tasks}
    assert len(config.tasks) == 21 and kinds == {
        "classification",
        "regression",
        "multiple_choice",
        "span_qa",
        "token_tagging",
    }
    assert (
        config.model.options["camtl"].max_length == 256
        and config.training.sampler.name == "mt_uncertainty"
    )
