"""Features -> a padded batch of tensors; one batch may mix task kinds.

A batch holds the model inputs (``INPUT_KEYS``) and every registered kind's batch fields
(camtl.tasks.kinds.BatchField), so that its keys never depend on which tasks it mixes. A
field a feature does not carry (another kind's) holds the field's fill value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from camtl.tasks.kinds import BatchField, all_batch_fields

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "task_ids")


def batch_keys() -> tuple[str, ...]:
    """Every key of a collated batch, in order."""
    return INPUT_KEYS + tuple(f.name for f in all_batch_fields())


def label_keys() -> tuple[str, ...]:
    """The batch keys only a loss reads (left out when the model runs for predictions)."""
    return tuple(f.name for f in all_batch_fields() if f.role == "label")


def collate_features(
    features: Sequence[dict[str, Any]], pad_token_id: int
) -> dict[str, torch.Tensor]:
    """Pad ``features`` to the longest one and stack them into the batch tensors."""
    if not features:
        raise ValueError("collate_features: got an empty list of features")
    length = max(len(f["input_ids"]) for f in features)
    pad_token_id = 0 if pad_token_id is None else pad_token_id  # masked out either way
    columns: dict[str, list] = {key: [] for key in INPUT_KEYS}
    for feature in features:
        pad = length - len(feature["input_ids"])
        columns["input_ids"].append([*feature["input_ids"], *[pad_token_id] * pad])
        columns["attention_mask"].append([*feature["attention_mask"], *[0] * pad])
        columns["token_type_ids"].append([*feature["token_type_ids"], *[0] * pad])
        columns["task_ids"].append(feature["task_id"])
    batch = {key: torch.tensor(values, dtype=torch.long) for key, values in columns.items()}
    for batch_field in all_batch_fields():
        batch[batch_field.name] = _field_tensor(batch_field, features, length)
    return batch


def _field_tensor(
    batch_field: BatchField, features: Sequence[dict[str, Any]], length: int
) -> torch.Tensor:
    values = [feature.get(batch_field.name) for feature in features]
    fill = batch_field.fill
    if batch_field.layout == "scalar":
        rows: list = [fill if v is None else v for v in values]
    else:
        width = (
            length
            if batch_field.layout == "tokens"
            else max((len(v) for v in values if v is not None), default=0)
        )
        rows = [[fill] * width if v is None else [*v, *[fill] * (width - len(v))] for v in values]
    return torch.tensor(rows, dtype=batch_field.dtype)


class Collator:
    """``collate_features`` bound to a pad token id, for ``DataLoader(collate_fn=...)``."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate_features(features, self.pad_token_id)

    def __repr__(self) -> str:
        return f"Collator(pad_token_id={self.pad_token_id})"
