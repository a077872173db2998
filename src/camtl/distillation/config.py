"""``training.distillation``: which teachers, and how the gold labels' weight anneals."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from camtl.errors import ConfigError


@dataclass
class DistillationConfig:
    """Each task's target mixes its gold labels (weight w) with its single-task teacher's
    outputs (1 - w), w annealed over training (teacher annealing, Clark et al. 2019).

    teachers: a folder holding one finished run per task, named by the task (what
    ``camtl baseline single-task`` writes), or a map task -> run folder; any finished camtl
    run that has the task can teach it. A task's folder of ``fold_<i>`` runs (``--folds``)
    holds cross-fitted teachers: each window is taught by the run that held it out.
    schedule: ``linear`` (w from ``start_gold_weight`` at step 0 to ``end_gold_weight`` at
    the last of ``anneal_steps``, then held) or ``constant`` (w = ``start_gold_weight``
    throughout).
    anneal_steps: how many steps the linear schedule takes; null: ``training.max_steps``.
    Shorter, a run that early stopping ends before max_steps still reaches the gold labels.
    temperature: softens the teacher's and the student's distributions (loss times T^2).
    """

    teachers: str | dict[str, str] = ""
    schedule: Literal["linear", "constant"] = "linear"
    start_gold_weight: float = 0.0
    end_gold_weight: float = 1.0
    anneal_steps: int | None = None
    temperature: float = 1.0
    tasks: list[str] = field(default_factory=list)  # [] = every task

    def validate(self, path: str, where: str) -> None:
        if not self.teachers:
            raise ConfigError.at(
                where, f"key '{path}.teachers': a folder of teacher runs, or task -> run folder"
            )
        if self.schedule not in ("linear", "constant"):
            raise ConfigError.at(
                where,
                f"key '{path}.schedule': {self.schedule!r} is not allowed "
                "(allowed: 'linear', 'constant')",
            )
        for key in ("start_gold_weight", "end_gold_weight"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ConfigError.at(where, f"key '{path}.{key}': must be in [0, 1]")
        if self.anneal_steps is not None and (
            isinstance(self.anneal_steps, bool)
            or not isinstance(self.anneal_steps, int)
            or self.anneal_steps < 1
        ):
            raise ConfigError.at(
                where, f"key '{path}.anneal_steps': a whole number of steps >= 1, or null"
            )
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError.at(where, f"key '{path}.temperature': must be a positive number")

    def gold_weight(self, step: int, max_steps: int) -> float:
        """The gold labels' weight at optimizer step ``step`` (0-based) of ``max_steps``."""
        if self.schedule == "constant":
            return self.start_gold_weight
        horizon = self.anneal_steps or max_steps
        fraction = min(1.0, step / max(1, horizon - 1))
        return self.start_gold_weight + (self.end_gold_weight - self.start_gold_weight) * fraction
