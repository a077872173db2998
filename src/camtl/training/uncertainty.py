"""Per-example uncertainty of candidate training examples, for MT-Uncertainty sampling.

Returns, per candidate, the entropy H and its normalised form H / H'_t in [0, 1]:
  classification  entropy of the class distribution; H' = log C
  token tagging   mean entropy over the word-initial tokens; H' = log C
  span QA         mean of the start and end entropies over context tokens; H' = log(#context)
  regression      the Gaussian entropy 0.5 log(2 pi e s2) of the predictive variance s2 from
                  MC dropout in the head; normalised as min(1, s2 / var(train targets)), the
                  entropy gap to the prior exp(2 (H - H')) mapped into [0, 1]
Scoring runs in inference mode with the encoder in eval mode. MC-dropout masks come from a
generator seeded by the run seed and the number of candidates scored so far, so every DDP
rank (same weights) scores alike and a resumed run scores as an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from camtl.constants import IGNORE_INDEX
from camtl.data.collate import collate_features
from camtl.data.prepare import TaskData
from camtl.errors import ConfigError
from camtl.modeling.heads import pool
from camtl.precision import autocast
from camtl.tasks.spec import TaskType

Scorer = Callable[[list[tuple[int, int]]], tuple[np.ndarray, np.ndarray]]


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def _mc_dropout(
    head: Any, hidden: torch.Tensor, mask: torch.Tensor, samples: int, generator: torch.Generator
) -> torch.Tensor:
    """Predictions [samples, rows] of a pooled regression head with dropout masks drawn
    from ``generator`` (rank-identical), not from the global RNG."""
    p = head.dropout.p
    pooled = pool(hidden, mask, head.pooling).float()
    preds = []
    for _ in range(samples):
        keep = (torch.rand(pooled.shape, generator=generator) >= p).to(pooled)
        x = torch.tanh(head.dense(pooled * keep / (1 - p)))
        keep2 = (torch.rand(x.shape, generator=generator) >= p).to(x)
        preds.append(head.out(x * keep2 / (1 - p)).squeeze(-1))
    return torch.stack(preds)


def _task_entropy(
    task: TaskData,
    head: Any,
    hidden: torch.Tensor,
    mask: torch.Tensor,
    features: list[dict],
    samples: int,
    target_var: float,
    generator: torch.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    kind = task.spec.type
    if kind == TaskType.REGRESSION:
        var = _mc_dropout(head, hidden, mask, samples, generator).var(0).clamp(min=1e-12)
        raw = 0.5 * torch.log(2 * math.pi * math.e * var)
        return ((var / max(target_var, 1e-12)).clamp(max=1.0).cpu().numpy(), raw.cpu().numpy())
    logits = head(hidden, mask).float().cpu()
    n_classes = max(2, len(task.labels))
    if kind == TaskType.CLASSIFICATION:
        raw_t = _entropy(logits)
        return (raw_t / math.log(n_classes)).numpy(), raw_t.numpy()
    if kind == TaskType.TOKEN_TAGGING:
        per_token = _entropy(logits)
        raw = []
        for row, feature in enumerate(features):
            starts = [i for i, tag in enumerate(feature["tag_labels"]) if tag != IGNORE_INDEX]
            raw.append(float(per_token[row, starts].mean()) if starts else 0.0)
        raw_arr = np.asarray(raw)
        return raw_arr / math.log(n_classes), raw_arr
    norm, raw = [], []
    for row, feature in enumerate(features):  # span QA: over the context tokens only
        context = [i for i, off in enumerate(feature["offsets"]) if off is not None]
        if len(context) < 2:
            norm.append(0.0)
            raw.append(0.0)
            continue
        h = (_entropy(logits[row, context, 0]) + _entropy(logits[row, context, 1])) / 2
        raw.append(float(h))
        norm.append(float(h) / math.log(len(context)))
    return np.asarray(norm), np.asarray(raw)


def resolve_proxies(
    tasks: list[TaskData], proxies: dict[str, str], key: str = "training.sampler.options.proxies"
) -> dict[int, int]:
    """{task index: proxy index}; the proxy must be another classification task."""
    index = {t.spec.name: i for i, t in enumerate(tasks)}
    resolved = {}
    for name, proxy in proxies.items():
        for role, value in (("task", name), ("proxy", proxy)):
            if value not in index:
                raise ConfigError(
                    f"key '{key}.{name}': {role} {value!r} is not a task of "
                    f"this run (tasks: {', '.join(index)})"
                )
        if proxy == name or tasks[index[proxy]].spec.type != TaskType.CLASSIFICATION:
            raise ConfigError(
                f"key '{key}.{name}': the proxy {proxy!r} must be another classification task"
            )
        resolved[index[name]] = index[proxy]
    return resolved


def make_scorer(
    model: Any,
    tasks: list[TaskData],
    pad_token_id: int,
    device: torch.device | str,
    batch_size: int,
    mc_samples: int,
    seed: int,
    scored_so_far: Callable[[], int],
    proxies: dict[int, int] | None = None,
    precision: str = "no",
) -> Scorer:
    """A function scoring (task, feature index) candidates of the training pools.

    ``proxies`` maps a task to a classification task whose head scores its candidates (on
    the candidate's own task-conditioned hidden states): the paper's regression work-around.
    """
    proxies = proxies or {}
    target_var = {
        i: float(np.var([ex["label"] for ex in t.examples["train"]]))
        for i, t in enumerate(tasks)
        if t.spec.type == TaskType.REGRESSION
    }

    @torch.inference_mode()
    def score(candidates: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        was_training = model.training
        model.eval()
        generator = torch.Generator().manual_seed(seed * 1_000_003 + scored_so_far())
        norm = np.zeros(len(candidates))
        raw = np.zeros(len(candidates))
        for start in range(0, len(candidates), batch_size):
            chunk = candidates[start : start + batch_size]
            feats = [tasks[t].features["train"][i] for t, i in chunk]
            batch = collate_features(feats, pad_token_id)
            with autocast(precision, device):
                hidden = model.encode(
                    batch["input_ids"].to(device),
                    batch["attention_mask"].to(device),
                    batch["token_type_ids"].to(device),
                    batch["task_ids"].to(device),
                ).float()
            mask = batch["attention_mask"].to(device)
            task_ids = np.array([t for t, _ in chunk])
            for t in np.unique(task_ids):
                rows = np.flatnonzero(task_ids == t)
                sel = torch.as_tensor(rows, device=hidden.device)
                scorer_task = tasks[proxies.get(int(t), int(t))]
                n, r = _task_entropy(
                    scorer_task,
                    model.heads[scorer_task.spec.name],
                    hidden[sel],
                    mask[sel],
                    [feats[k] for k in rows],
                    mc_samples,
                    target_var.get(int(t), 1.0),
                    generator,
                )
                norm[start + rows] = n
                raw[start + rows] = r
        if was_training:
            model.train()
        return norm, raw

    return score
