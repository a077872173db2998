"""Records -> validated canonical examples; label inference, subsampling and dev carving.

Each task kind (camtl.tasks.kinds) turns one record into its example; this module does
what is common to all kinds. Every problem with a record is a one-line DataError naming
its file and row.
"""

from __future__ import annotations

import dataclasses
import random
import zlib
from collections.abc import Sequence
from typing import Any

from camtl.constants import DATA_SEED, SPLITS
from camtl.data.folds import leave_out_fold
from camtl.data.sources import read_split, source_label
from camtl.errors import DataError
from camtl.tasks.kinds.records import META_KEYS, Record, label_key, sort_labels
from camtl.tasks.spec import TaskSpec, template_fields

__all__ = ["carve_dev", "infer_labels", "label_key", "load_task_examples", "to_examples"]


# ----------------------------------------------------------------------------- labels


def _seed_for(name: str) -> int:
    return DATA_SEED + zlib.crc32(name.encode("utf-8"))


def infer_labels(spec: TaskSpec, records: list[Record], skip_bad: bool = False) -> list[str]:
    """Sorted distinct label names the records use ([] for kinds without labels).

    ``skip_bad``: a record without a usable label is passed over (``to_examples`` then
    skips and reports it) instead of stopping the run."""
    kind = spec.kind
    seen: set[str] = set()
    for record in records:
        try:
            seen.update(kind.record_labels(spec, record))
        except DataError:
            if not skip_bad:
                raise
    return sort_labels(seen)


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
        return _unlabelled_examples(spec, records, split, skipped)
    records = derive_columns(spec, records)
    kind = spec.kind
    records = subsample(records, spec.max_examples(split), spec.name)
    if split == "train" and spec.train_fraction is not None:
        records = subsample(records, spec.fraction_size(len(records)), f"{spec.name}/fraction")
    labels = spec.labels if spec.labels is not None else infer_labels(spec, records)
    index = {label: i for i, label in enumerate(labels)}
    examples = []
    for record in records:
        try:
            example = kind.example(spec, record, split, index, labels)
        except DataError as exc:
            if skipped is None:
                raise
            skipped.append(_skip_entry(record, split, exc))
            continue
        examples.append(_with_origin(example, record))
    if not examples:
        raise DataError(
            f"{source_label(spec, split)}: split '{split}' has no valid examples "
            f"({len(records)} rows, every one skipped as bad)"
        )
    return examples


def _unlabelled_examples(
    spec: TaskSpec, records: list[Record], split: str, skipped: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Prediction inputs, one record at a time so that a bad one can be skipped alone."""
    examples = []
    for record in records:
        try:
            derived = derive_columns(spec, [record])[0]
            example = spec.kind.unlabelled_example(spec, derived, split)
            examples.append(_with_origin(example, derived))
        except DataError as exc:
            if skipped is None:
                raise
            skipped.append(_skip_entry(record, split, exc))
    return examples


def _skip_entry(record: Record, split: str, exc: DataError) -> dict[str, Any]:
    return {
        "file": record.get("_file", "<records>"),
        "row": record.get("_row", 0),
        "split": split,
        "error": str(exc),
    }


def derive_columns(spec: TaskSpec, records: list[Record]) -> list[Record]:
    """Records with ``spec.derived_columns`` filled from their fields (a missing field is a
    DataError naming file, row and the template's column)."""
    if not spec.derived_columns:
        return records
    plans = [(name, t, template_fields(t)) for name, t in spec.derived_columns.items()]
    out = []
    for record in records:
        record = dict(record)
        for name, template, fields in plans:
            missing = [f for f in fields if f not in record]
            if missing:
                present = ", ".join(k for k in record if k not in META_KEYS)
                raise DataError(
                    f"{record.get('_file', '<records>')}, row {record.get('_row', '?')}: "
                    f"derived column '{name}' reads column '{missing[0]}', which is missing "
                    f"(columns present: {present})"
                )
            values = {f: "" if record[f] is None else record[f] for f in fields}
            record[name] = template.format_map(values)
        out.append(record)
    return out


def _with_origin(example: dict[str, Any], record: Record) -> dict[str, Any]:
    """The example with the file and row it came from (for error messages and predict)."""
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
    labels: list[str] | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Read, validate and subsample a task's splits -> (examples by split, labels).

    Labels are ``labels`` (pinned: a saved model's), else ``spec.labels``, else inferred
    from train ([] for regression and span QA); ``spec`` itself is never changed. A source
    without dev gets one carved from train (10%); a missing test split is left out of the
    result. With ``cross_fit`` train leaves out its held-out fold (camtl.data.folds). With
    ``source.on_bad_rows: skip`` rows that fail validation are left out and
    appended to ``skipped`` (file, row, split, error).
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
    has_labels = spec.kind.has_labels
    given = spec.labels if labels is None else labels
    infer = given is None and has_labels
    if "train" in splits or infer or ("dev" in splits and records["dev"] is None):
        records["train"] = derive_columns(spec, _read_train(spec))  # a derived label column
    train = records["train"] or []
    labels = infer_labels(spec, train, skip_bad) if infer else list(given or [])
    if "dev" in splits and records["dev"] is None:
        if len(train) < 2:
            raise DataError(
                f"{source_label(spec, 'train')}: {len(train)} row in train, too few to carve a "
                "dev split from (10%); add rows or give a dev file"
            )
        records["train"], records["dev"] = carve_dev(train)
    resolved = dataclasses.replace(spec, labels=labels) if has_labels else spec
    examples = {
        split: to_examples(resolved, records[split] or [], split, skipped=bad)
        for split in splits
        if records[split] is not None
    }
    if "train" in examples:  # a cross-fitted teacher trains without its held-out fold
        examples["train"] = leave_out_fold(spec, examples["train"])
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
