"""Records -> validated canonical examples; label inference, subsampling and dev carving.

The example layout per task type is in docs/architecture.md. Every problem with a record
is a one-line DataError naming its file and row.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from camtl.constants import DATA_SEED, SPLITS
from camtl.data.sources import META_KEYS, Record, read_split, source_label
from camtl.errors import DataError
from camtl.tasks.spec import TaskSpec, TaskType

_LABELLED = (TaskType.CLASSIFICATION, TaskType.TOKEN_TAGGING)


# ----------------------------------------------------------------------------- helpers


def _where(record: Record) -> str:
    return f"{record.get('_file', '<records>')}, row {record.get('_row', '?')}"


def _field(record: Record, column: str) -> Any:
    """A record's value; a missing column names the columns that are there."""
    if column not in record:
        present = ", ".join(str(k) for k in record if k not in META_KEYS) or "none"
        raise DataError(f"{_where(record)}: missing column '{column}' (columns present: {present})")
    return record[column]


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def label_key(value: Any) -> str | None:
    """The string form a class label or tag is matched by (``1``, ``1.0`` and ``"1"`` agree)."""
    if _is_missing(value) or (isinstance(value, str) and not value.strip()):
        return None  # an empty CSV cell is a missing label, not a class named ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _show(labels: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(labels[:limit])
    return shown + (f", ... ({len(labels)} in all)" if len(labels) > limit else "")


def _sort_labels(keys: Iterable[str]) -> list[str]:
    """Sorted; integer-like labels sort by value (2 before 10)."""
    keys = set(keys)
    try:
        return sorted(keys, key=int)
    except ValueError:
        return sorted(keys)


def _seed_for(name: str) -> int:
    return DATA_SEED + zlib.crc32(name.encode("utf-8"))


# ----------------------------------------------------------------------------- labels


def _as_list(record: Record, column: str) -> list[Any]:
    """A list column; a string is split on whitespace (handy for CSV files)."""
    value = _field(record, column)
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)):
        return list(value)
    raise DataError(
        f"{_where(record)}: column '{column}' must hold a list, got {type(value).__name__}"
    )


def infer_labels(spec: TaskSpec, records: list[Record], skip_bad: bool = False) -> list[str]:
    """Sorted distinct class labels (classification) or tags (tagging); [] for other types.

    ``skip_bad``: a record without a usable label is passed over (``to_examples`` then
    skips and reports it) instead of stopping the run."""
    seen: set[str] = set()
    for record in records:
        try:
            seen.update(_record_labels(spec, record))
        except DataError:
            if not skip_bad:
                raise
    return _sort_labels(seen)


def _record_labels(spec: TaskSpec, record: Record) -> list[str]:
    if spec.type == TaskType.CLASSIFICATION:
        key = label_key(_field(record, spec.label_column))
        if key is None:
            raise DataError(f"{_where(record)}: missing label in column '{spec.label_column}'")
        return [key]
    if spec.type == TaskType.TOKEN_TAGGING:
        keys = []
        for tag in _as_list(record, spec.label_column):
            key = label_key(tag)
            if key is None:
                raise DataError(f"{_where(record)}: missing tag in column '{spec.label_column}'")
            keys.append(key)
        return keys
    return []


# ----------------------------------------------------------------------------- fields


def _text(record: Record, column: str) -> str:
    value = _field(record, column)
    if _is_missing(value):
        value = ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise DataError(
            f"{_where(record)}: column '{column}' must hold text, got {type(value).__name__}"
        )
    if not value.strip():
        raise DataError(f"{_where(record)}: empty text in column '{column}'")
    return value


def _class_index(record: Record, column: str, index: dict[str, int], labels: Sequence[str]) -> int:
    key = label_key(_field(record, column))
    if key is None:
        raise DataError(f"{_where(record)}: missing label in column '{column}'")
    if key not in index:
        raise DataError(
            f"{_where(record)}: label {key!r} in column '{column}' is not one of "
            f"the task's labels ({_show(labels)})"
        )
    return index[key]


def _target(record: Record, column: str) -> float:
    value = _field(record, column)
    try:
        if isinstance(value, bool) or _is_missing(value):
            raise ValueError
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise DataError(
            f"{_where(record)}: regression target {value!r} in column '{column}' is not a number"
        ) from None
    if not math.isfinite(number):
        raise DataError(
            f"{_where(record)}: regression target {value!r} in column "
            f"'{column}' is not a finite number"
        )
    return number


def _sentence_example(
    spec: TaskSpec, record: Record, index: dict[str, int], labels: Sequence[str]
) -> dict[str, Any]:
    text_a = _text(record, spec.text_columns[0])
    text_b = _text(record, spec.text_columns[1]) if spec.is_pair else None
    if spec.type == TaskType.REGRESSION:
        label: float | int = _target(record, spec.label_column)
    else:
        label = _class_index(record, spec.label_column, index, labels)
    return {"text_a": text_a, "text_b": text_b, "label": label}


