"""Readers for every source kind, on small files the tests write."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from camtl.data.sources import (
    detect_format,
    read_conll,
    read_csv,
    read_json,
    read_jsonl,
    read_parquet,
    read_records,
    read_split,
    read_squad,
    read_tsv,
    source_label,
)
from camtl.errors import DataError
from camtl.tasks.spec import SourceSpec, TaskSpec


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_of(func, *args) -> str:
    with pytest.raises(DataError) as info:
        func(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def pair_spec(**source) -> TaskSpec:
    return TaskSpec(
        name="pairs",
        type="classification",
        text_columns=["a", "b"],
        label_column="label",
        source=SourceSpec(**source),
    )


SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Rivers",
            "paragraphs": [
                {
                    "context": "The river runs north past the old mill.",
                    "qas": [
                        {
                            "id": "q1",
                            "question": "Which way does it run?",
                            "answers": [{"text": "north", "answer_start": 15}],
                        },
                        {
                            "id": "q2",
                            "question": "What does it pass?",
                            "answers": [
                                {"text": "the old mill", "answer_start": 26},
                                {"text": "old mill", "answer_start": 30},
                            ],
                        },
                    ],
                }
            ],
        },
        {
            "title": "Hills",
            "paragraphs": [
                {
                    "context": "Green hills rise behind the town.",
                    "qas": [
                        {
                            "id": "q3",
                            "question": "What rises?",
                            "answers": [{"text": "Green hills", "answer_start": 0}],
                        }
                    ],
                }
            ],
        },
    ],
}


# ----------------------------------------------------------------------------- csv / tsv


def test_csv_rows_are_strings_with_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", 'a,b,label\n"one, two",x,1\n\n"multi\nline",y,0\n')
    records = read_csv(path)
    assert [r["a"] for r in records] == ["one, two", "multi\nline"]
    assert [r["label"] for r in records] == ["1", "0"]
    assert [r["_row"] for r in records] == [2, 4]
    assert records[0]["_file"] == str(path)


def test_csv_field_count_mismatch_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.csv", "a,b,label\nx,y,1\nx,y\n")
    message = error_of(read_csv, path)
    assert "bad.csv" in message and "line 3" in message and "expected 3 fields" in message


def test_malformed_csv_quoting(tmp_path: Path) -> None:
    path = write(tmp_path / "q.csv", 'a,b\nx,"y"z\n')
    message = error_of(read_csv, path)
    assert "q.csv" in message and "line 2" in message and "malformed" in message


def test_tsv_quoting_is_off(tmp_path: Path) -> None:
    path = write(tmp_path / "d.tsv", 'sentence\tlabel\nhe said "hi\tthere"\t1\n')
    with pytest.raises(DataError, match="line 2"):
        read_tsv(path)  # the tab inside quotes still splits: 3 fields
    path = write(tmp_path / "e.tsv", 'sentence\tlabel\nhe said "hi there\t1\n"quoted"\t0\n')
    records = read_tsv(path)
    assert [r["sentence"] for r in records] == ['he said "hi there', '"quoted"']
    assert [r["_row"] for r in records] == [2, 3]


def test_empty_file_gives_no_records(tmp_path: Path) -> None:
    assert read_csv(write(tmp_path / "e.csv", "")) == []
    assert read_tsv(write(tmp_path / "h.tsv", "a\tb\n")) == []


# ----------------------------------------------------------------------------- json


def test_jsonl_rows_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"a": "x", "label": 1}\n\n{"a": "y\\u2028z", "label": 0}\n')
    records = read_jsonl(path)
    assert [r["_row"] for r in records] == [1, 3]
    assert records[1]["a"] == "y\u2028z"


def test_jsonl_raw_line_separator_inside_a_string(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"a": "y\u2028z"}\n')
    assert read_jsonl(path)[0]["a"] == "y\u2028z"


def test_jsonl_malformed_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", '{"a": 1}\n{"a": }\n')
    message = error_of(read_jsonl, path)
    assert "bad.jsonl" in message and "line 2" in message and "malformed JSON" in message


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    message = error_of(read_jsonl, write(tmp_path / "l.jsonl", '{"a": 1}\n[1, 2]\n'))
    assert "l.jsonl" in message and "line 2" in message and "JSON object" in message


def test_json_list(tmp_path: Path) -> None:
    path = write(tmp_path / "d.json", json.dumps([{"a": "x"}, {"a": "y"}]))
    assert [(r["a"], r["_row"]) for r in read_json(path)] == [("x", 1), ("y", 2)]


def test_json_errors(tmp_path: Path) -> None:
    message = error_of(read_json, write(tmp_path / "m.json", '[{"a": 1},\n {"a": ]'))
    assert "m.json" in message and "line 2" in message
    message = error_of(read_json, write(tmp_path / "o.json", '{"a": 1}'))
    assert "o.json" in message and "JSON list" in message
    message = error_of(read_json, write(tmp_path / "n.json", '[{"a": 1}, 3]'))
    assert "n.json" in message and "row 2" in message


# ----------------------------------------------------------------------------- parquet


def test_parquet(tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "d.parquet"
    pd.DataFrame(
        {"a": ["x", "y"], "score": [1.5, float("nan")], "tokens": [["a", "b"], ["c"]]}
    ).to_parquet(path)
    records = read_parquet(path)
    assert records[0]["a"] == "x" and records[0]["tokens"] == ["a", "b"]
    assert records[1]["score"] is None
    assert [r["_row"] for r in records] == [1, 2]


def test_parquet_errors(tmp_path: Path) -> None:
    assert "file not found" in error_of(read_parquet, tmp_path / "none.parquet")
    message = error_of(read_parquet, write(tmp_path / "bad.parquet", "not parquet"))
    assert "bad.parquet" in message and "Parquet" in message


# ----------------------------------------------------------------------------- conll


def test_conll(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ner.conll",
        "-DOCSTART- -X- -X- O\n\n"
        "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\n"
        "Peter\tB-PER\nBlack Jr\tI-PER\n",
    )
    records = read_conll(path)
    assert records[0]["tokens"] == ["EU", "rejects"] and records[0]["tags"] == ["B-ORG", "O"]
    assert records[1]["tokens"] == ["Peter", "Black Jr"]
    assert records[1]["tags"] == ["B-PER", "I-PER"]
    assert [r["_row"] for r in records] == [3, 7]


def test_conll_line_without_tag(tmp_path: Path) -> None:
    message = error_of(read_conll, write(tmp_path / "t.conll", "a O\nlonely\n"))
    assert "t.conll" in message and "line 2" in message


# ----------------------------------------------------------------------------- squad


def test_squad(tmp_path: Path) -> None:
    path = write(tmp_path / "squad.json", json.dumps(SQUAD))
    records = read_squad(path)
    assert [r["id"] for r in records] == ["q1", "q2", "q3"]
    assert records[1]["answers"] == {"text": ["the old mill", "old mill"], "answer_start": [26, 30]}
    assert records[2]["context"].startswith("Green")
    assert [r["_row"] for r in records] == [1, 2, 3]
    assert read_json(path) == records  # recognised by shape, too
    assert read_records(path, "squad") == records


def test_squad_structure_errors(tmp_path: Path) -> None:
    bad = {"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [{"id": "x"}]}]}]}
    message = error_of(read_squad, write(tmp_path / "s.json", json.dumps(bad)))
    assert "s.json" in message and "data[0].paragraphs[0].qas[0]" in message
    assert "question" in message
    message = error_of(read_squad, write(tmp_path / "l.json", "[]"))
    assert "not SQuAD" in message


@pytest.mark.parametrize(
    ("paragraph", "expected"),
    [
        ({"context": "c", "qas": None}, "data[0].paragraphs[0].qas: expected a list, got null"),
        ({"context": "c"}, "data[0].paragraphs[0]: 'qas' is missing"),
        (
            {"context": 3, "qas": []},
            "data[0].paragraphs[0].context: expected a string, got an integer",
        ),
        ("a paragraph", "data[0].paragraphs[0]: expected an object with 'context', got a string"),
        (
            {
                "context": "c",
                "qas": [{"question": "q", "answers": [{"text": "c", "answer_start": True}]}],
            },
            "data[0].paragraphs[0].qas[0].answers[0].answer_start: expected an integer, "
            "got a boolean",
        ),
    ],
)
def test_squad_errors_name_the_field_and_its_json_type(
    tmp_path: Path, paragraph: object, expected: str
) -> None:
    bad = {"data": [{"title": "t", "paragraphs": [paragraph]}]}
    message = error_of(read_squad, write(tmp_path / "s.json", json.dumps(bad)))
    assert message == f"{tmp_path / 's.json'}: {expected}"


# ----------------------------------------------------------------------------- dispatch


def test_format_from_suffix_or_spec(tmp_path: Path) -> None:
    assert detect_format("a/b.tsv") == "tsv"
    assert detect_format("a/b.JSONL") == "jsonl"
    assert detect_format("a/b.txt", "tsv") == "tsv"
    assert "source.format" in error_of(detect_format, "a/b.txt")
    path = write(tmp_path / "d.txt", "a\tlabel\nx\t1\n")
    assert read_records(path, "tsv")[0]["a"] == "x"


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    assert error_of(read_csv, tmp_path / "nope.csv") == f"{tmp_path / 'nope.csv'}: file not found"
    (tmp_path / "dir.csv").mkdir()
    assert "is a folder" in error_of(read_csv, tmp_path / "dir.csv")
    (tmp_path / "latin.csv").write_bytes(b"a,label\ncaf\xe9,1\n")
    assert "UTF-8" in error_of(read_csv, tmp_path / "latin.csv")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "conll"])
def test_source_encoding_reads_latin1_files(tmp_path: Path, fmt: str) -> None:
    """A Latin-1 file fails in one line that names the fix; with source.encoding it reads."""
    content = {
        "csv": "text,label\ncaf\u00e9,1\n",
        "tsv": "text\tlabel\ncaf\u00e9\t1\n",
        "jsonl": '{"text": "caf\u00e9", "label": 1}\n',
        "conll": "caf\u00e9\tO\n",
    }[fmt]
    path = tmp_path / f"latin.{fmt}"
    path.write_bytes(content.encode("latin-1"))
    message = error_of(read_records, path)
    offset = content.index("\u00e9")
    assert message == (
        f"{path}: not valid UTF-8 text (byte offset {offset}); "
        "if the file is in another encoding, name it in the task's "
        "source.encoding (for example latin-1, cp1252 or utf-16)"
    )
    record = read_records(path, encoding="latin-1")[0]
    assert (record["tokens"][0] if fmt == "conll" else record["text"]) == "caf\u00e9"


def test_utf8_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("text,label\nx,1\n".encode("utf-8-sig"))
    assert list(read_records(path)[0])[:2] == ["text", "label"]
    assert list(read_records(path, encoding="UTF8")[0])[:2] == ["text", "label"]


def test_unknown_source_encoding_names_the_key() -> None:
    from camtl.errors import ConfigError
    from camtl.structured import from_dict

    with pytest.raises(
        ConfigError,
        match=r"key 'source.encoding': unknown text encoding "
        r"'latin-9x'",
    ):
        from_dict(SourceSpec, {"paths": {"train": "x.csv"}, "encoding": "latin-9x"}, "source")


# ----------------------------------------------------------------------------- read_split


def test_read_split_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "data" / "train.csv", "a,b,label\nx,y,1\n")
    monkeypatch.chdir(tmp_path)
    spec = pair_spec(kind="files", paths={"train": "data/train.csv"})
    assert read_split(spec, "train")[0]["a"] == "x"
    assert read_split(spec, "dev") is None
    assert source_label(spec, "train") == "data/train.csv"


def test_read_split_files_with_format(tmp_path: Path) -> None:
    path = write(tmp_path / "train.data", '{"a": "x", "b": "y", "label": 1}\n')
    spec = pair_spec(kind="files", format="jsonl", paths={"train": str(path)})
    assert read_split(spec, "train")[0]["label"] == 1


def test_read_split_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "tasks" / "pairs" / "train.jsonl", '{"a": "x", "b": "y", "label": 0}\n')
    fake = types.ModuleType("camtl.data.offline")
    fake.task_split_path = lambda name, split: tmp_path / "tasks" / name / f"{split}.jsonl"
    monkeypatch.setitem(sys.modules, "camtl.data.offline", fake)
    spec = pair_spec(kind="offline")
    assert read_split(spec, "train")[0]["_row"] == 1
    assert read_split(spec, "test") is None


# --- hub


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    return tmp_path


def test_hub_packaged_builder_over_local_files(hub_cache: Path) -> None:
    train = write(
        hub_cache / "tr.jsonl",
        '{"a": "x", "b": "y", "label": 1}\n{"a": "p", "b": "q", "label": 0}\n',
    )
    dev = write(hub_cache / "dv.jsonl", '{"a": "m", "b": "n", "label": 0}\n')
    spec = pair_spec(kind="hub", hub_name="json", paths={"train": str(train), "dev": str(dev)})
    records = read_split(spec, "train")
    assert [(r["a"], r["label"], r["_row"]) for r in records] == [("x", 1, 1), ("p", 0, 2)]
    assert records[0]["_file"] == "json/train"
    assert read_split(spec, "dev")[0]["a"] == "m"
    assert read_split(spec, "test") is None


def test_hub_unknown_split_is_absent(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    train = write(hub_cache / "tr.jsonl", '{"a": "x", "b": "y", "label": 1}\n')
    real = datasets.load_dataset

    def only_train(name, config=None, **kwargs):
        return real(name, config, data_files={"train": str(train)}, split=kwargs["split"])

    monkeypatch.setattr(datasets, "load_dataset", only_train)
    spec = pair_spec(kind="hub", hub_name="json")
    assert len(read_split(spec, "train")) == 1
    assert read_split(spec, "test") is None


def test_hub_class_labels_become_names(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "a": datasets.Value("string"),
            "b": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["no", "yes"]),
        }
    )
    table = datasets.Dataset.from_dict(
        {"a": ["x", "y", "z"], "b": ["1", "2", "3"], "label": [1, -1, 0]}, features=features
    )
    calls = []

    def fake_load(name, config=None, **kwargs):
        calls.append((name, config, kwargs))
        return table

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    spec = pair_spec(
        kind="hub",
        hub_name="org/pairs",
        hub_config="main",
        split_names={"train": "train", "dev": "valid"},
    )
    records = read_split(spec, "dev")
    assert calls == [("org/pairs", "main", {"split": "valid"})]
    assert [(r["label"], r["_row"]) for r in records] == [("yes", 1), ("no", 3)]
    assert records[0]["_file"] == "org/pairs:main/valid"
    assert read_split(spec, "test") is None  # not in split_names
    spec.labels = ["0", "1"]  # labels given as integer codes: keep the integers
    assert [r["label"] for r in read_split(spec, "train")] == [1, -1, 0]


def test_hub_tagging_class_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-X"])),
        }
    )
    table = datasets.Dataset.from_dict(
        {"tokens": [["a", "b"]], "tags": [[1, 0]]}, features=features
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: table)
    spec = TaskSpec(
        name="tag",
        type="token_tagging",
        text_columns=["tokens"],
        label_column="tags",
        source=SourceSpec(kind="hub", hub_name="org/ner"),
    )
    assert read_split(spec, "train")[0]["tags"] == ["B-X", "O"]


def test_hub_failure_is_one_line_with_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError(
            "Couldn't reach 'org/pairs' on the Hub (OfflineModeIsEnabled)\nmore detail"
        )

    monkeypatch.setattr(datasets, "load_dataset", offline)
    spec = pair_spec(kind="hub", hub_name="org/pairs")
    message = error_of(read_split, spec, "train")
    assert "org/pairs" in message and "local" in message and "ConnectionError" in message


def test_headerless_csv_and_tsv_with_source_columns(tmp_path: Path) -> None:
    from camtl.data.examples import load_task_examples

    write(tmp_path / "train.tsv", 'a "quoted" film\t1\nbad\t0\n')
    write(tmp_path / "dev.csv", "fine,1\n")
    spec = TaskSpec(
        "mine",
        "classification",
        ["text"],
        "label",
        source=SourceSpec(
            kind="files",
            columns=["text", "label"],
            paths={"train": str(tmp_path / "train.tsv"), "dev": str(tmp_path / "dev.csv")},
        ),
    )
    examples, labels = load_task_examples(spec, ("train", "dev"))
    assert [e["text_a"] for e in examples["train"]] == ['a "quoted" film', "bad"]
    assert labels == ["0", "1"] and examples["dev"][0]["label"] == 1
    assert read_records(tmp_path / "train.tsv", columns=["text", "label"])[1]["_row"] == 2
    write(tmp_path / "short.csv", "x,1\ny\n")
    message = error_of(read_records, tmp_path / "short.csv", None, ["text", "label"])
    assert "short.csv, line 2: expected 2 fields like source.columns" in message
    write(tmp_path / "d.jsonl", '{"text": "x"}\n')
    assert "header-less CSV or TSV" in error_of(read_records, tmp_path / "d.jsonl", None, ["t"])
