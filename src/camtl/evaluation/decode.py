"""Running the model over one task's features and turning outputs into predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from camtl.data.collate import collate_features, label_keys
from camtl.precision import autocast
from camtl.tasks.spec import TaskSpec


@torch.inference_mode()
def run_model(
    model: Any,
    features: list[dict],
    task_name: str,
    batch_size: int,
    pad_token_id: int,
    device: torch.device | str = "cpu",
    precision: str = "no",
) -> list[np.ndarray]:
    """Per-feature logits (unpadded, fp32), in feature order; batches are length-sorted so
    that each pads little. ``precision``: the autocast setting (camtl.precision)."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    no_labels = set(label_keys())
    outputs: list[np.ndarray | None] = [None] * len(features)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate_features([features[i] for i in idx], pad_token_id)
        inputs = {k: v.to(device) for k, v in batch.items() if k not in no_labels}
        with autocast(precision, device):
            out = model(**inputs)
        logits = out.logits[task_name].float().cpu().numpy()
        rows = out.rows[task_name].cpu().numpy()
        for row, logit in zip(rows, logits):
            feature_index = idx[row]
            length = len(features[feature_index]["input_ids"])
            outputs[feature_index] = logit[:length] if logit.ndim >= 2 else logit
    if was_training:
        model.train()
    missing = [i for i, o in enumerate(outputs) if o is None]
    if missing:  # would misalign every later prediction with its example
        raise RuntimeError(f"no model output for features {missing[:5]} of task {task_name}")
    return outputs  # type: ignore[return-value]


def decode(
    spec: TaskSpec,
    labels: list[str],
    examples: list[dict],
    features: list[dict],
    outputs: list[np.ndarray],
) -> list[Any]:
    """Predictions in the form the task kind's metrics take."""
    return spec.kind.decode(spec, labels, examples, features, outputs)


def references(spec: TaskSpec, labels: list[str], examples: list[dict]) -> list[Any]:
    """Gold answers in the same form as ``decode``'s predictions."""
    return spec.kind.references(spec, labels, examples)


def readable(
    spec: TaskSpec, labels: list[str], example: dict, prediction: Any, output: np.ndarray | None
) -> dict[str, Any]:
    """A prediction as written by ``camtl predict``."""
    return spec.kind.readable(spec, labels, example, prediction, output)