def _tagging_example(
    spec: TaskSpec, record: Record, index: dict[str, int], labels: Sequence[str]
) -> dict[str, Any]:
    column = spec.text_columns[0]
    tokens = _as_list(record, column)
    tags = _as_list(record, spec.label_column)
    if not tokens:
        raise DataError(f"{_where(record)}: empty text in column '{column}' (no tokens)")
    if len(tokens) != len(tags):
        raise DataError(
            f"{_where(record)}: {len(tokens)} tokens in column '{column}' but "
            f"{len(tags)} tags in column '{spec.label_column}'"
        )
    words = [str(token) for token in tokens]
    for i, word in enumerate(words):
        if not word.strip():
            raise DataError(
                f"{_where(record)}: empty token at position {i + 1} in column '{column}'"
            )
    ids = []
    for i, tag in enumerate(tags):
        key = label_key(tag)
        if key not in index:
            raise DataError(
                f"{_where(record)}: tag {key!r} at position {i + 1} is not one "
                f"of the task's labels ({_show(labels)})"
            )
        ids.append(index[key])
    return {"tokens": words, "tags": ids}


# --- span QA


def _answer_pairs(record: Record, column: str) -> list[tuple[Any, Any]]:
    """(text, start) pairs from ``{"text": [...], "answer_start": [...]}`` or a list of
    ``{"text", "answer_start" | "start"}``; a JSON string (a CSV cell) is parsed first."""
    value = _field(record, column)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(
                f"{_where(record)}: column '{column}' is not valid JSON answers"
            ) from None
    if isinstance(value, dict) and "text" in value:
        texts, starts = value.get("text"), value.get("answer_start", value.get("start"))
        if not isinstance(texts, list):
            texts, starts = [texts], [starts]
        if not isinstance(starts, list) or len(starts) != len(texts):
            raise DataError(
                f"{_where(record)}: column '{column}' needs as many "
                "'answer_start' values as answer texts"
            )
        return list(zip(texts, starts))
    if isinstance(value, list) and all(isinstance(a, dict) for a in value):
        return [(a.get("text"), a.get("answer_start", a.get("start"))) for a in value]
    raise DataError(
        f"{_where(record)}: column '{column}' must hold answers like "
        '{"text": [...], "answer_start": [...]}'
    )


def _locate(context: str, text: str, start: int) -> int | None:
    """``start`` if the answer is there, else the nearest place the text occurs."""
    if start >= 0 and context[start : start + len(text)] == text:
        return start
    found, position = [], context.find(text)
    while position != -1:
        found.append(position)
        position = context.find(text, position + 1)
    return min(found, key=lambda p: abs(p - start)) if found else None


def _answers(record: Record, column: str, context: str) -> list[dict[str, Any]]:
    answers = []
    for text, start in _answer_pairs(record, column):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{_where(record)}: empty answer text in column '{column}'")
        try:
            offset = int(start)
        except (TypeError, ValueError):
            raise DataError(
                f"{_where(record)}: answer start {start!r} in column '{column}' is not an integer"
            ) from None
        located = _locate(context, text, offset)
        if located is None:
            raise DataError(
                f"{_where(record)}: answer {text[:60]!r} (offset {offset}) is not in the context"
            )
        answers.append({"text": text, "start": located})
    return answers


def _qa_example(spec: TaskSpec, record: Record, split: str) -> dict[str, Any]:
    question = _text(record, spec.text_columns[0])
    context = _text(record, spec.text_columns[1])
    answers = _answers(record, spec.label_column, context)
    raw_id = record.get("id")
    qid = (
        str(raw_id)
        if not _is_missing(raw_id) and str(raw_id)
        else f"{split}-{record.get('_row', '?')}"
    )
    return {"id": qid, "question": question, "context": context, "answers": answers}


# ----------------------------------------------------------------------------- splits


def subsample(records: list[Record], limit: int | None, name: str) -> list[Record]:
    """At most ``limit`` records: a random subset seeded by the task name, in file order."""
    if limit is None or len(records) <= limit:
        return records
    keep = sorted(random.Random(_seed_for(name)).sample(range(len(records)), limit))
    return [records[i] for i in keep]


