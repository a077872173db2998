"""Task samplers decide each batch's task mix; a registry maps names to sampler classes.

A sampler only gives task probabilities per step (it may keep state of its own). The
BatchScheduler (camtl.sampling.schedule) draws the actual examples, so every sampler gets
seeding, exact resume and identical schedules on every DDP rank for free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from camtl.registry import NoOptions, Registry

SAMPLERS: Registry[TaskSampler] = Registry("sampler", "training.sampler")
register_sampler = SAMPLERS.register
sampler_names = SAMPLERS.names


@dataclass(frozen=True)
class ScoringRequest:
    """What a sampler that selects examples asks of the scorer the trainer builds for it
    (camtl.training.uncertainty.make_scorer): MC-dropout passes, and proxy tasks by name."""

    mc_samples: int
    proxies: dict[str, str] = field(default_factory=dict)


class TaskSampler:
    """Base class: ``probabilities(step)`` over tasks, in task order.

    A sampler with ``selects_examples`` picks the examples of each batch itself from scored
    candidates (``select``); it states what it needs scored in ``scoring_request`` and the
    BatchScheduler refuses to run it without a scorer.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    selects_examples: ClassVar[bool] = False

    def __init__(self, task_sizes: list[int], total_steps: int, options: Any) -> None:
        self.task_sizes = np.asarray(task_sizes, dtype=np.float64)
        self.total_steps = total_steps
        self.options = options

    def probabilities(self, step: int) -> np.ndarray:
        raise NotImplementedError

    def select(self, scheduler: Any, step: int, batch_size: int) -> list[tuple[int, int]]:
        """The batch's (task, example) pairs, for samplers that select examples."""
        raise NotImplementedError

    def scoring_request(self) -> ScoringRequest | None:
        """What the scorer must provide (None: this sampler scores nothing)."""
        return None

    def candidates_scored(self) -> int | None:
        """How many candidates were scored so far (None: this sampler scores nothing)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


def build_sampler(
    name: str, options: dict[str, Any], task_sizes: list[int], total_steps: int, where: str = ""
) -> TaskSampler:
    """Look a sampler up by name and validate its options (errors name the key path)."""
    cls, opts = SAMPLERS.lookup(name, options, where)
    return cls(task_sizes, total_steps, opts)
