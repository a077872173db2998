"""MT-Uncertainty sampling (Algorithm 2 of the CA-MTL paper) for every task type.

Each step draws b candidates from every task, scores them without gradients (a scorer the
trainer provides: normalised entropy H / H'_t per candidate, see camtl.training.uncertainty),
keeps the b most uncertain as one mixed-task batch and returns the others to their pools.

Scoring forms (NOTES.md):
  "authors" (default): U = (H/H') * mean_t(H/H') / max_t' mean_t'(H/H') -- favours the most
                        uncertain task; dividing by one constant alone would not change a
                        top-b ranking.
  "paper":             U = H / (H'_t * H_hat), H_hat = max_t mean_t(H) (eq. 3.4-3.5).
Amortised mode (``refresh_every`` k > 1): every k steps a pool of ``pool_factor`` x b
candidates per task is scored once; the steps in between take the top b of the cached,
still unused candidates, whose scores are then up to k - 1 steps old.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from camtl.errors import ConfigError
from camtl.sampling.base import TaskSampler, register_sampler


@dataclass
class MTUncertaintyOptions:
    score_form: str = "authors"
    refresh_every: int = 1
    pool_factor: int = 1
    mc_samples: int = 4

    def validate(self, path: str, where: str) -> None:
        prefix = f"{where}: " if where else ""
        if self.score_form not in ("authors", "paper"):
            raise ConfigError(f"{prefix}key '{path}.score_form': {self.score_form!r} is not "
                              "allowed (allowed: 'authors', 'paper')")
        for key in ("refresh_every", "pool_factor", "mc_samples"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}key '{path}.{key}': must be a positive integer")


def uncertainty_scores(normalized: np.ndarray, raw: np.ndarray, tasks: np.ndarray,
                       form: str) -> np.ndarray:
    """U per candidate from H/H' (``normalized``), H (``raw``) and each candidate's task."""
    present = np.unique(tasks)
    if form == "paper":
        h_hat = max(raw[tasks == t].mean() for t in present)
        return normalized / max(h_hat, 1e-12)
    means = {t: normalized[tasks == t].mean() for t in present}
    top = max(max(means.values()), 1e-12)
    return normalized * np.array([means[t] / top for t in tasks])


@register_sampler("mt_uncertainty")
class MTUncertaintySampler(TaskSampler):
    """Selects examples, not only task shares: the BatchScheduler delegates to ``select``."""

    Options = MTUncertaintyOptions
    selects_examples = True

    def __init__(self, task_sizes: list[int], total_steps: int, options: Any) -> None:
        super().__init__(task_sizes, total_steps, options)
        self.cache: list[tuple[int, int, float]] = []  # (task, index, U) of scored candidates
        self.last_refresh = -1
        self.scored = 0  # candidates scored so far (the cost)

    def probabilities(self, step: int) -> np.ndarray:
        return np.full(len(self.task_sizes), 1.0 / len(self.task_sizes))

    def select(self, scheduler: Any, step: int, batch_size: int) -> list[tuple[int, int]]:
        opts = self.options
        stale = (step - self.last_refresh >= opts.refresh_every or self.last_refresh < 0
                 or len(self.cache) < batch_size)
        if stale:
            scheduler.return_candidates([(t, i) for t, i, _ in self.cache])
            per_task = batch_size * (opts.pool_factor if opts.refresh_every > 1 else 1)
            candidates = [(t, i) for t in range(len(self.task_sizes))
                          for i in scheduler.take(t, per_task)]
            normalized, raw = scheduler.score(candidates)
            tasks = np.array([t for t, _ in candidates])
            scores = uncertainty_scores(normalized, raw, tasks, opts.score_form)
            self.cache = [(t, i, float(u)) for (t, i), u in zip(candidates, scores)]
            self.last_refresh = step
            self.scored += len(candidates)
        order = sorted(range(len(self.cache)), key=lambda k: -self.cache[k][2])
        chosen = set(order[:batch_size])
        batch = [(t, i) for k, (t, i, _) in enumerate(self.cache) if k in chosen]
        rest = [c for k, c in enumerate(self.cache) if k not in chosen]
        if opts.refresh_every > 1:
            self.cache = rest
        else:  # exact Algorithm 2: unused candidates go straight back to their pools
            scheduler.return_candidates([(t, i) for t, i, _ in rest])
            self.cache = []
        return sorted(batch)

    def state_dict(self) -> dict[str, Any]:
        return {"cache": self.cache, "last_refresh": self.last_refresh, "scored": self.scored}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cache = [tuple(c) for c in state["cache"]]  # type: ignore[misc]
        self.last_refresh = state["last_refresh"]
        self.scored = state["scored"]
