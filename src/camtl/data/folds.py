"""Folds of a training split for cross-fitted teachers.

An example's fold is a hash of its content (its text and label, not the file or row it came
from), so the teacher that leaves fold k out and the student that later asks it about fold
k's examples agree on which examples those are, whatever subsampling, file order or machine
each ran with, and an example repeated in the data falls in one fold with its copies: the
teacher never saw a copy of what it is asked about. (scikit-learn's KFold splits by
position, which would tie the folds to one ordering of one file.)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from camtl.errors import DataError
from camtl.tasks.kinds.records import META_KEYS
from camtl.tasks.spec import CrossFit, TaskSpec


def example_fold(example: dict[str, Any], folds: int) -> int:
    """The fold (0 to folds - 1) of one canonical example."""
    content = {k: v for k, v in example.items() if k not in META_KEYS}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode("utf-8"))
    return int.from_bytes(digest.digest()[:8], "big") % folds


def leave_out_fold(spec: TaskSpec, examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``examples`` (a train split) without the fold ``spec.cross_fit`` holds out."""
    cross_fit: CrossFit | None = spec.cross_fit
    if cross_fit is None:
        return examples
    kept = [e for e in examples if example_fold(e, cross_fit.folds) != cross_fit.held_out]
    if not kept:
        raise DataError(
            f"task '{spec.name}': key 'cross_fit': every one of the {len(examples)} training "
            f"examples is in fold {cross_fit.held_out} of {cross_fit.folds}, which this run "
            "leaves out; nothing is left to train on (fewer folds, or more data)"
        )
    return kept
