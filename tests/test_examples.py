"""Records -> canonical examples: validation messages, labels, subsampling, dev carving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camtl.data.examples import (
    carve_dev,
    infer_labels,
    label_key,
    load_task_examples,
    subsample,
    to_examples,
)
from camtl.data.sources import read_conll, read_csv, read_jsonl, read_squad
from camtl.errors import DataError
from camtl.tasks.spec import SourceSpec, TaskSpec


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def spec_of(
    task_type: str, text_columns: list[str], label_column: str = "label", **kwargs
) -> TaskSpec:
    return TaskSpec(
        name=kwargs.pop("name", "t"),
        type=task_type,
        text_columns=text_columns,
        label_column=label_column,
        **kwargs,
    )


def pair_spec(**kwargs) -> TaskSpec:
    return spec_of("classification", ["a", "b"], **kwargs)


def error(spec: TaskSpec, records: list[dict], split: str = "train") -> str:
    with pytest.raises(DataError) as info:
        to_examples(spec, records, split)
    message = str(info.value)
    assert "\n" not in message
    return message


def csv_records(tmp_path: Path, text: str, name: str = "d.csv") -> list[dict]:
    return read_csv(write(tmp_path / name, text))


# ----------------------------------------------------------------------------- classification


def test_pair_classification_with_integer_coded_labels(tmp_path: Path) -> None:
    records = csv_records(tmp_path, "a,b,label\nx,y,1\np,q,0\n")
    records.append({"a": "m", "b": "n", "label": 1, "_file": "mem", "_row": 9})
    spec = pair_spec(labels=["0", "1"])
    examples = to_examples(spec, records, "train")
    assert examples[0] == {
        "text_a": "x",
        "text_b": "y",
        "label": 1,
        "_file": str(tmp_path / "d.csv"),
        "_row": 2,
    }
    assert [e["label"] for e in examples] == [1, 0, 1]


def test_single_sentence_has_no_text_b(tmp_path: Path) -> None:
    spec = spec_of("classification", ["a"], labels=["neg", "pos"])
    examples = to_examples(spec, csv_records(tmp_path, "a,label\nfine,pos\n"), "dev")
    assert examples[0]["text_b"] is None and examples[0]["label"] == 1


def test_missing_column_names_the_columns_present(tmp_path: Path) -> None:
    records = csv_records(tmp_path, "a,c,label\nx,y,1\n", "miss.csv")
    message = error(pair_spec(labels=["0", "1"]), records)
    assert message == (
        f"{tmp_path / 'miss.csv'}, row 2: missing column 'b' (columns present: a, c, label)"
    )


def test_label_not_in_labels(tmp_path: Path) -> None:
    records = csv_records(tmp_path, "a,b,label\nx,y,1\nx,y,maybe\n", "lab.csv")
    message = error(pair_spec(labels=["0", "1"]), records)
    assert "lab.csv, row 3" in message and "'maybe'" in message and "0, 1" in message


def test_one_empty_text_of_a_pair_is_read(tmp_path: Path) -> None:
    """An e-mail without a subject, a pair without its second sentence: ordinary input."""
    records = csv_records(tmp_path, "a,b,label\nx,  ,1\n,y,0\n", "one.csv")
    examples = to_examples(pair_spec(labels=["0", "1"]), records, "train")
    assert [(e["text_a"], e["text_b"]) for e in examples] == [("x", "  "), ("", "y")]
    unlabelled = to_examples(pair_spec(), records, "input", labelled=False)
    assert [e["text_b"] for e in unlabelled] == ["  ", "y"]


def test_empty_text(tmp_path: Path) -> None:
    records = csv_records(tmp_path, "a,b,label\nx,y,1\n ,  ,1\n", "empty.csv")
    message = error(pair_spec(labels=["0", "1"]), records)
    assert "empty.csv, row 3" in message and "empty text in both columns 'a' and 'b'" in message


def test_missing_label_value() -> None:
    records = [{"a": "x", "b": "y", "label": None, "_file": "f.jsonl", "_row": 4}]
    assert "f.jsonl, row 4: missing label" in error(pair_spec(labels=["0"]), records)


def test_label_inference_sorted_and_string_matched() -> None:
    records = [{"label": v, "_file": "f", "_row": i} for i, v in enumerate([10, "2", 2.0, 1])]
    assert infer_labels(pair_spec(), records) == ["1", "2", "10"]
    words = [{"label": v, "_file": "f", "_row": 1} for v in ["pos", "neg", "pos"]]
    assert infer_labels(pair_spec(), words) == ["neg", "pos"]
    assert label_key(1.0) == "1" and label_key(True) == "True" and label_key(None) is None
    assert infer_labels(spec_of("regression", ["a"]), words) == []


# ----------------------------------------------------------------------------- regression


def test_regression_targets(tmp_path: Path) -> None:
    spec = spec_of("regression", ["a", "b"])
    records = csv_records(tmp_path, "a,b,label\nx,y,3.5\nx,y, -1 \n")
    assert [e["label"] for e in to_examples(spec, records, "train")] == [3.5, -1.0]


@pytest.mark.parametrize(
    "value, words",
    [
        ("nan", "not a finite number"),
        ("inf", "not a finite number"),
        ("high", "not a number"),
        ("", "not a number"),
    ],
)
def test_bad_regression_targets(tmp_path: Path, value: str, words: str) -> None:
    records = csv_records(tmp_path, f"a,label\nx,1\nx,{value}\n", "reg.csv")
    message = error(spec_of("regression", ["a"]), records)
    assert "reg.csv, row 3" in message and words in message and "'label'" in message


def test_regression_none_target() -> None:
    records = [{"a": "x", "label": float("nan"), "_file": "p.parquet", "_row": 7}]
    message = error(spec_of("regression", ["a"]), records)
    assert "p.parquet, row 7" in message and "not a number" in message


# ----------------------------------------------------------------------------- tagging


def tag_spec(**kwargs) -> TaskSpec:
    return spec_of("token_tagging", ["tokens"], "tags", **kwargs)


def test_conll_tagging_examples(tmp_path: Path) -> None:
    records = read_conll(write(tmp_path / "n.conll", "Ann B-PER\nsings O\n\nHi O\n"))
    labels = infer_labels(tag_spec(), records)
    assert labels == ["B-PER", "O"]
    examples = to_examples(tag_spec(labels=labels), records, "train")
    assert examples[0]["tokens"] == ["Ann", "sings"] and examples[0]["tags"] == [0, 1]
    assert examples[1]["_row"] == 4


def test_tagging_length_mismatch(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.jsonl",
        '{"tokens": ["a", "b"], "tags": ["O", "O"]}\n{"tokens": ["a", "b"], "tags": ["O"]}\n',
    )
    message = error(tag_spec(labels=["O"]), read_jsonl(path))
    assert "t.jsonl, row 2" in message and "2 tokens" in message and "1 tags" in message


def test_tag_not_in_labels_and_whitespace_strings(tmp_path: Path) -> None:
    records = csv_records(tmp_path, "tokens,tags\na b,O B-X\n", "tags.csv")
    assert to_examples(tag_spec(labels=["B-X", "O"]), records, "train")[0]["tags"] == [1, 0]
    message = error(tag_spec(labels=["O"]), records)
    assert "tags.csv, row 2" in message and "'B-X'" in message and "position 2" in message


def test_tagging_empty_tokens() -> None:
    records = [{"tokens": [], "tags": [], "_file": "e.jsonl", "_row": 3}]
    assert "e.jsonl, row 3: empty text" in error(tag_spec(labels=["O"]), records)


# ----------------------------------------------------------------------------- span QA


def qa_spec(**kwargs) -> TaskSpec:
    return spec_of("span_qa", ["question", "context"], "answers", **kwargs)


def squad_file(tmp_path: Path, answers: list[dict], context: str = "aa bb aa cc") -> Path:
    data = {
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [{"id": "q1", "question": "which?", "answers": answers}],
                    }
                ],
            }
        ]
    }
    return write(tmp_path / "sq.json", json.dumps(data))


def test_squad_examples(tmp_path: Path) -> None:
    records = read_squad(squad_file(tmp_path, [{"text": "bb", "answer_start": 3}]))
    example = to_examples(qa_spec(), records, "dev")[0]
    assert example == {
        "id": "q1",
        "question": "which?",
        "context": "aa bb aa cc",
        "answers": [{"text": "bb", "start": 3}],
        "_file": str(tmp_path / "sq.json"),
        "_row": 1,
    }


def test_qa_offset_is_fixed_by_searching(tmp_path: Path) -> None:
    records = read_squad(
        squad_file(tmp_path, [{"text": "aa", "answer_start": 5}, {"text": "cc", "answer_start": 0}])
    )
    answers = to_examples(qa_spec(), records, "dev")[0]["answers"]
    assert answers == [{"text": "aa", "start": 6}, {"text": "cc", "start": 9}]


def test_qa_answer_not_in_context(tmp_path: Path) -> None:
    records = read_squad(squad_file(tmp_path, [{"text": "zz", "answer_start": 3}]))
    message = error(qa_spec(), records)
    assert "sq.json, row 1" in message and "'zz'" in message and "not in the context" in message


def test_qa_answers_from_csv_json_cell(tmp_path: Path) -> None:
    records = csv_records(
        tmp_path, 'question,context,answers\nwho?,Ann sings,"[{""text"": ""Ann"", ""start"": 0}]"\n'
    )
    example = to_examples(qa_spec(), records, "train")[0]
    assert example["answers"] == [{"text": "Ann", "start": 0}]
    assert example["id"] == "train-2"


# ----------------------------------------------------------------------------- splits


def test_empty_split_message() -> None:
    spec = pair_spec(
        labels=["0"], source=SourceSpec(kind="files", paths={"train": "a.csv", "dev": "d.csv"})
    )
    assert error(spec, [], "dev") == "d.csv: split 'dev' has no examples"


def test_subsampling_is_deterministic_and_keeps_order() -> None:
    records = [{"a": f"s{i}", "label": i % 2, "_file": "f", "_row": i + 1} for i in range(100)]
    first = subsample(records, 10, "task_a")
    assert first == subsample(records, 10, "task_a")
    assert len(first) == 10
    assert [r["_row"] for r in first] == sorted(r["_row"] for r in first)
    assert first != subsample(records, 10, "task_b")
    assert subsample(records, 500, "task_a") is records
    spec = spec_of("classification", ["a"], labels=["0", "1"], max_dev_examples=7)
    examples = to_examples(spec, records, "dev")
    assert len(examples) == 7 and examples == to_examples(spec, records, "dev")
    assert len(to_examples(spec, records, "train")) == 100


def test_carve_dev_is_deterministic_and_disjoint() -> None:
    records = [{"i": i} for i in range(50)]
    train, dev = carve_dev(records)
    assert len(dev) == 5 and len(train) == 45
    assert {r["i"] for r in train}.isdisjoint({r["i"] for r in dev})
    assert (train, dev) == carve_dev(records)
    assert carve_dev(records, seed=3) != (train, dev)
    assert carve_dev([{"i": 0}, {"i": 1}])[1] != []
    with pytest.raises(ValueError):
        carve_dev(records, fraction=1.5)


def test_load_task_examples_carves_dev_and_infers_labels(tmp_path: Path) -> None:
    rows = "".join(f"s{i},t{i},{['pos', 'neg', 'mid'][i % 3]}\n" for i in range(40))
    train = write(tmp_path / "train.csv", "a,b,label\n" + rows)
    spec = pair_spec(
        source=SourceSpec(kind="files", paths={"train": str(train)}), max_train_examples=20
    )
    examples, labels = load_task_examples(spec)
    assert labels == ["mid", "neg", "pos"]
    assert set(examples) == {"train", "dev"}  # no test split in the source
    assert len(examples["dev"]) == 4 and len(examples["train"]) == 20
    dev_rows = {e["_row"] for e in examples["dev"]}
    assert dev_rows.isdisjoint(e["_row"] for e in examples["train"])
    assert spec.labels is None  # the caller's spec is left alone
    again, _ = load_task_examples(spec)
    assert again == examples


def test_load_task_examples_reads_given_splits_only(tmp_path: Path) -> None:
    dev = write(tmp_path / "dev.jsonl", '{"a": "x", "b": "y", "label": 1}\n')
    test = write(tmp_path / "test.jsonl", '{"a": "x", "b": "y", "label": "0"}\n')
    spec = pair_spec(
        labels=["0", "1"],
        source=SourceSpec(
            kind="files",
            paths={"train": str(tmp_path / "missing.jsonl"), "dev": str(dev), "test": str(test)},
        ),
    )
    examples, labels = load_task_examples(spec, ("dev", "test"))
    assert labels == ["0", "1"]
    assert [e["label"] for e in examples["dev"]] == [1]
    assert [e["label"] for e in examples["test"]] == [0]
    with pytest.raises(DataError, match="missing.jsonl: file not found"):
        load_task_examples(spec)


def test_pinned_labels_win_and_leave_the_spec_alone(tmp_path: Path) -> None:
    """A saved model's labels: used as given, train not read to infer any, spec unchanged."""
    dev = write(tmp_path / "dev.jsonl", '{"a": "x", "b": "y", "label": "yes"}\n')
    source = SourceSpec(paths={"train": str(tmp_path / "missing.jsonl"), "dev": str(dev)})
    spec = pair_spec(source=source)
    examples, labels = load_task_examples(spec, ("dev",), labels=["no", "yes"])
    assert labels == ["no", "yes"] and [e["label"] for e in examples["dev"]] == [1]
    assert spec.labels is None


