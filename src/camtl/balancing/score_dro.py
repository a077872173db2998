"""Group DRO on dev scores: the worst task is the one furthest from its target score.

Why a balancer that reads scores: on the offline suite every loss-based worst case (group
DRO, Lookahead-DRO) sent the weight to snli, rt_polarity and vader, whose relative losses
fall slowest, while the worst task by its score was wnut16, whose token loss is mostly
O tokens and falls fastest (docs/research/2026-sampling-balancing.md). A task's loss says
little about its metric across task kinds; its dev score says it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from camtl.balancing.base import LossBalancer, Need, check_task_keys, register_balancer
from camtl.balancing.methods import weighted_mean
from camtl.errors import ConfigError
from camtl.registry import check_options


@dataclass
class ScoreDROOptions:
    # eta of the exponentiated-gradient step, taken once per dev evaluation
    step_size: float = 1.0
    floor: float = 0.3  # every task keeps at least floor / T of the weight
    # each task's target score (for example its single-task score); a task not named
    # here has 100, the best score of the 0-100 metrics camtl reports. "teachers": each
    # distilled task's teacher's primary dev score (training.distillation's teachers)
    targets: dict[str, float] | Literal["teachers"] = field(default_factory=dict)

    def validate(self, path: str, where: str) -> None:
        check_options(self, path, where, positive=("step_size",), fractions=("floor",))
        for task, value in (self.targets if isinstance(self.targets, dict) else {}).items():
            if not value > 0:
                raise ConfigError.at(where, f"key '{path}.targets.{task}': must be > 0")


@register_balancer("score_dro")
class ScoreDRO(LossBalancer):
    """After each dev evaluation, with s_t the task's primary dev score and c_t its target,
    the gap g_t = max(0, 1 - s_t / c_t) and  a_t <- a_t + step_size * g_t;  the weights are
    q = floor / T + (1 - floor) softmax(a): the online group DRO update of Sagawa et al.
    with the gap to the target in place of the loss. Between evaluations the loss is the
    q-weighted mean of the task losses; before the first evaluation q is uniform.

    The weights follow dev scores, as early stopping does: report test scores for a run
    that uses it (camtl writes report_test.json when the tasks have a test split).
    """

    advantage: torch.Tensor  # a registered buffer

    Options = ScoreDROOptions
    needs: ClassVar[frozenset[Need]] = frozenset({Need.DEV_SCORES})

    def __init__(self, task_names: list[str], options: Any) -> None:
        super().__init__(task_names, options)
        # the targets in use: the config's, or the teachers' scores once the trainer gives them
        self.targets: dict[str, float] = {}
        if isinstance(options.targets, dict):
            check_task_keys(options.targets, task_names, "targets")
            self.targets = dict(options.targets)
        # the only state: q is a function of it (a buffer, so checkpoints carry it)
        self.register_buffer("advantage", torch.zeros(len(task_names), dtype=torch.float64))

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        # checkpoints written before q was derived also hold q and two unused buffers
        kept = {k: v for k, v in state_dict.items() if k not in ("q", "initial", "reference_seen")}
        return super().load_state_dict(kept, strict=strict, assign=assign)

    @property
    def q(self) -> torch.Tensor:
        floor = self.options.floor
        spread = torch.softmax(self.advantage, dim=0)
        return floor / len(self.task_names) + (1 - floor) * spread

    def gaps(self, scores: dict[str, float]) -> torch.Tensor:
        """Each task's relative distance below its target, in task order (0 at or above)."""
        return torch.tensor(
            [max(0.0, 1.0 - scores[n] / self.targets.get(n, 100.0)) for n in self.task_names],
            dtype=torch.float64,
        )

    def wants_teacher_scores(self) -> bool:
        return self.options.targets == "teachers"

    def use_teacher_scores(self, scores: dict[str, float]) -> None:
        self.targets = {n: s for n, s in scores.items() if n in self.task_names}

    def observe_dev_scores(self, scores: dict[str, float]) -> None:
        self.advantage += self.options.step_size * self.gaps(scores).to(self.advantage)

    def combine(self, task_losses, context):
        return weighted_mean(task_losses, self.task_names, self.q)

    def weights(self) -> dict[str, float]:
        return {n: float(w) for n, w in zip(self.task_names, self.q)}
