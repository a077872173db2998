"""FAMO (Liu et al., NeurIPS 2023, "FAMO: Fast Adaptive Multitask Optimization").

Task weights z = softmax(xi). The model descends sum_t z_t log(l_t) / c, c = sum_t z_t / l_t
(detached): each task's gradient is scaled by z_t / (c l_t), so every task's loss falls at a
rate the weights set. After a step, xi moves to even out the tasks' log-loss decreases: with
delta_t = log l_t(before) - log l_t(after), xi takes an Adam step along J_softmax(xi)^T
delta (a task that improved fast loses weight). Like the paper's implementations, the loss
"after" is the next step's loss of the task (on the next batch), so FAMO costs O(1) per
step: no per-task gradients and no extra forward pass.

The Adam state lives in buffers (not a torch optimizer) so that it is saved in checkpoints
with the balancer and a resumed run continues exactly; losses are averaged over DDP ranks
first, so every rank keeps the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from camtl.balancing.base import LossBalancer, register_balancer
from camtl.errors import ConfigError
from camtl.registry import check_options


@dataclass
class FAMOOptions:
    learning_rate: float = 0.025  # of the weight logits (the paper's default)
    weight_decay: float = 0.001  # pulls the logits back towards equal weights
    epsilon: float = 1e-8  # keeps log(loss) finite

    def validate(self, path: str, where: str) -> None:
        check_options(self, path, where, positive=("learning_rate", "epsilon"))
        if not self.weight_decay >= 0:
            raise ConfigError.at(where, f"key '{path}.weight_decay': must be >= 0")


@register_balancer("famo")
class FAMO(LossBalancer):
    logits: torch.Tensor  # a registered buffer
    previous: torch.Tensor  # a registered buffer
    adam_m: torch.Tensor  # a registered buffer
    adam_v: torch.Tensor  # a registered buffer
    adam_steps: torch.Tensor  # a registered buffer
    Options = FAMOOptions
    _BETAS = (0.9, 0.999)

    def __init__(self, task_names: list[str], options: Any) -> None:
        super().__init__(task_names, options)
        n = len(task_names)
        self.register_buffer("logits", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("previous", torch.zeros(n, dtype=torch.float64))  # 0: unseen
        self.register_buffer("adam_m", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("adam_v", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("adam_steps", torch.zeros((), dtype=torch.float64))

    def combine(self, task_losses, context):
        index = {n: i for i, n in enumerate(self.task_names)}
        if context.update:
            seen, mean = self.losses_over_ranks(task_losses, context)
            current = torch.full_like(mean, float("nan"))  # nan: no rank holds the task
            current[seen] = mean[seen]
            self._update(current)
        names = list(task_losses)
        losses = torch.stack([task_losses[n] for n in names]).float()
        z = torch.softmax(self.logits, 0)[[index[n] for n in names]].to(losses)
        z = z / z.sum()  # the tasks present
        shifted = losses + self.options.epsilon
        scale = z / shifted.detach()  # d/dl_t of z_t log(l_t): task t's gradient weight
        c = scale.sum()
        self.last_gradient_weights = {n: float(w) for n, w in zip(names, scale / c)}
        return (z * torch.log(shifted)).sum() / c

    def _update(self, current: torch.Tensor) -> None:
        seen = torch.isfinite(current) & (self.previous > 0)
        if bool(seen.any()):
            eps = self.options.epsilon
            delta = torch.zeros_like(current)
            delta[seen] = torch.log(self.previous[seen] + eps) - torch.log(current[seen] + eps)
            z = torch.softmax(self.logits, 0)
            grad = z * (delta - (z * delta).sum())  # J_softmax^T delta
            self._adam(grad)
        known = torch.isfinite(current)
        self.previous[known] = current[known]

    def _adam(self, grad: torch.Tensor) -> None:
        opts = self.options
        beta1, beta2 = self._BETAS
        self.adam_steps += 1
        step = float(self.adam_steps)
        self.adam_m.mul_(beta1).add_((1 - beta1) * grad)
        self.adam_v.mul_(beta2).add_((1 - beta2) * grad * grad)
        m_hat = self.adam_m / (1 - beta1**step)
        v_hat = self.adam_v / (1 - beta2**step)
        self.logits.mul_(1 - opts.learning_rate * opts.weight_decay)  # decoupled, as AdamW
        self.logits.sub_(opts.learning_rate * m_hat / (v_hat.sqrt() + 1e-8))

    def weights(self) -> dict[str, float]:
        z = torch.softmax(self.logits, 0)
        return {n: float(w) for n, w in zip(self.task_names, z)}

    def gradient_weights(self) -> dict[str, float] | None:
        """z_t / l_t normalised over the tasks of the last batch: a task whose loss nears 0
        takes nearly all of the gradient, whatever z is
        (docs/research/2026-sampling-balancing.md)."""
        return getattr(self, "last_gradient_weights", None)