def to_examples(
    spec: TaskSpec,
    records: list[Record],
    split: str,
    labelled: bool = True,
    skipped: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Validated canonical examples of one split (subsampled to ``spec.max_examples``).

    Class labels and tags index ``spec.labels``; when it is None they are inferred from
    ``records`` (``load_task_examples`` infers them from train instead). With
    ``labelled=False`` (prediction inputs) only the text columns are read and validated.
    ``skipped``: when given, a record that fails validation is appended to it (file, row,
    split, error) and left out, instead of stopping with its error.
    """
    if not records:
        raise DataError(f"{source_label(spec, split)}: split '{split}' has no examples")
    if not labelled:
        return [_unlabelled_example(spec, record, split) for record in records]
    records = subsample(records, spec.max_examples(split), spec.name)
    if split == "train" and spec.train_fraction is not None:
        records = subsample(records, spec.fraction_size(len(records)), f"{spec.name}/fraction")
    labels = spec.labels if spec.labels is not None else infer_labels(spec, records)
    index = {label: i for i, label in enumerate(labels)}
    examples = []
    for record in records:
        try:
            if spec.type == TaskType.TOKEN_TAGGING:
                example = _tagging_example(spec, record, index, labels)
            elif spec.type == TaskType.SPAN_QA:
                example = _qa_example(spec, record, split)
            else:
                example = _sentence_example(spec, record, index, labels)
        except DataError as exc:
            if skipped is None:
                raise
            skipped.append(
                {
                    "file": record.get("_file", "<records>"),
                    "row": record.get("_row", 0),
                    "split": split,
                    "error": str(exc),
                }
            )
            continue
        example.update(_file=record.get("_file", "<records>"), _row=record.get("_row", 0))
        examples.append(example)
    if not examples:
        raise DataError(
            f"{source_label(spec, split)}: split '{split}' has no valid examples "
            f"({len(records)} rows, every one skipped as bad)"
        )
    return examples


def _unlabelled_example(spec: TaskSpec, record: Record, split: str) -> dict[str, Any]:
    """An example with its text fields only (label None, no tags, no answers)."""
    if spec.type == TaskType.TOKEN_TAGGING:
        column = spec.text_columns[0]
        words = [str(token) for token in _as_list(record, column)]
        if not words or not all(w.strip() for w in words):
            raise DataError(f"{_where(record)}: empty token list or token in column '{column}'")
        example: dict[str, Any] = {"tokens": words, "tags": None}
    elif spec.type == TaskType.SPAN_QA:
        raw_id = record.get("id")
        example = {
            "id": str(raw_id) if not _is_missing(raw_id) else f"{split}-{record.get('_row', '?')}",
            "question": _text(record, spec.text_columns[0]),
            "context": _text(record, spec.text_columns[1]),
            "answers": [],
        }
    else:
        example = {
            "text_a": _text(record, spec.text_columns[0]),
            "text_b": _text(record, spec.text_columns[1]) if spec.is_pair else None,
            "label": None,
        }
    example.update(_file=record.get("_file", "<records>"), _row=record.get("_row", 0))
    return example


def carve_dev(
    records: list[Record], fraction: float = 0.1, seed: int = DATA_SEED
) -> tuple[list[Record], list[Record]]:
    """Split records into (train, dev) deterministically; both keep file order."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    n = len(records)
    n_dev = min(n - 1, max(1, round(n * fraction))) if n >= 2 else 0
    order = list(range(n))
    random.Random(seed).shuffle(order)
    dev_ids = set(order[:n_dev])
    train = [r for i, r in enumerate(records) if i not in dev_ids]
    dev = [r for i, r in enumerate(records) if i in dev_ids]
    return train, dev


def load_task_examples(
    spec: TaskSpec,
    splits: Sequence[str] = SPLITS,
    skipped: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Read, validate and subsample a task's splits -> (examples by split, labels).

    Labels are ``spec.labels`` or, when None, inferred from train ([] for regression and
    span QA). A source without dev gets one carved from train (10%); a missing test split
    is left out of the result. With ``source.on_bad_rows: skip`` rows that fail validation
    are left out and appended to ``skipped`` (file, row, split, error).
    """
    skip_bad = spec.source.on_bad_rows == "skip"
    bad: list[dict[str, Any]] | None = ([] if skipped is None else skipped) if skip_bad else None
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown} (known: {', '.join(SPLITS)})")
    records: dict[str, list[Record] | None] = {s: None for s in SPLITS}
    for split in ("dev", "test"):
        if split in splits:
            records[split] = read_split(spec, split)
    infer = spec.labels is None and spec.type in _LABELLED
    if "train" in splits or infer or ("dev" in splits and records["dev"] is None):
        records["train"] = _read_train(spec)
    train = records["train"] or []
    labels = infer_labels(spec, train, skip_bad) if infer else list(spec.labels or [])
    if "dev" in splits and records["dev"] is None:
        records["train"], records["dev"] = carve_dev(train)
    resolved = dataclasses.replace(spec, labels=labels) if spec.type in _LABELLED else spec
    examples = {
        split: to_examples(resolved, records[split] or [], split, skipped=bad)
        for split in splits
        if records[split] is not None
    }
    return examples, labels


def _read_train(spec: TaskSpec) -> list[Record]:
    train = read_split(spec, "train")
    if train is None:
        raise DataError(
            f"task '{spec.name}': its source ({source_label(spec, 'train')}) has no train split"
        )
    if not train:
        raise DataError(f"{source_label(spec, 'train')}: split 'train' has no examples")
    return train
