"""Every registered task kind, from record to metric, on the tiny encoders.

Parametrised over the registry: a new kind is tested here by being registered (its
``sample()`` records are the data). Each kind is trained, evaluated, predicted, scored by
MT-Uncertainty and added to a trained model; one run trains all kinds together.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from camtl.cli import main
from camtl.data.collate import batch_keys, collate_features, label_keys
from camtl.data.prepare import TaskData, prepare_tasks
from camtl.evaluation.decode import readable_predictions, run_model
from camtl.evaluation.evaluate import evaluate_tasks
from camtl.model_config import ModelConfig
from camtl.modeling import MultiTaskModel
from camtl.tasks.kinds import get_kind, kind_names
from camtl.tasks.spec import SourceSpec, TaskSpec
from camtl.testing import SUBWORD_LAYOUTS, make_subword_tokenizer
from camtl.testing.runs import task_entry, train_kinds_run, write_sample
from camtl.training.uncertainty import make_scorer

KINDS = kind_names()


def sample_spec(kind_name: str, folder: Path) -> TaskSpec:
    entry = task_entry(kind_name, write_sample(kind_name, folder))
    source = SourceSpec(paths=entry.pop("source")["paths"])
    spec = TaskSpec(**entry, source=source)
    spec.validate("tasks[0]", "test")
    return spec


@pytest.mark.parametrize("kind_name", KINDS)
def test_kind_from_record_to_metric(
    kind_name: str, tmp_path: Path, tiny_encoder_dir: Path, tiny_tokenizer
) -> None:
    kind = get_kind(kind_name)
    spec = sample_spec(kind_name, tmp_path)
    assert spec.metrics == list(kind.default_metrics)
    (task,) = prepare_tasks([spec], tiny_tokenizer, ("train", "dev"))
    assert task.features["train"] and all(f["task_id"] == 0 for f in task.features["train"])
    if kind.has_labels:
        assert len(task.labels) >= 2
    model, _ = MultiTaskModel.from_encoder(
        ModelConfig(encoder=str(tiny_encoder_dir), architecture="camtl"),
        [spec],
        {spec.name: task.labels},
    )
    # training: a finite loss whose gradient reaches the head
    batch = collate_features(task.features["train"][:8], tiny_tokenizer.pad_token_id)
    assert tuple(batch) == batch_keys()
    out = model(**batch)
    assert set(out.task_losses) == {spec.name} and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.heads[spec.name].parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    # inference leaves the label fields out, and gives one output per feature
    outputs = run_model(model, task.features["dev"], spec.name, 4, tiny_tokenizer.pad_token_id)
    assert len(outputs) == len(task.features["dev"])
    # evaluation: every metric of the spec and the trivial baseline's, finite
    results = evaluate_tasks(model, [task], "dev", 4, tiny_tokenizer.pad_token_id)
    entry = results["tasks"][spec.name]
    assert entry["type"] == kind_name and set(entry["scores"]) == set(spec.metrics)
    assert all(math.isfinite(v) for v in [*entry["scores"].values(), *entry["baseline"].values()])
    # one readable prediction per example, and JSON
    readable = readable_predictions(
        spec, task.labels, task.examples["dev"], task.features["dev"], outputs
    )
    assert len(readable) == len(task.examples["dev"])
    json.dumps(readable)
    # MT-Uncertainty: normalised scores in [0, 1], the same on a second call
    scorer = make_scorer(model, [task], tiny_tokenizer.pad_token_id, "cpu", 4, 3, 7, lambda: 0)
    candidates = [(0, i) for i in range(len(task.features["train"]))]
    norm, raw = scorer(candidates)
    assert norm.shape == (len(candidates),) and np.all((norm >= 0) & (norm <= 1 + 1e-6))
    assert np.all(np.isfinite(raw)) and np.allclose(scorer(candidates)[0], norm)


@pytest.mark.parametrize("kind_name", KINDS)
def test_unlabelled_records_predict(kind_name: str, tmp_path: Path, tiny_tokenizer) -> None:
    """Prediction inputs carry the text columns only; the features have no labels."""
    from camtl.data.examples import to_examples
    from camtl.data.tokenize import encode_examples

    kind = get_kind(kind_name)
    spec = sample_spec(kind_name, tmp_path)
    sample = kind.sample()
    inputs = [
        {column: record[column] for column in sample.text_columns} for record in sample.records
    ]
    examples = to_examples(spec, inputs, "input", labelled=False)
    assert set(kind.input_columns(spec)) == set(sample.text_columns)
    features = encode_examples(spec, examples, tiny_tokenizer, 0).features
    batch = collate_features(features, tiny_tokenizer.pad_token_id)
    assert set(label_keys()) <= set(batch)
    for batch_field in [f for f in kind.batch_fields if f.role == "label"]:
        values = batch[batch_field.name]
        expected = torch.full_like(values, batch_field.fill) if values.numel() else values
        assert torch.equal(values.nan_to_num(-7.0), expected.nan_to_num(-7.0))


def test_batch_fields_of_all_kinds_mix(tiny_encoder_dir: Path, tmp_path: Path, tiny_tokenizer):
    """One batch holding a feature of every kind gives every task its loss."""
    specs = [sample_spec(name, tmp_path) for name in KINDS]
    for i, spec in enumerate(specs):
        spec.name = f"t{i}"
    tasks: list[TaskData] = prepare_tasks(specs, tiny_tokenizer, ("train",))
    model, _ = MultiTaskModel.from_encoder(
        ModelConfig(encoder=str(tiny_encoder_dir), architecture="camtl"),
        specs,
        {t.spec.name: t.labels for t in tasks},
    )
    features = [f for task in tasks for f in task.features["train"][:2]]
    out = model(**collate_features(features, tiny_tokenizer.pad_token_id))
    assert set(out.task_losses) == {s.name for s in specs}
    assert all(torch.isfinite(loss) for loss in out.task_losses.values())


# ----------------------------------------------------------------------------- one run


@pytest.fixture(scope="module")
def all_kinds_run(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    return train_kinds_run(
        tmp_path_factory.mktemp("kinds"),
        tiny_encoder_dir,
        max_steps=6,
        eval_every=3,
        log_every=3,
        sampler={"name": "mt_uncertainty", "options": {"mc_samples": 2}},
    )


def test_all_kinds_train_report_and_evaluate_in_one_run(all_kinds_run: Path) -> None:
    report = json.loads((all_kinds_run / "report.json").read_text())
    tasks = report["results"]["tasks"]
    assert {entry["type"] for entry in tasks.values()} == set(KINDS)
    for name, entry in tasks.items():
        assert set(entry["scores"]) == set(get_kind(entry["type"]).default_metrics), name
    markdown = (all_kinds_run / "report.md").read_text()
    assert all(name in markdown for name in tasks)
    assert main(["evaluate", str(all_kinds_run), "--split", "test"]) == 0


@pytest.mark.parametrize("kind_name", KINDS)
def test_predict_command_for_every_kind(all_kinds_run: Path, kind_name: str, tmp_path: Path):
    sample = get_kind(kind_name).sample()
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(
        "".join(json.dumps({c: r[c] for c in sample.text_columns}) + "\n" for r in sample.records)
    )
    out = tmp_path / "out.jsonl"
    argv = ["predict", str(all_kinds_run), "--task", f"{kind_name}_task"]
    assert main([*argv, "--input", str(inputs), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["row"] for r in rows] == list(range(1, len(sample.records) + 1))


@pytest.mark.parametrize("kind_name", KINDS)
def test_add_task_of_every_kind(all_kinds_run: Path, kind_name: str, tmp_path: Path) -> None:
    entry = task_entry(kind_name, write_sample(kind_name, tmp_path))
    entry["name"] = f"new_{kind_name}"
    task_file = tmp_path / "task.yaml"
    task_file.write_text(yaml.safe_dump(entry))
    out = tmp_path / "added"
    argv = ["add-task", str(all_kinds_run), str(task_file), "--steps", "2", "--output", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["results"]["tasks"]) == [f"new_{kind_name}"]


def test_multiple_choice_context_columns_and_label_forms(tmp_path: Path, tiny_tokenizer) -> None:
    """COPA's shape: premise and question make the context; the label may be an index, the
    choice's text or its column name; a bad label names file, row and the forms allowed."""
    from camtl.data.examples import to_examples
    from camtl.errors import ConfigError, DataError

    spec = TaskSpec(
        name="copa",
        type="multiple_choice",
        text_columns=["premise", "question", "choice1", "choice2"],
        label_column="label",
        options={"context_columns": 2},
        source=SourceSpec(paths={"train": "x"}),
    )
    spec.validate("tasks[0]", "")
    base = {"premise": "the glass fell", "question": "effect", "choice1": "it broke"}
    rows = [
        {**base, "choice2": "it sang", "label": 0},
        {**base, "choice2": "it sang", "label": "it broke"},
        {**base, "choice2": "it sang", "label": "choice2"},
    ]
    examples = to_examples(spec, rows, "train")
    assert [e["label"] for e in examples] == [0, 0, 1]
    assert examples[0]["context"] == "the glass fell effect"
    assert examples[0]["choices"] == ["it broke", "it sang"]
    with pytest.raises(DataError, match=r"row 7.*not a choice index \(0 to 1\)"):
        to_examples(spec, [{**rows[0], "label": "maybe", "_row": 7}], "train")
    bad = TaskSpec(
        name="copa",
        type="multiple_choice",
        text_columns=["premise", "question", "choice1"],
        label_column="label",
        options={"context_columns": 2},
    )
    with pytest.raises(ConfigError, match="2 to 26 choice columns"):
        bad.validate("tasks[0]", "")


