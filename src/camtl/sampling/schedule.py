"""BatchScheduler: turns a sampler's task probabilities into batches of example indices.

Each task keeps a shuffled pool of its training features; a pass over a pool ends with a
reshuffle. All randomness comes from one seeded numpy Generator whose state is saved, so a
resumed run draws exactly the batches an uninterrupted one would, and every DDP rank (same
seed) computes the same global batch and takes its own slice of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from camtl.sampling.base import TaskSampler

MODES = ("mixed", "single_task")
# candidates (task, index) -> (H / H', H): what MT-Uncertainty ranks them by
Scorer = Callable[[list[tuple[int, int]]], tuple[np.ndarray, np.ndarray]]


class BatchScheduler:
    def __init__(
        self,
        sampler: TaskSampler,
        pool_sizes: list[int],
        batch_size: int,
        mode: str = "mixed",
        seed: int = 12,
        scorer: Scorer | None = None,
    ) -> None:
        """``scorer`` maps candidates to (H / H', H) arrays; required by samplers that select
        examples (MT-Uncertainty), unused by the others."""
        if mode not in MODES:
            raise ValueError(f"batch mode must be one of {MODES}, got {mode!r}")
        if min(pool_sizes) < 1:
            raise ValueError("every task needs at least one training example")
        if mode == "single_task" and sampler.selects_examples:
            raise ValueError(
                f"sampler {sampler.name!r} picks examples across tasks; it cannot build "
                "single-task batches"
            )
        self.sampler = sampler
        self.pool_sizes = list(pool_sizes)
        self.batch_size = batch_size
        self.mode = mode
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.orders = [self.rng.permutation(n) for n in pool_sizes]
        self.cursors = [0] * len(pool_sizes)
        self.passes = [0] * len(pool_sizes)
        self.drawn = [0] * len(pool_sizes)  # examples trained on, per task
        self.returned: list[list[int]] = [[] for _ in pool_sizes]  # unused candidates
        self.seen = [np.zeros(n, dtype=bool) for n in pool_sizes]  # ever trained on
        # starvation: the last step each task had an example, and its longest stretch
        # of consecutive steps without one so far
        self.last_step = [-1] * len(pool_sizes)
        self.longest_gap = [0] * len(pool_sizes)
        if sampler.selects_examples and scorer is None:
            raise ValueError(f"sampler {sampler.name!r} scores candidates: pass a scorer")
        self.scorer = scorer

    def task_counts(self, step: int) -> np.ndarray:
        """How many examples of each task the next global batch holds."""
        probs = self.sampler.probabilities(step)
        if self.mode == "single_task":
            counts = np.zeros(len(probs), dtype=np.int64)
            counts[self.rng.choice(len(probs), p=probs)] = self.batch_size
            return counts
        return self.rng.multinomial(self.batch_size, probs)

    def take(self, task: int, count: int) -> list[int]:
        """The next ``count`` indices of a task's pool (returned candidates first)."""
        taken = self.returned[task][:count]
        self.returned[task] = self.returned[task][count:]
        while len(taken) < count:
            if self.cursors[task] >= self.pool_sizes[task]:
                self.orders[task] = self.rng.permutation(self.pool_sizes[task])
                self.cursors[task] = 0
                self.passes[task] += 1
            start = self.cursors[task]
            stop = min(start + count - len(taken), self.pool_sizes[task])
            taken.extend(int(i) for i in self.orders[task][start:stop])
            self.cursors[task] = stop
        return taken

    def return_candidates(self, candidates: list[tuple[int, int]]) -> None:
        """Put drawn but unused examples back; they are drawn again first."""
        for task, index in candidates:
            self.returned[task].append(index)

    def score(self, candidates: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        if self.scorer is None:
            raise RuntimeError("this sampler scores candidates, but no scorer was passed")
        return self.scorer(candidates)

    def next_batch(self, step: int) -> list[tuple[int, int]]:
        """The global batch for ``step``: (task index, feature index) pairs, task-grouped."""
        if self.sampler.selects_examples:
            batch = self.sampler.select(self, step, self.batch_size)  # type: ignore[attr-defined]
        else:
            batch = []
            for task, count in enumerate(self.task_counts(step).tolist()):
                if count:
                    batch.extend((task, i) for i in self.take(task, count))
        for task, index in batch:
            self.drawn[task] += 1
            self.seen[task][index] = True
        for task in {t for t, _ in batch}:
            self.longest_gap[task] = max(self.longest_gap[task], step - self.last_step[task] - 1)
            self.last_step[task] = step
        return batch

    def longest_unsampled(self, steps_run: int) -> list[int]:
        """Per task, the longest run of consecutive steps (of the first ``steps_run``)
        whose batches held none of its examples, the stretch still open included."""
        return [
            max(gap, steps_run - last - 1) for gap, last in zip(self.longest_gap, self.last_step)
        ]

    def used_fraction(self) -> dict[int, float]:
        """Share of each task's training examples trained on at least once."""
        return {t: float(s.mean()) for t, s in enumerate(self.seen)}

    @staticmethod
    def shard(batch: list[tuple[int, int]], rank: int, world_size: int) -> list[tuple[int, int]]:
        """This rank's slice of a global batch (every rank sees the same global batch)."""
        return batch[rank::world_size]

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "orders": [o.tolist() for o in self.orders],
            "cursors": list(self.cursors),
            "passes": list(self.passes),
            "drawn": list(self.drawn),
            "returned": [list(r) for r in self.returned],
            "seen": [np.flatnonzero(s).tolist() for s in self.seen],
            "last_step": list(self.last_step),
            "longest_gap": list(self.longest_gap),
            "sampler": self.sampler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.orders = [np.asarray(o, dtype=np.int64) for o in state["orders"]]
        self.cursors = list(state["cursors"])
        self.passes = list(state["passes"])
        self.drawn = list(state["drawn"])
        self.returned = [list(r) for r in state["returned"]]
        self.seen = [np.zeros(n, dtype=bool) for n in self.pool_sizes]
        for mask, indices in zip(self.seen, state["seen"]):
            mask[np.asarray(indices, dtype=np.int64)] = True
        self.last_step = list(state["last_step"])
        self.longest_gap = list(state["longest_gap"])
        self.sampler.load_state_dict(state["sampler"])