def test_load_task_examples_regression_has_no_labels(tmp_path: Path) -> None:
    train = write(
        tmp_path / "tr.jsonl", "".join(f'{{"a": "s{i}", "label": {i / 2}}}\n' for i in range(10))
    )
    spec = spec_of("regression", ["a"], source=SourceSpec(paths={"train": str(train)}))
    examples, labels = load_task_examples(spec, ("train", "dev"))
    assert labels == [] and len(examples["dev"]) == 1 and len(examples["train"]) == 9


def test_load_task_examples_empty_train(tmp_path: Path) -> None:
    train = write(tmp_path / "tr.csv", "a,b,label\n")
    spec = pair_spec(source=SourceSpec(paths={"train": str(train)}))
    with pytest.raises(DataError, match=r"tr.csv: split 'train' has no examples"):
        load_task_examples(spec)


# ----------------------------------------------------------------------------- bad rows


# rows 3 (empty text) and 5 (empty label: missing, not a class named "") are bad
BAD_ROWS_CSV = "a,b,label\nx,y,pos\n,,neg\np,q,neg\nr,s,\nt,u,pos\n"


@pytest.mark.parametrize("mode", ["error", "skip"])
def test_on_bad_rows(tmp_path: Path, mode: str) -> None:
    """error (the default) stops at the first bad row, naming it; skip leaves the bad rows
    out, infers labels from the good ones and lists every skipped row."""
    path = write(tmp_path / "train.csv", BAD_ROWS_CSV)
    spec = pair_spec(source=SourceSpec(paths={"train": str(path)}, on_bad_rows=mode))
    skipped: list[dict] = []
    if mode == "error":
        # labels are inferred first, so the missing label (row 5) is what stops the run
        with pytest.raises(DataError, match=rf"{path}, row 5: missing label in column 'label'"):
            load_task_examples(spec, ["train"], skipped)
        return
    examples, labels = load_task_examples(spec, ["train"], skipped)
    assert labels == ["neg", "pos"]
    assert [e["_row"] for e in examples["train"]] == [2, 4, 6]
    assert [(s["row"], s["split"], s["file"]) for s in skipped] == [
        (3, "train", str(path)),
        (5, "train", str(path)),
    ]
    assert all(s["error"].startswith(f"{path}, row") for s in skipped)


def test_skip_with_every_row_bad_still_fails(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "a,b,label\n,,neg\n")
    spec = pair_spec(
        labels=["neg"], source=SourceSpec(paths={"train": str(path)}, on_bad_rows="skip")
    )
    with pytest.raises(DataError, match="no valid examples"):
        load_task_examples(spec, ["train"], [])
