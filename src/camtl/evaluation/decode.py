"""Running the model over one task's features and turning outputs into predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from camtl.data.collate import collate_features, label_keys
from camtl.precision import autocast
from camtl.tasks.spec import TaskSpec


@torch.inference_mode()
def forward_features(
    model: Any,
    features: list[dict],
    pad_token_id: int,
    device: torch.device | str = "cpu",
    precision: str = "no",
) -> list[np.ndarray]:
    """One forward pass over ``features`` of any tasks (one mixed batch): per-feature
    outputs, unpadded and fp32, in the order given. The model must be in eval mode."""
    batch = collate_features(features, pad_token_id)
    no_labels = set(label_keys())
    inputs = {k: v.to(device) for k, v in batch.items() if k not in no_labels}
    with autocast(precision, device):
        out = model(**inputs)
    outputs: list[np.ndarray | None] = [None] * len(features)
    for name, logits in out.logits.items():
        rows = out.rows[name].cpu().numpy()
        for row, logit in zip(rows, logits.float().cpu().numpy()):
            length = len(features[row]["input_ids"])
            outputs[row] = logit[:length] if logit.ndim >= 2 else logit
    missing = [i for i, o in enumerate(outputs) if o is None]
    if missing:  # would misalign every later prediction with its example
        raise RuntimeError(f"no model output for features {missing[:5]}")
    return outputs  # type: ignore[return-value]


def run_model(
    model: Any,
    features: list[dict],
    task_name: str,
    batch_size: int,
    pad_token_id: int,
    device: torch.device | str = "cpu",
    precision: str = "no",
) -> list[np.ndarray]:
    """Per-feature logits (unpadded, fp32) of one task's features, in feature order;
    batches are length-sorted so that each pads little. ``precision``: the autocast setting
    (camtl.precision)."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    outputs: list[np.ndarray | None] = [None] * len(features)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        chunk = forward_features(model, [features[i] for i in idx], pad_token_id, device, precision)
        for i, output in zip(idx, chunk):
            outputs[i] = output
    if was_training:
        model.train()
    return outputs  # type: ignore[return-value]


def readable_predictions(
    spec: TaskSpec,
    labels: list[str],
    examples: list[dict],
    features: list[dict],
    outputs: list[np.ndarray],
) -> list[dict[str, Any]]:
    """One prediction per example as ``camtl predict`` writes it (and the server answers):
    the kind's decoding, then its readable form with the example's own output where a
    feature is a whole example."""
    kind = spec.kind
    predictions = kind.decode(spec, labels, examples, features, outputs)
    per_example = outputs if kind.one_feature_per_example else [None] * len(predictions)
    return [
        kind.readable(spec, labels, example, prediction, output)
        for example, prediction, output in zip(examples, predictions, per_example)
    ]
