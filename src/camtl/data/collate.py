"""Features -> a padded batch of tensors; one batch may mix task types.

The Batch keys are fixed (docs/architecture.md); a label key that does not apply to a
feature's task type holds the ignore value (-100, or nan for regression).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from camtl.constants import IGNORE_INDEX

BATCH_KEYS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "task_ids",
    "cls_labels",
    "reg_labels",
    "tag_labels",
    "start_positions",
    "end_positions",
)


def collate_features(
    features: Sequence[dict[str, Any]], pad_token_id: int
) -> dict[str, torch.Tensor]:
    """Pad ``features`` to the longest one and stack them into the Batch tensors."""
    if not features:
        raise ValueError("collate_features: got an empty list of features")
    length = max(len(f["input_ids"]) for f in features)
    pad_token_id = 0 if pad_token_id is None else pad_token_id  # masked out either way
    columns: dict[str, list] = {key: [] for key in BATCH_KEYS}
    for feature in features:
        pad = length - len(feature["input_ids"])
        columns["input_ids"].append([*feature["input_ids"], *[pad_token_id] * pad])
        columns["attention_mask"].append([*feature["attention_mask"], *[0] * pad])
        columns["token_type_ids"].append([*feature["token_type_ids"], *[0] * pad])
        tags = feature.get("tag_labels")
        columns["tag_labels"].append(
            [IGNORE_INDEX] * length if tags is None else [*tags, *[IGNORE_INDEX] * pad]
        )
        columns["task_ids"].append(feature["task_id"])
        label = feature.get("label")
        regression = _is_float(label)
        columns["cls_labels"].append(IGNORE_INDEX if label is None or regression else label)
        columns["reg_labels"].append(float(label) if regression else math.nan)
        columns["start_positions"].append(_position(feature.get("start_position")))
        columns["end_positions"].append(_position(feature.get("end_position")))
    batch = {
        key: torch.tensor(values, dtype=torch.long)
        for key, values in columns.items()
        if key != "reg_labels"
    }
    batch["reg_labels"] = torch.tensor(columns["reg_labels"], dtype=torch.float)
    return {key: batch[key] for key in BATCH_KEYS}


def _is_float(label: Any) -> bool:
    """Regression labels are floats; classification labels are ints (see tokenize)."""
    return isinstance(label, (float, np.floating))


def _position(value: Any) -> int:
    return IGNORE_INDEX if value is None else int(value)


class Collator:
    """``collate_features`` bound to a pad token id, for ``DataLoader(collate_fn=...)``."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate_features(features, self.pad_token_id)

    def __repr__(self) -> str:
        return f"Collator(pad_token_id={self.pad_token_id})"
