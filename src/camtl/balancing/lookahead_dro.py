"""Lookahead-DRO (Michel, Ruder and Yogatama), as we read its abstract: the only part of the
paper available to us. docs/training.md gives our method and the failure cases it answers;
experiments/dro_synthetic.py is the setting its defaults were chosen on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from camtl.balancing.base import BalanceContext, Need, register_balancer
from camtl.balancing.methods import SimplexWeights
from camtl.errors import ConfigError
from camtl.registry import check_options


@dataclass
class LookaheadOptions:
    every: int = 1
    # of the soft maximum over tasks, in the units of the (relative) losses
    temperature: float = 0.15
    # eta: the largest predicted one-step change of a task's loss is horizon x temperature
    horizon: float = 1.0
    # "unbiased": G_ts from task gradients of two different batches (this update's and
    # the last); "same_batch": from this batch alone (noise inflates G_tt, see the docstring)
    gram: str = "unbiased"
    smoothing: float = 0.95  # moving averages of each task's loss and of G
    floor: float = 0.3  # every task keeps at least floor / T of the weight
    iterations: int = 50
    mirror_step: float = 0.5
    parameters: str = "top_layer"
    # losses divided by each task's reference loss, so tasks whose losses live on
    # different scales (token tagging vs QA) compare by progress, not by raw value
    relative_losses: bool = True
    # the reference: mean of a task's first this many losses; q stays uniform until then
    reference_updates: int = 20

    def validate(self, path: str, where: str) -> None:
        check_options(
            self,
            path,
            where,
            choices={
                "parameters": ("top_layer", "heads_and_top_layer", "all_shared"),
                "gram": ("unbiased", "same_batch"),
            },
            positive_ints=("every", "iterations", "reference_updates"),
            positive=("temperature", "horizon", "mirror_step"),
            fractions=("smoothing", "floor"),
        )


@register_balancer("lookahead_dro")
class LookaheadDRO(SimplexWeights):
    """Lookahead-DRO, our reading of the abstract of Michel et al. (docs/training.md).

    A step with weights q changes task t's loss by about -eta (G q)_t, G_ts = <g_t, g_s>
    (task gradients on a cheap subset of shared parameters; G is a moving average over
    updates, as one estimate is noisy). Every ``every`` steps choose
      q = argmin_q  temperature * logsumexp_t( (l_t - eta (G q)_t) / temperature )
    by entropic mirror descent, then mix in ``floor`` of uniform: the (soft) worst task
    after the step is as low as possible, and every task keeps training. l_t is a moving
    average of the task's loss over its reference loss (the mean of its first
    ``reference_updates`` losses; q stays uniform until every task has one).

    Failure cases of off-the-shelf DRO this answers (experiments/dro_synthetic.py): raw losses
    send the weight to whichever task has the highest loss, even one whose loss is mostly
    label noise; and a Gram matrix from one batch counts each task's gradient noise as
    progress (E <g, g> = |E g|^2 + variance), so a noisy task looks the most improvable.
    G from two batches (this update's gradients against the last update's) is unbiased:
    a task whose expected gradient is zero predicts no gain, and gets no weight for it.
    """

    smoothed: torch.Tensor  # a registered buffer
    previous: torch.Tensor  # a registered buffer
    has_previous: torch.Tensor  # a registered buffer
    gram_average: torch.Tensor  # a registered buffer
    gram_held: torch.Tensor  # a registered buffer

    Options = LookaheadOptions
    needs: ClassVar[frozenset[Need]] = frozenset({Need.SHARED_PARAMETERS})

    def shared_parameter_set(self) -> str:
        return self.options.parameters

    def __init__(self, task_names: list[str], options: Any) -> None:
        super().__init__(task_names, options)
        tasks = len(task_names)
        self.register_buffer("smoothed", torch.zeros(tasks, dtype=torch.float64))
        # the last update's task gradients (sized at the first update) and which rows hold one
        self.register_buffer("previous", torch.zeros(0))
        self.register_buffer("has_previous", torch.zeros(tasks, dtype=torch.bool))
        # moving average of G (one unbiased estimate is noisy), and which entries hold one
        self.register_buffer("gram_average", torch.zeros(tasks, tasks, dtype=torch.float64))
        self.register_buffer("gram_held", torch.zeros(tasks, tasks, dtype=torch.bool))

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        if "previous" in state_dict:  # sized by the gradients: allocate before loading
            self.previous = torch.zeros_like(state_dict["previous"])
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _task_gradients(
        self, task_losses: dict[str, torch.Tensor], context: BalanceContext
    ) -> torch.Tensor:
        """[T, P] task gradients in task order, zero rows for tasks absent from this rank."""
        params = [p for p in context.shared_parameters if p.requires_grad]
        if not params:
            raise ConfigError(
                "key 'training.balancer.options.parameters': lookahead_dro "
                "needs trainable shared parameters, and these are all frozen"
            )
        size = sum(p.numel() for p in params)
        first = next(iter(task_losses.values()))
        grads = torch.zeros(len(self.task_names), size, device=first.device)
        for row, name in enumerate(self.task_names):
            if name not in task_losses:
                continue
            parts = torch.autograd.grad(
                task_losses[name], params, retain_graph=True, allow_unused=True
            )
            grads[row] = torch.cat(
                [
                    (g if g is not None else torch.zeros_like(p)).flatten()
                    for g, p in zip(parts, params)
                ]
            )
        return grads

    def gram_matrix(
        self, seen: list[int], grads: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(G over the tasks in ``seen``, float64 on the CPU; which entries are estimated).
        Remembers ``grads`` for the next update. Unbiased: an entry needs both tasks'
        gradients from an earlier update, so a task's first update estimates nothing."""
        current = grads[seen].double().cpu()
        if self.options.gram == "same_batch":
            return current @ current.T, torch.ones(len(seen), len(seen), dtype=torch.bool)
        if self.previous.shape != grads.shape:
            self.previous = torch.zeros_like(grads)
        held = self.has_previous[seen].cpu()
        earlier = self.previous[seen].double().cpu()
        gram = (earlier @ current.T + current @ earlier.T) / 2
        self.previous[seen] = grads[seen].detach().to(self.previous)
        self.has_previous[seen] = True
        return gram, held[:, None] & held[None, :]

    def solve(self, losses: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
        """Mirror descent on the simplex for the objective in the class docstring; eta is
        set so that the largest predicted change is ``horizon`` x ``temperature``, which
        makes q independent of the learning rate and of the gradients' scale."""
        opts = self.options
        tau = opts.temperature
        eta = opts.horizon * tau / float(gram.abs().max().clamp(min=1e-30))
        lookahead = eta * gram
        q = torch.full_like(losses, 1.0 / len(losses))
        for _ in range(opts.iterations):
            after = losses - lookahead @ q
            grad = -lookahead.T @ torch.softmax(after / tau, dim=0)
            q = q * torch.exp(-opts.mirror_step * grad / grad.abs().max().clamp(min=1e-30))
            q = q / q.sum()
        return opts.floor / len(losses) + (1 - opts.floor) * q

    def _smooth(self, seen: list[int], losses: torch.Tensor) -> torch.Tensor:
        """Each seen task's moving-average loss (its first loss starts the average)."""
        for t in seen:
            fresh = float(self.smoothed[t]) == 0.0
            a = 0.0 if fresh else self.options.smoothing
            self.smoothed[t] = a * self.smoothed[t] + (1 - a) * float(losses[t])
        return self.smoothed[seen].clone()

    def _smooth_gram(
        self, seen: list[int], gram: torch.Tensor, estimated: torch.Tensor
    ) -> torch.Tensor:
        """The moving average of G over updates on the tasks in ``seen``; an entry never
        estimated yet is 0 (no predicted interaction)."""
        rows, cols = torch.tensor(seen)[:, None], torch.tensor(seen)[None, :]
        held = self.gram_held[rows, cols].cpu()
        old = self.gram_average[rows, cols].cpu()
        a = torch.where(held, self.options.smoothing, 0.0).to(gram)
        average = torch.where(estimated, a * old + (1 - a) * gram, old)
        self.gram_average[rows, cols] = average.to(self.gram_average)
        self.gram_held[rows, cols] = (held | estimated).to(self.gram_held.device)
        return average

    def combine(self, task_losses, context):
        if context.update and context.step % self.options.every == 0:
            # every rank takes part in the same reductions, whatever tasks it holds
            seen, losses = self.losses_over_ranks(task_losses, context)
            grads = self._task_gradients(task_losses, context)
            present = torch.zeros(len(self.task_names), device=grads.device)
            present[[i for i, n in enumerate(self.task_names) if n in task_losses]] = 1.0
            grads = context.all_reduce_mean(grads)
            share = context.all_reduce_mean(present).clamp(min=1e-12)
            grads = grads / share[:, None]  # mean over the ranks that hold the task
            smoothed = self._smooth(seen, losses)
            gram = self._smooth_gram(seen, *self.gram_matrix(seen, grads))
            ready = True
            if self.options.relative_losses:  # d(l_t / l0_t) = dl_t / l0_t: scale rows
                self._relative(seen, losses)
                ready = self.reference_ready(seen)
                smoothed = smoothed / self.initial[seen]
                gram = gram / self.initial[seen].to(gram)[:, None]
            if len(seen) > 1 and ready:
                q_present = self.solve(smoothed, gram)
                mass = float(self.q[seen].sum())
                self.q[seen] = (q_present * mass).to(self.q)  # absent tasks keep their weight
        return self._weighted(task_losses)
