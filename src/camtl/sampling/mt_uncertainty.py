"""MT-Uncertainty sampling (Algorithm 2 of the CA-MTL paper) for every task type.

Each step scores candidate training examples without gradients (a scorer the trainer
provides: normalised entropy H / H'_t per candidate, see camtl.training.uncertainty), keeps
the b most uncertain as one mixed-task batch and returns the others to their pools.

Scoring forms (docs/decisions.md):
  "authors" (default): U = (H/H') * mean_t(H/H') / max_t' mean_t'(H/H') -- favours the most
                        uncertain task; dividing by one constant alone would not change a
                        top-b ranking.
  "paper":             U = H / (H'_t * H_hat), H_hat = max_t mean_t(H) (eq. 3.4-3.5).

Every task keeps the H / H' of its last b scored candidates: its *prior*, the cheap
estimate of how uncertain the model is about the task now (a task not scored yet counts as
fully uncertain).

Exact mode (default): every trained example is scored at the step it is chosen. Algorithm 2
as written scores b candidates of every task (T x b a step: 3.4 uniform steps on the CPU
suite, bench/sampler_cost.py); ``candidate_factor: c`` scores c x b candidates instead,
spread over the tasks in proportion to their priors (at least one each), and keeps the top
b. ``candidate_factor: null`` is the paper's T x b.

Amortised mode (``mode: amortized``): a cache of ``pool_factor`` x T x b candidates. Each
step adds ``turnover`` x b new candidates (tasks in proportion to their priors), scores
``refresh_fraction`` x b entries (unscored ones first, taken in turn from each task, then
the oldest; an unscored entry borrows its task's prior), trains on the top b and evicts
the least uncertain entries back to their pools until the cache is at its size again. The
eviction is what lets task shares follow uncertainty: a cache that only ever trains on its
entries gives each task out what it took in.

No task starves (both modes), by two guarantees. A share floor: every task gets at least
``min_share`` of the uniform share b / T over the run (0.5 by default: half the batch
follows uncertainty freely, no task falls below half of what uniform sampling gives it; 0
turns it off). It is needed because uncertainties of different task kinds are not on one
scale: a tagging task's mean token entropy sits far below a 3-way classifier's, and
without the floor the offline suite's wnut16 got 128 of 38,400 examples
(docs/research/2026-sampling-balancing.md).
Calibrating each task's scores to its own scale was the alternative; it removes the very
difference between tasks that the sampler is meant to act on. A stretch bound: a task
without an example for ``max_unsampled_fraction`` of the run's steps (2% by default; 0
turns it off) gets one. Both put a task's most uncertain candidates in place of the least
uncertain picks of tasks above their floor. The longest stretch without an example is
reported per task in every run (BatchScheduler.longest_unsampled).

``proxies: {vader: rt_polarity}`` scores a task through a related classification task's
head instead of its own uncertainty, as the paper did for regression (its section 5.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from camtl.errors import ConfigError
from camtl.registry import check_options
from camtl.sampling.base import ScoringRequest, TaskSampler, register_sampler


@dataclass
class MTUncertaintyOptions:
    score_form: str = "authors"
    mode: str = "exact"
    # exact mode: candidates scored a step, x b, spread by the task priors (None: b per task)
    candidate_factor: float | None = 1.5
    pool_factor: int = 4
    refresh_fraction: float = 0.5
    turnover: float = 2.0
    max_unsampled_fraction: float = 0.02
    # every task's guaranteed share over the run, as a fraction of the uniform share b / T
    min_share: float = 0.5
    mc_samples: int = 4
    # The paper's regression work-around, kept for comparison: {task: proxy_task} scores a
    # task's candidates with the proxy's classification head (checked by the trainer).
    proxies: dict[str, str] = field(default_factory=dict)

    def validate(self, path: str, where: str) -> None:
        check_options(
            self,
            path,
            where,
            choices={"score_form": ("authors", "paper"), "mode": ("exact", "amortized")},
            positive_ints=("pool_factor", "mc_samples"),
            positive=("refresh_fraction",),
            fractions=("max_unsampled_fraction", "min_share"),
        )
        if self.candidate_factor is not None and not self.candidate_factor >= 1.0:
            raise ConfigError.at(
                where,
                f"key '{path}.candidate_factor': must be >= 1 (at least b candidates for a "
                "batch of b), or null for b candidates of every task",
            )
        if not self.turnover >= 1.0:
            raise ConfigError.at(where, f"key '{path}.turnover': must be >= 1")


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


def enforce_minimums(
    top: list[int], scores: np.ndarray, task_of: np.ndarray, required: list[int]
) -> list[int]:
    """``top`` (candidate positions, the batch) changed so that task t holds at least
    ``required[t]`` picks where it has candidates: its most uncertain unpicked candidates
    replace the least uncertain picks of tasks above their own minimum (and above one)."""
    top = list(top)
    counts = np.bincount(task_of[top], minlength=len(required))
    for task, need in enumerate(required):
        chosen = set(top)
        spare = sorted(
            (k for k in range(len(task_of)) if task_of[k] == task and k not in chosen),
            key=lambda k: -scores[k],
        )
        while counts[task] < need and spare:
            removable = [
                pos
                for pos, k in enumerate(top)
                if counts[task_of[k]] > max(required[task_of[k]], 1)
            ]
            if not removable:
                break
            pos = min(removable, key=lambda p: scores[top[p]])
            counts[task_of[top[pos]]] -= 1
            top[pos] = spare.pop(0)
            counts[task] += 1
    return top


def allocate(total: int, weights: np.ndarray) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainders), at least 1 each."""
    share = total * weights / weights.sum()
    counts = np.floor(share).astype(int)
    for k in np.argsort(-(share - counts), kind="stable")[: total - int(counts.sum())]:
        counts[k] += 1
    return np.maximum(counts, 1).tolist()


