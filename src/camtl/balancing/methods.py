"""The simple built-in balancers: equal, fixed, uncertainty weighting, group DRO (Lookahead-DRO,
FAMO and PCGrad have a file each)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from camtl.balancing.base import LossBalancer, check_task_keys, register_balancer
from camtl.errors import ConfigError
from camtl.registry import check_options


def _stack(task_losses: dict[str, torch.Tensor]) -> tuple[list[str], torch.Tensor]:
    names = list(task_losses)
    return names, torch.stack([task_losses[n] for n in names])


def weighted_mean(
    task_losses: dict[str, torch.Tensor], task_names: list[str], q: torch.Tensor
) -> torch.Tensor:
    """The q-weighted mean of the losses of the tasks present; q is in ``task_names``
    order and renormalised over those tasks (no gradient flows through q)."""
    index = {n: i for i, n in enumerate(task_names)}
    names, losses = _stack(task_losses)
    weights = q[[index[n] for n in names]].to(losses)
    return (weights * losses).sum() / weights.sum().clamp(min=1e-12)


@register_balancer("equal")
class EqualWeights(LossBalancer):
    """The mean over the tasks present of each task's mean loss (ERM over tasks)."""

    def combine(self, task_losses, context):
        return _stack(task_losses)[1].mean()


@dataclass
class FixedOptions:
    weights: dict[str, float] = field(default_factory=dict)

    def validate(self, path: str, where: str) -> None:
        for task, value in self.weights.items():
            if value < 0:
                prefix = f"{where}: " if where else ""
                raise ConfigError(f"{prefix}key '{path}.weights.{task}': must be >= 0")


@register_balancer("fixed")
class FixedWeights(LossBalancer):
    """User weights per task (missing tasks weigh 1), normalised over the tasks present."""

    Options = FixedOptions

    def __init__(self, task_names: list[str], options: Any) -> None:
        super().__init__(task_names, options)
        check_task_keys(options.weights, task_names, "weights")

    def combine(self, task_losses, context):
        names, losses = _stack(task_losses)
        w = torch.tensor(
            [self.options.weights.get(n, 1.0) for n in names],
            dtype=losses.dtype,
            device=losses.device,
        )
        return (w * losses).sum() / w.sum().clamp(min=1e-12)

    def weights(self) -> dict[str, float]:
        return {n: self.options.weights.get(n, 1.0) for n in self.task_names}


@register_balancer("uncertainty")
class UncertaintyWeighting(LossBalancer):
    """Kendall et al. 2018: L = sum_t exp(-s_t) L_t / 2 + s_t / 2, s_t = log sigma_t^2 learned."""

    def __init__(self, task_names: list[str], options: Any) -> None:
        super().__init__(task_names, options)
        self.log_vars = nn.Parameter(torch.zeros(len(task_names)))

    def combine(self, task_losses, context):
        index = {n: i for i, n in enumerate(self.task_names)}
        names, losses = _stack(task_losses)
        s = self.log_vars[[index[n] for n in names]]
        return (0.5 * torch.exp(-s) * losses + 0.5 * s).sum() / len(names)

    def weights(self) -> dict[str, float]:
        return {n: float(torch.exp(-v.detach())) for n, v in zip(self.task_names, self.log_vars)}


@dataclass
class GroupDROOptions:
    step_size: float = 0.01
    # Sagawa et al.'s raw losses by default; True: each over its reference loss, so a
    # task whose loss is small by nature (token tagging) is not starved of weight
    relative_losses: bool = False
    # the reference: mean of a task's first this many losses (q stays put until then)
    reference_updates: int = 20

    def validate(self, path: str, where: str) -> None:
        check_options(
            self, path, where, positive=("step_size",), positive_ints=("reference_updates",)
        )


class SimplexWeights(LossBalancer):
    """Task weights q on the simplex, kept across steps (group DRO, Lookahead-DRO)."""

    q: torch.Tensor  # a registered buffer
    initial: torch.Tensor  # a registered buffer
    reference_seen: torch.Tensor  # a registered buffer

    def __init__(self, task_names: list[str], options: Any) -> None:
        super().__init__(task_names, options)
        # a buffer: saved in checkpoints with the balancer's state_dict
        self.register_buffer(
            "q", torch.full((len(task_names),), 1.0 / len(task_names), dtype=torch.float64)
        )
        # each task's reference loss for ``relative_losses``: the mean of its first
        # ``reference_updates`` losses (one batch's loss is too noisy: a lucky first batch
        # of the regression task made it look stuck for a whole run,
        # docs/research/2026-sampling-balancing.md)
        self.register_buffer("initial", torch.zeros(len(task_names), dtype=torch.float64))
        self.register_buffer("reference_seen", torch.zeros(len(task_names), dtype=torch.long))

    def _relative(self, seen: list[int], losses: torch.Tensor) -> torch.Tensor:
        """The losses of the tasks in ``seen`` over each one's reference loss (updated with
        these losses while a task has fewer than ``reference_updates``)."""
        for t in seen:
            n = int(self.reference_seen[t])
            if n < self.options.reference_updates:
                loss = max(float(losses[t]), 1e-8)
                self.initial[t] = (float(self.initial[t]) * n + loss) / (n + 1)
                self.reference_seen[t] = n + 1
        return losses[seen] / self.initial[seen].to(losses)

    def reference_ready(self, seen: list[int]) -> bool:
        """Whether every task in ``seen`` has its full reference loss."""
        return all(int(self.reference_seen[t]) >= self.options.reference_updates for t in seen)

    def _weighted(self, task_losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return weighted_mean(task_losses, self.task_names, self.q)

    def weights(self) -> dict[str, float]:
        return {n: float(w) for n, w in zip(self.task_names, self.q)}


@register_balancer("group_dro")
class GroupDRO(SimplexWeights):
    """Online group DRO (Sagawa et al. 2020): q_t <- q_t exp(eta l_t), renormalised; the
    loss is the q-weighted mean over the tasks present."""

    Options = GroupDROOptions

    def combine(self, task_losses, context):
        if not context.update:
            return self._weighted(task_losses)
        seen, values = self.losses_over_ranks(task_losses, context)
        present = values[seen]
        if self.options.relative_losses:
            present = self._relative(seen, values)
            if not self.reference_ready(seen):
                return self._weighted(task_losses)
        update = torch.zeros_like(self.q)
        update[seen] = self.options.step_size * present.to(self.q)
        q = self.q * torch.exp(update)
        self.q.copy_(q / q.sum())
        return self._weighted(task_losses)