@pytest.mark.parametrize("layout", ["wordpiece", *SUBWORD_LAYOUTS])
def test_tagged_words_are_read_as_running_text_and_keep_their_tags(layout, tiny_tokenizer) -> None:
    """The words' tokens are those of the sentence as running text (a byte-level BPE read
    pre-split words each as the start of a text: 'lives', not 'Ġlives'), and every word's
    tag sits on its first token and comes back from it."""
    tokenizer = tiny_tokenizer if layout == "wordpiece" else make_subword_tokenizer(layout)
    kind = get_kind("token_tagging")
    spec = TaskSpec("ner", "token_tagging", ["tokens"], "tags", max_length=64)
    words = ["john", "lives", "in", "new", "york", ",", "today", "!"]
    tags = [1, 0, 0, 2, 2, 0, 0, 0]
    (feature,), _ = kind.encode(spec, [{"tokens": words, "tags": tags}], tokenizer)
    assert feature["input_ids"] == tokenizer(" ".join(words))["input_ids"], layout
    word_ids = feature["word_ids"]
    assert {w for w in word_ids if w is not None} == set(range(len(words)))
    firsts = [label for label in feature["tag_labels"] if label != -100]
    assert firsts == tags, layout
    labels = ["O", "B-PER", "B-LOC"]
    logits = np.full((len(word_ids), 3), -5.0)
    for position, label in enumerate(feature["tag_labels"]):
        logits[position, max(label, 0)] = 5.0
    decoded = kind.decode(spec, labels, [{"tokens": words}], [feature], [logits])
    assert decoded == [[labels[t] for t in tags]], layout


