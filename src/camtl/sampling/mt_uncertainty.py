"""MT-Uncertainty sampling (Algorithm 2 of the CA-MTL paper) for every task type.

Each step draws b candidates from every task, scores them without gradients (a scorer the
trainer provides: normalised entropy H / H'_t per candidate, see camtl.training.uncertainty),
keeps the b most uncertain as one mixed-task batch and returns the others to their pools.

Scoring forms (docs/decisions.md):
  "authors" (default): U = (H/H') * mean_t(H/H') / max_t' mean_t'(H/H') -- favours the most
                        uncertain task; dividing by one constant alone would not change a
                        top-b ranking.
  "paper":             U = H / (H'_t * H_hat), H_hat = max_t mean_t(H) (eq. 3.4-3.5).
Amortised mode (``mode: amortized``): a cache of ``pool_factor`` x T x b candidates is
scored once; each step trains on the top b of the cache, refills it with b new candidates
(tasks drawn uniformly), and scores only ``refresh_fraction`` x b entries -- the unscored
ones first, then the oldest. Unscored entries borrow their task's mean uncertainty. The cost
per step falls from T x b scored candidates to refresh_fraction x b; the price is scores up
to a few steps old (bench/sampler_cost.py measures how much that changes the choice).
``proxies: {vader: rt_polarity}`` scores a task through a related classification task's
head instead of its own uncertainty, as the paper did for regression (its section 5.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from camtl.errors import ConfigError
from camtl.sampling.base import ScoringRequest, TaskSampler, register_sampler


@dataclass
class MTUncertaintyOptions:
    score_form: str = "authors"
    mode: str = "exact"
    pool_factor: int = 4
    refresh_fraction: float = 0.5
    mc_samples: int = 4
    # The paper's regression work-around, kept for comparison: {task: proxy_task} scores a
    # task's candidates with the proxy's classification head (checked by the trainer).
    proxies: dict[str, str] = field(default_factory=dict)

    def validate(self, path: str, where: str) -> None:
        prefix = f"{where}: " if where else ""
        for key, allowed in (
            ("score_form", ("authors", "paper")),
            ("mode", ("exact", "amortized")),
        ):
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"{prefix}key '{path}.{key}': {getattr(self, key)!r} is not "
                    f"allowed (allowed: {', '.join(map(repr, allowed))})"
                )
        for key in ("pool_factor", "mc_samples"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}key '{path}.{key}': must be a positive integer")
        if not self.refresh_fraction > 0.0:
            raise ConfigError(f"{prefix}key '{path}.refresh_fraction': must be > 0")


def uncertainty_scores(
    normalized: np.ndarray, raw: np.ndarray, tasks: np.ndarray, form: str
) -> np.ndarray:
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
        # amortised cache entries: [task, index, H/H' or None, H or None, step scored]
        self.cache: list[list[Any]] = []
        self.scored = 0  # candidates scored so far (the cost)

    def scoring_request(self) -> ScoringRequest:
        return ScoringRequest(self.options.mc_samples, dict(self.options.proxies))

    def candidates_scored(self) -> int:
        return self.scored

    def probabilities(self, step: int) -> np.ndarray:
        return np.full(len(self.task_sizes), 1.0 / len(self.task_sizes))

    def select(self, scheduler: Any, step: int, batch_size: int) -> list[tuple[int, int]]:
        if self.options.mode == "amortized":
            return self._select_amortized(scheduler, step, batch_size)
        candidates = [
            (t, i) for t in range(len(self.task_sizes)) for i in scheduler.take(t, batch_size)
        ]
        normalized, raw = scheduler.score(candidates)
        self.scored += len(candidates)
        tasks = np.array([t for t, _ in candidates])
        scores = uncertainty_scores(normalized, raw, tasks, self.options.score_form)
        top = set(np.argsort(-scores, kind="stable")[:batch_size].tolist())
        scheduler.return_candidates([c for k, c in enumerate(candidates) if k not in top])
        return sorted(c for k, c in enumerate(candidates) if k in top)

    # -- amortised ---------------------------------------------------------------------
    def _refill(self, scheduler: Any, count: int) -> None:
        counts = scheduler.rng.multinomial(count, self.probabilities(0))
        for task, n in enumerate(counts.tolist()):
            self.cache += [[task, i, None, None, -1] for i in scheduler.take(task, n)]

    def _rescore(self, scheduler: Any, step: int, count: int) -> None:
        order = sorted(
            range(len(self.cache)), key=lambda k: (self.cache[k][2] is not None, self.cache[k][4])
        )
        chosen = order[:count]
        normalized, raw = scheduler.score([(self.cache[k][0], self.cache[k][1]) for k in chosen])
        self.scored += len(chosen)
        for k, n, r in zip(chosen, normalized, raw):
            self.cache[k][2:5] = [float(n), float(r), step]

    def cached_scores(self) -> np.ndarray:
        """U of every cache entry; unscored entries take their task's mean H/H' and H."""
        tasks = np.array([e[0] for e in self.cache])
        norm = np.array([np.nan if e[2] is None else e[2] for e in self.cache])
        raw = np.array([np.nan if e[3] is None else e[3] for e in self.cache])
        for t in np.unique(tasks):
            rows = tasks == t
            known = rows & ~np.isnan(norm)
            norm[rows & np.isnan(norm)] = norm[known].mean() if known.any() else 1.0
            raw[rows & np.isnan(raw)] = raw[known].mean() if known.any() else 1.0
        return uncertainty_scores(norm, raw, tasks, self.options.score_form)

    def _select_amortized(
        self, scheduler: Any, step: int, batch_size: int
    ) -> list[tuple[int, int]]:
        target = self.options.pool_factor * len(self.task_sizes) * batch_size
        if not self.cache:  # first step: fill and score the whole cache once
            self._refill(scheduler, target)
            self._rescore(scheduler, step, len(self.cache))
        else:
            self._refill(scheduler, max(0, target - len(self.cache)))
            refresh = max(1, round(self.options.refresh_fraction * batch_size))
            self._rescore(scheduler, step, min(refresh, len(self.cache)))
        scores = self.cached_scores()
        top = set(np.argsort(-scores, kind="stable")[:batch_size].tolist())
        batch = sorted((e[0], e[1]) for k, e in enumerate(self.cache) if k in top)
        self.cache = [e for k, e in enumerate(self.cache) if k not in top]
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"cache": self.cache, "scored": self.scored}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cache = [list(e) for e in state["cache"]]
        self.scored = state["scored"]
