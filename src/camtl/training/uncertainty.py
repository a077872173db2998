"""Per-example uncertainty of candidate training examples, for MT-Uncertainty sampling.

Returns, per candidate, the entropy H and its normalised form H / H'_t in [0, 1]; each task
kind defines both (``TaskKind.uncertainty``: the entropy of the class distribution over
log C for classification, MC-dropout variance for regression, ...). Scoring runs in
inference mode with the encoder in eval mode. MC-dropout masks come from a generator
seeded by the run seed and the number of candidates scored so far, so every DDP rank (same
weights) scores alike and a resumed run scores as an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from camtl.data.collate import collate_features, label_keys
from camtl.data.prepare import TaskData
from camtl.errors import ConfigError
from camtl.precision import autocast
from camtl.tasks.kinds import ScoringContext, get_kind, kind_names

Scorer = Callable[[list[tuple[int, int]]], tuple[np.ndarray, np.ndarray]]


def resolve_proxies(
    tasks: list[TaskData], proxies: dict[str, str], key: str = "training.sampler.options.proxies"
) -> dict[int, int]:
    """{task index: proxy index}; the proxy must be another task whose kind can proxy."""
    index = {t.spec.name: i for i, t in enumerate(tasks)}
    resolved = {}
    for name, proxy in proxies.items():
        for role, value in (("task", name), ("proxy", proxy)):
            if value not in index:
                raise ConfigError(
                    f"key '{key}.{name}': {role} {value!r} is not a task of "
                    f"this run (tasks: {', '.join(index)})"
                )
        if proxy == name or not tasks[index[proxy]].spec.kind.can_proxy:
            capable = [k for k in kind_names() if get_kind(k).can_proxy]
            raise ConfigError(
                f"key '{key}.{name}': the proxy {proxy!r} must be another task of a kind "
                f"whose head can score other tasks ({', '.join(capable)})"
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
    shard: tuple[int, int] = (0, 1),
    reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Scorer:
    """A function scoring (task, feature index) candidates of the training pools.

    ``proxies`` maps a task to a classification task whose head scores its candidates (on
    the candidate's own task-conditioned hidden states): the paper's regression work-around.
    ``shard`` = (rank, world size) with ``reduce_sum`` (a sum over the ranks): under DDP
    each rank scores every world-size-th candidate and the sum puts every score on every
    rank, so all ranks still select the same batch at 1 / world size of the cost.
    """
    proxies = proxies or {}
    priors = [t.spec.kind.uncertainty_prior(t.examples["train"]) for t in tasks]
    no_labels = set(label_keys())

    rank, world = shard

    def score(candidates: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        if world == 1 or reduce_sum is None:
            return score_all(candidates)
        mine = list(range(rank, len(candidates), world))
        norm, raw = score_all([candidates[k] for k in mine])
        both = torch.zeros(2, len(candidates), dtype=torch.float64, device=device)
        both[0, mine] = torch.as_tensor(norm, dtype=torch.float64, device=device)
        both[1, mine] = torch.as_tensor(raw, dtype=torch.float64, device=device)
        both = reduce_sum(both).cpu()  # each position was filled by exactly one rank
        return both[0].numpy(), both[1].numpy()

    @torch.inference_mode()
    def score_all(candidates: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
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
                scorer = tasks[proxies.get(int(t), int(t))]
                kind = scorer.spec.kind
                inputs = {
                    f.name: batch[f.name][rows].to(device)
                    for f in kind.batch_fields
                    if f.name not in no_labels
                }
                n, r = kind.uncertainty(
                    model.heads[scorer.spec.name],
                    hidden[sel],
                    mask[sel],
                    inputs,
                    [feats[k] for k in rows],
                    len(scorer.labels),
                    ScoringContext(mc_samples, generator, priors[int(t)]),
                )
                norm[start + rows] = n
                raw[start + rows] = r
        if was_training:
            model.train()
        return norm, raw

    return score