@register_sampler("mt_uncertainty")
class MTUncertaintySampler(TaskSampler):
    """Selects examples, not only task shares: the BatchScheduler delegates to ``select``."""

    Options = MTUncertaintyOptions
    selects_examples = True

    def __init__(self, task_sizes: list[int], total_steps: int, options: Any) -> None:
        super().__init__(task_sizes, total_steps, options)
        tasks = len(task_sizes)
        # amortised cache entries: [task, index, H/H' or None, H or None, step scored]
        self.cache: list[list[Any]] = []
        self.scored = 0  # candidates scored so far (the cost)
        self.recent: list[list[list[float]]] = [[] for _ in range(tasks)]  # [H/H', H]
        self.last_chosen = [-1] * tasks
        # share floor: examples each task is still owed (below one after every step)
        self.owed = [0.0] * tasks
        fraction = options.max_unsampled_fraction
        self.max_gap = max(1, math.floor(fraction * total_steps)) if fraction > 0 else None

    def scoring_request(self) -> ScoringRequest:
        return ScoringRequest(self.options.mc_samples, dict(self.options.proxies))

    def candidates_scored(self) -> int:
        return self.scored

    def probabilities(self, step: int) -> np.ndarray:
        return np.full(len(self.task_sizes), 1.0 / len(self.task_sizes))

    # -- task priors -------------------------------------------------------------------
    def prior(self, task: int) -> tuple[float, float]:
        """Mean H/H' and H of the task's last b scored candidates ((1, 1): none yet)."""
        if not self.recent[task]:
            return 1.0, 1.0
        norm, raw = np.asarray(self.recent[task]).mean(axis=0)
        return float(norm), float(raw)

    def _remember(self, candidates: list[tuple[int, int]], norm: Any, raw: Any, b: int) -> None:
        for (task, _), n, r in zip(candidates, norm, raw):
            self.recent[task].append([float(n), float(r)])
        for task in {t for t, _ in candidates}:
            self.recent[task] = self.recent[task][-b:]

    def prior_weights(self) -> np.ndarray:
        """How to spread new candidates over tasks: in proportion to their priors."""
        weights = np.array([self.prior(t)[0] for t in range(len(self.task_sizes))])
        return np.maximum(weights, 1e-3 * max(weights.max(), 1e-12))

    def _score(self, scheduler: Any, candidates: list[tuple[int, int]], b: int) -> Any:
        normalized, raw = scheduler.score(candidates)
        self.scored += len(candidates)
        self._remember(candidates, normalized, raw, b)
        return normalized, raw

    # -- selection ---------------------------------------------------------------------
    def select(self, scheduler: Any, step: int, batch_size: int) -> list[tuple[int, int]]:
        required = self.required(step, batch_size)
        if self.options.mode == "amortized":
            batch = self._select_amortized(scheduler, step, batch_size, required)
        else:
            batch = self._select_exact(scheduler, step, batch_size, required)
        floor = self.options.min_share * batch_size / len(self.task_sizes)
        for task in range(len(self.task_sizes)):
            got = sum(t == task for t, _ in batch)
            self.owed[task] = max(0.0, self.owed[task] + floor - got)
            if got:
                self.last_chosen[task] = step
        return sorted(batch)

    def required(self, step: int, batch_size: int) -> list[int]:
        """Examples each task must get at ``step``: what its share floor owes it (whole
        examples), and one if it has gone ``max_gap`` steps without."""
        floor = self.options.min_share * batch_size / len(self.task_sizes)
        need = [math.floor(owed + floor + 1e-9) for owed in self.owed]
        if self.max_gap is not None:
            for task, last in enumerate(self.last_chosen):
                if step - last - 1 >= self.max_gap:
                    need[task] = max(need[task], 1)
        return need

    def _select_exact(
        self, scheduler: Any, step: int, batch_size: int, required: list[int]
    ) -> list[tuple[int, int]]:
        tasks = len(self.task_sizes)
        if self.options.candidate_factor is None:
            counts = [batch_size] * tasks
        else:
            total = max(batch_size, round(self.options.candidate_factor * batch_size))
            counts = allocate(total, self.prior_weights())
        counts = [max(c, r) for c, r in zip(counts, required)]
        candidates = [(t, i) for t in range(tasks) for i in scheduler.take(t, counts[t])]
        normalized, raw = self._score(scheduler, candidates, batch_size)
        task_of = np.array([t for t, _ in candidates])
        scores = uncertainty_scores(normalized, raw, task_of, self.options.score_form)
        top = np.argsort(-scores, kind="stable")[:batch_size].tolist()
        top = enforce_minimums(top, scores, task_of, required)
        kept = set(top)
        scheduler.return_candidates([c for k, c in enumerate(candidates) if k not in kept])
        return [candidates[k] for k in top]

    # -- amortised ---------------------------------------------------------------------
    def _refill(self, scheduler: Any, count: int, weights: np.ndarray) -> None:
        counts = scheduler.rng.multinomial(count, weights / weights.sum())
        for task, n in enumerate(counts.tolist()):
            self.cache += [[task, i, None, None, -1] for i in scheduler.take(task, n)]

    def _rescore(self, scheduler: Any, step: int, count: int, b: int) -> None:
        """Score ``count`` entries: unscored ones in turn from each task, then the oldest."""
        unscored: dict[int, list[int]] = {}
        for k, entry in enumerate(self.cache):
            if entry[2] is None:
                unscored.setdefault(entry[0], []).append(k)
        chosen: list[int] = []
        queues = [unscored[t] for t in sorted(unscored)]
        while len(chosen) < count and any(queues):
            for queue in queues:
                if queue and len(chosen) < count:
                    chosen.append(queue.pop(0))
        if len(chosen) < count:
            scored = sorted(
                (k for k, e in enumerate(self.cache) if e[2] is not None),
                key=lambda k: self.cache[k][4],
            )
            chosen += scored[: count - len(chosen)]
        candidates = [(self.cache[k][0], self.cache[k][1]) for k in chosen]
        normalized, raw = self._score(scheduler, candidates, b)
        for k, n, r in zip(chosen, normalized, raw):
            self.cache[k][2:5] = [float(n), float(r), step]

    def cached_scores(self) -> np.ndarray:
        """U of every cache entry; an unscored entry takes its task's prior."""
        tasks = np.array([e[0] for e in self.cache])
        priors = [self.prior(t) for t in range(len(self.task_sizes))]
        norm = np.array([priors[e[0]][0] if e[2] is None else e[2] for e in self.cache])
        raw = np.array([priors[e[0]][1] if e[3] is None else e[3] for e in self.cache])
        return uncertainty_scores(norm, raw, tasks, self.options.score_form)

    def _select_amortized(
        self, scheduler: Any, step: int, batch_size: int, required: list[int]
    ) -> list[tuple[int, int]]:
        size = self.options.pool_factor * len(self.task_sizes) * batch_size
        uniform = np.ones(len(self.task_sizes))
        if not self.cache:  # first step: fill and score the whole cache once
            self._refill(scheduler, size + batch_size, uniform)
            self._rescore(scheduler, step, len(self.cache), batch_size)
        else:
            inflow = max(1, round(self.options.turnover * batch_size))
            self._refill(scheduler, inflow, self.prior_weights())
            refresh = max(1, round(self.options.refresh_fraction * batch_size))
            self._rescore(scheduler, step, min(refresh, len(self.cache)), batch_size)
        for task, need in enumerate(required):  # too few cached: more from its pool, unscored
            short = need - sum(e[0] == task for e in self.cache)
            if short > 0:
                self.cache += [[task, i, None, None, -1] for i in scheduler.take(task, short)]
        scores = self.cached_scores()
        task_of = np.array([e[0] for e in self.cache])
        top = np.argsort(-scores, kind="stable")[:batch_size].tolist()
        top = enforce_minimums(top, scores, task_of, required)
        batch = [(self.cache[k][0], self.cache[k][1]) for k in top]
        chosen = set(top)
        rest = [k for k in range(len(self.cache)) if k not in chosen]
        # evict the least uncertain back to their pools (they come again at the next pass)
        keep = sorted(sorted(rest, key=lambda k: -scores[k])[:size])
        self.cache = [self.cache[k] for k in keep]
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {
            "cache": self.cache,
            "scored": self.scored,
            "recent": self.recent,
            "last_chosen": self.last_chosen,
            "owed": self.owed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cache = [list(e) for e in state["cache"]]
        self.scored = state["scored"]
        self.recent = [[list(v) for v in r] for r in state["recent"]]
        self.last_chosen = list(state["last_chosen"])
        self.owed = [float(v) for v in state["owed"]]