def _choice_spec(max_length: int, choices: int = 2) -> TaskSpec:
    spec = TaskSpec(
        name="mc",
        type="multiple_choice",
        text_columns=["premise", *[f"choice{j}" for j in range(choices)]],
        label_column="label",
        max_length=max_length,
        source=SourceSpec(paths={"train": "x"}),
    )
    spec.validate("tasks[0]", "")
    return spec


def test_multiple_choice_over_max_length_keeps_a_part_of_every_choice(tiny_tokenizer) -> None:
    """The context is cut first; where the choices alone do not fit, the longest are cut to
    a common length: no choice is cut away (the head would score it from no tokens)."""
    from camtl.testing import TINY_WORDS

    kind = get_kind("multiple_choice")
    spec = _choice_spec(max_length=24)
    long = " ".join(TINY_WORDS[:60])
    examples = [
        {"context": "the film", "choices": [long, "john mary"], "label": 1},
        {"context": "the film", "choices": ["john mary", long, "mary"], "label": 2},
        {"context": long, "choices": ["john mary", "in paris"], "label": 0},  # context cut
        {"context": "the film", "choices": ["john mary", "in paris"], "label": 0},  # fits
    ]
    spec3 = _choice_spec(max_length=24, choices=3)
    features, truncated = kind.encode(spec, examples[:1] + examples[2:], tiny_tokenizer)
    features3, _ = kind.encode(spec3, examples[1:2], tiny_tokenizer)
    assert truncated == 2
    for feature, choices in zip(
        features + features3, ([long, "john mary"], ["john mary", "in paris"])
    ):
        ids = feature["choice_ids"]
        assert len(feature["input_ids"]) <= 24
        assert all(ids.count(j) >= 1 for j in range(len(choices)))
    # the short choices stay whole, the long one takes the rest
    assert features[0]["choice_ids"].count(1) == 2 and features[0]["choice_ids"].count(0) > 10
    assert features3[0]["choice_ids"].count(0) == 2 and features3[0]["choice_ids"].count(2) == 1
    assert features[1]["choice_ids"].count(0) == 2  # the context was cut, not the choices
    assert features[2]["choice_labels"] == 0


