"""Folds of a training split for cross-fitted teachers.

An example's fold is a hash of its text (the kind's ``fold_fields``: not its labels, id,
file or row; a kind without them cannot be cross-fitted), so the teacher that leaves fold k
out and the student that later asks it about fold k's examples agree on which examples
those are, whatever subsampling, file order or machine each ran with; and a text repeated
in the data, under any label, falls in one fold with its copies (for span QA every question
on one passage): the teacher never saw the text it is asked about. (scikit-learn's KFold
splits by position, which would tie the folds to one ordering of one file, and would split
copies.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camtl.errors import DataError
from camtl.fileio import atomic_write_text
from camtl.runfiles import CROSS_FIT_FILE
from camtl.tasks.spec import CrossFit, TaskSpec

if TYPE_CHECKING:
    from camtl.data.prepare import TaskData
    from camtl.tasks.kinds import TaskKind


FOLD_RUNS = "fold_*"  # the run folders of a task's cross-fitted runs: fold_0 ... fold_<k-1>


def fold_run_name(held_out: int) -> str:
    return f"fold_{held_out}"


# how an example's digest is made (its fields, their JSON, sha256): a cross-fitted run records
# it, and a student whose camtl makes digests another way refuses the run
SCHEME = 1


def example_digest(kind: TaskKind, example: dict[str, Any]) -> str:
    """A hex digest of what decides the example's fold: the kind's ``fold_fields``."""
    fields = kind.fold_fields or ()
    content = {k: v for k, v in example.items() if k in fields}
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def example_fold(kind: TaskKind, example: dict[str, Any], folds: int) -> int:
    """The fold (0 to folds - 1) of one canonical example of ``kind``."""
    return digest_fold(example_digest(kind, example), folds)


def digest_fold(digest: str, folds: int) -> int:
    """The fold of the example of ``digest`` (``example_digest``)."""
    return int(digest, 16) % folds


def leave_out_fold(spec: TaskSpec, examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``examples`` (a train split) without the fold ``spec.cross_fit`` holds out."""
    cross_fit: CrossFit | None = spec.cross_fit
    if cross_fit is None:
        return examples
    kind = spec.kind
    kept = [e for e in examples if example_fold(kind, e, cross_fit.folds) != cross_fit.held_out]
    if len(kept) == len(examples):  # a teacher of its held-out fold that trained on all of it
        raise DataError(
            f"task '{spec.name}': key 'cross_fit': fold {cross_fit.held_out} of "
            f"{cross_fit.folds} holds none of the {len(examples)} training examples, so this "
            "run would teach nothing it did not train on (fewer folds)"
        )
    if not kept:
        raise DataError(
            f"task '{spec.name}': key 'cross_fit': every one of the {len(examples)} training "
            f"examples is in fold {cross_fit.held_out} of {cross_fit.folds}, which this run "
            "leaves out; nothing is left to train on (fewer folds, or more data)"
        )
    return kept


def write_trained_on(run_dir: Path, tasks: list[TaskData]) -> None:
    """A cross-fitted run records how it folded train and the digests of the examples it
    trains on: a student refuses a run folded another way, and warns when the run trained
    on little of its data (camtl.distillation.teachers)."""
    record = {
        task.spec.name: {
            "scheme": SCHEME,
            "fold_fields": list(task.spec.kind.fold_fields or ()),
            "folds": task.spec.cross_fit.folds,
            "held_out": task.spec.cross_fit.held_out,
            "trained_on": sorted(
                {example_digest(task.spec.kind, e) for e in task.examples["train"]}
            ),
        }
        for task in tasks
        if task.spec.cross_fit is not None and "train" in task.examples
    }
    if record:
        atomic_write_text(run_dir / CROSS_FIT_FILE, json.dumps(record))
