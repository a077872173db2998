"""Task samplers decide each batch's task mix; a registry maps names to sampler classes.

A sampler only gives task probabilities per step (it may keep state of its own). The
BatchScheduler (camtl.sampling.schedule) draws the actual examples, so every sampler gets
seeding, exact resume and identical schedules on every DDP rank for free.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from camtl.registry import NoOptions, Registry

SAMPLERS: Registry[TaskSampler] = Registry("sampler", "training.sampler")
register_sampler = SAMPLERS.register
sampler_names = SAMPLERS.names


class TaskSampler:
    """Base class: ``probabilities(step)`` over tasks, in task order."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def __init__(self, task_sizes: list[int], total_steps: int, options: Any) -> None:
        self.task_sizes = np.asarray(task_sizes, dtype=np.float64)
        self.total_steps = total_steps
        self.options = options

    def probabilities(self, step: int) -> np.ndarray:
        raise NotImplementedError

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
