"""Task samplers decide each batch's task mix; a registry maps names to sampler classes.

A sampler only gives task probabilities per step (it may keep state of its own). The
BatchScheduler (camtl.sampling.schedule) draws the actual examples, so every sampler gets
seeding, exact resume and identical schedules on every DDP rank for free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from camtl.errors import ConfigError
from camtl.structured import from_dict

_SAMPLERS: dict[str, type[TaskSampler]] = {}


def register_sampler(name: str) -> Callable[[type[TaskSampler]], type[TaskSampler]]:
    def decorate(cls: type[TaskSampler]) -> type[TaskSampler]:
        _SAMPLERS[name] = cls
        cls.name = name
        return cls

    return decorate


def sampler_names() -> list[str]:
    return sorted(_SAMPLERS)


@dataclasses.dataclass
class NoOptions:
    """Samplers without options."""


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


def build_sampler(name: str, options: dict[str, Any], task_sizes: list[int],
                  total_steps: int, where: str = "") -> TaskSampler:
    """Look a sampler up by name and validate its options (errors name the key path)."""
    if name not in _SAMPLERS:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}key 'training.sampler.name': unknown sampler {name!r} "
                          f"(known: {', '.join(sampler_names())})")
    cls = _SAMPLERS[name]
    opts = from_dict(cls.Options, options, "training.sampler.options", where)
    return cls(task_sizes, total_steps, opts)