def test_a_choice_without_tokens_is_never_picked_and_teaches_nothing(
    tiny_tokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    kind = get_kind("multiple_choice")
    spec = _choice_spec(max_length=32)
    unread = "\u200b"  # text the tokenizer drops entirely
    assert not tiny_tokenizer(unread, add_special_tokens=False)["input_ids"]
    examples = [
        {"context": "the film", "choices": ["john mary", unread], "label": 1},
        {"context": "the film", "choices": [unread, "john mary"], "label": 1},
    ]
    with caplog.at_level("WARNING", logger="camtl"):
        features, _ = kind.encode(spec, examples, tiny_tokenizer)
    assert [f["choice_labels"] for f in features] == [-100, 1]  # a gold choice unread: ignored
    assert "task mc: 2 of 2 inputs have a choice with no token" in caplog.text
    head = kind.build_head(spec, hidden_size=8, num_labels=2, dropout=0.0, pooling="cls")
    batch = collate_features(features, tiny_tokenizer.pad_token_id)
    hidden = torch.randn(2, batch["input_ids"].shape[1], 8)
    logits = head(hidden, batch["attention_mask"], {"choice_ids": batch["choice_ids"]})
    probabilities = logits.softmax(-1)
    assert probabilities[0, 1] == 0 and probabilities[1, 0] == 0
    assert logits.argmax(-1).tolist() == [0, 1]
    loss = head.loss(logits, {"choice_labels": batch["choice_labels"]})
    assert torch.isfinite(loss)
    nothing = head.loss(logits, {"choice_labels": torch.tensor([-100, -100])})
    assert nothing.item() == 0.0  # a batch whose every label is ignored: no NaN


def test_multiple_choice_max_length_must_hold_a_token_of_every_choice() -> None:
    from camtl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"max_length': must be at least 10 for 4 choices"):
        _choice_spec(max_length=9, choices=4)
    _choice_spec(max_length=10, choices=4)


@pytest.mark.parametrize("layout", SUBWORD_LAYOUTS)
def test_one_word_choices_keep_their_tokens_when_offsets_hold_the_leading_space(
    layout: str,
) -> None:
    """A choice's first token starts on the separator's space where offsets are not
    trimmed; it is still that choice's (else one-word choices after the first had no
    token, could never be picked, and their gold labels were ignored)."""
    tokenizer = make_subword_tokenizer(layout)
    kind = get_kind("multiple_choice")
    examples = [
        {"context": "the film", "choices": [" john", "mary ", "paris"], "label": label}
        for label in range(3)
    ]  # spaces around a choice are not part of it (a token of a space alone is no choice's)
    least = len(tokenizer("", " </s> ".join(["a"] * 3))["input_ids"])
    features, _ = kind.encode(_choice_spec(max_length=32, choices=3), examples, tokenizer)
    short, _ = kind.encode(_choice_spec(max_length=least, choices=3), examples[:1], tokenizer)
    assert all(short[0]["choice_ids"].count(j) >= 1 for j in range(3)), layout
    for feature, example in zip(features, examples):
        assert all(feature["choice_ids"].count(j) >= 1 for j in range(3)), layout
        assert feature["choice_labels"] == example["label"]
        for token, owner in zip(feature["input_ids"], feature["choice_ids"]):
            if owner >= 0:  # a choice's tokens spell that choice, never a separator
                text = tokenizer.decode([token]).strip()
                assert text and text in example["choices"][owner], (layout, text, owner)


@pytest.mark.parametrize("layout", SUBWORD_LAYOUTS)
def test_multiple_choice_keeps_every_choice_under_roberta_layout_and_subwords(layout: str) -> None:
    """Where special tokens and separators cost more than BERT's (4 per pair, 2 per
    separator), every choice still keeps tokens, down to the least max_length that holds a
    token of each; below it the task is refused, naming it."""
    import random

    from camtl.errors import ConfigError
    from camtl.testing import TINY_WORDS

    tokenizer = make_subword_tokenizer(layout)
    kind = get_kind("multiple_choice")
    rng = random.Random(1)
    least = len(tokenizer("", " </s> ".join(["a"] * 4))["input_ids"])
    assert least > 2 * 4 + 2  # more than the config's BERT-layout bound
    # (at exactly `least` a word this small BPE splits after a space, ' is' into 'Ġ' and
    # 'is', can still cost one token more than planned; a real vocabulary merges them)
    for max_length in (least + 3, least + 8, 40):
        spec = _choice_spec(max_length=max_length, choices=4)
        for _ in range(60):
            lengths = [rng.choice([1, 2, 3, 15, 40]) for _ in range(4)]
            choices = [" ".join(rng.choice(TINY_WORDS) for _ in range(n)) for n in lengths]
            example = {"context": " ".join(TINY_WORDS[:25]), "choices": choices, "label": 3}
            (feature,), _ = kind.encode(spec, [example], tokenizer)
            assert len(feature["input_ids"]) <= max_length
            assert all(feature["choice_ids"].count(j) for j in range(4)), (max_length, lengths)
            assert feature["choice_labels"] == 3
    with pytest.raises(ConfigError, match=f"task 'mc': max_length {least - 1} cannot hold"):
        kind.encode(_choice_spec(max_length=least - 1, choices=4), [example], tokenizer)
