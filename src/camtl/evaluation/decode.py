"""Running the model over one task's features and turning outputs into predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from camtl.data.collate import collate_features
from camtl.evaluation.qa import postprocess_span_predictions
from camtl.precision import autocast
from camtl.tasks.spec import TaskSpec, TaskType


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
    outputs: list[np.ndarray | None] = [None] * len(features)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate_features([features[i] for i in idx], pad_token_id)
        with autocast(precision, device):
            out = model(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                token_type_ids=batch["token_type_ids"].to(device),
                task_ids=batch["task_ids"].to(device),
            )
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


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def decode(
    spec: TaskSpec,
    labels: list[str],
    examples: list[dict],
    features: list[dict],
    outputs: list[np.ndarray],
) -> list[Any]:
    """Predictions in the form compute_metrics expects (indices, values, tag names, text)."""
    if spec.type == TaskType.CLASSIFICATION:
        return [int(np.argmax(o)) for o in outputs]
    if spec.type == TaskType.REGRESSION:
        return [float(o) for o in outputs]
    if spec.type == TaskType.TOKEN_TAGGING:
        return [
            _word_tags(ex, feat, out, labels) for ex, feat, out in zip(examples, features, outputs)
        ]
    start = [o[:, 0] for o in outputs]
    end = [o[:, 1] for o in outputs]
    return postprocess_span_predictions(examples, features, start, end)


def _word_tags(example: dict, feature: dict, logits: np.ndarray, labels: list[str]) -> list[str]:
    """One tag per word from its first sub-token; words cut by truncation get 'O'."""
    fallback = "O" if "O" in labels else labels[0]
    tags = [fallback] * len(example["tokens"])
    seen: set[int] = set()
    for position, word in enumerate(feature["word_ids"]):
        if word is not None and word not in seen and position < len(logits):
            seen.add(word)
            tags[word] = labels[int(np.argmax(logits[position]))]
    return tags


def references(spec: TaskSpec, labels: list[str], examples: list[dict]) -> list[Any]:
    """Gold answers in the same form as ``decode``'s predictions."""
    if spec.type in (TaskType.CLASSIFICATION, TaskType.REGRESSION):
        return [ex["label"] for ex in examples]
    if spec.type == TaskType.TOKEN_TAGGING:
        return [[labels[t] for t in ex["tags"]] for ex in examples]
    return [[a["text"] for a in ex["answers"]] for ex in examples]


def readable(
    spec: TaskSpec, labels: list[str], example: dict, prediction: Any, output: np.ndarray | None
) -> dict[str, Any]:
    """A prediction as written by ``camtl predict``."""
    if spec.type == TaskType.CLASSIFICATION:
        probs = softmax(np.asarray(output, dtype=np.float64))
        return {
            "label": labels[prediction],
            "probabilities": {name: round(float(p), 6) for name, p in zip(labels, probs)},
        }
    if spec.type == TaskType.REGRESSION:
        return {"score": prediction}
    if spec.type == TaskType.TOKEN_TAGGING:
        return {"tokens": example["tokens"], "tags": prediction}
    start = example["context"].find(prediction) if prediction else -1
    return {"answer": prediction, "answer_start": start}
