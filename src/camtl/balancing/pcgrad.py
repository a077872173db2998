"""PCGrad (Yu et al., NeurIPS 2020, "Gradient Surgery for Multi-Task Learning").

Each task's gradient g_i on the shared parameters is projected off every other task's g_j
it conflicts with (g_i . g_j < 0: g_i -= (g_i . g_j / |g_j|^2) g_j, the other tasks taken in
a random order), and the projected gradients are averaged. The balancer returns the mean
task loss plus a term linear in the shared parameters, sum_p <(g_pc - g_mean).detach(), p>,
whose gradient is exactly the correction: backpropagating it gives the shared parameters
the PCGrad gradient and every other parameter (heads, frozen parts) its usual one.

The shared parameters are ``options.parameters`` (the top layer by default: T backward
passes over it per step; ``all_shared`` is the paper's form and costs T full backward
passes). Task gradients are averaged over the DDP ranks that hold the task, and the random
order comes from the step number, so every rank projects alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from camtl.balancing.base import LossBalancer, Need, register_balancer
from camtl.errors import ConfigError


@dataclass
class PCGradOptions:
    parameters: Literal["top_layer", "heads_and_top_layer", "all_shared"] = "top_layer"
    seed: int = 0  # of the random order of the other tasks


def project_conflicts(grads: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[T, P] task gradients -> the PCGrad-projected ones (each against the originals)."""
    projected = grads.clone()
    for i in range(grads.shape[0]):
        for j in torch.randperm(grads.shape[0], generator=generator).tolist():
            if j == i:
                continue
            dot = torch.dot(projected[i], grads[j])
            if dot < 0:
                projected[i] -= dot / grads[j].dot(grads[j]).clamp(min=1e-20) * grads[j]
    return projected


@register_balancer("pcgrad")
class PCGrad(LossBalancer):
    Options = PCGradOptions
    needs: ClassVar[frozenset[Need]] = frozenset({Need.SHARED_PARAMETERS})

    def shared_parameter_set(self) -> str:
        return self.options.parameters

    def combine(self, task_losses, context):
        params = [p for p in context.shared_parameters if p.requires_grad]
        if not params:
            raise ConfigError(
                "key 'training.balancer.options.parameters': pcgrad needs trainable "
                "shared parameters, and these are all frozen"
            )
        names = list(task_losses)
        mean_loss = torch.stack([task_losses[n] for n in names]).mean()
        index = {n: i for i, n in enumerate(self.task_names)}
        first = next(iter(task_losses.values()))
        size = sum(p.numel() for p in params)
        grads = torch.zeros(len(self.task_names), size, device=first.device)
        present = torch.zeros(len(self.task_names), device=first.device)
        for name in names:
            parts = torch.autograd.grad(
                task_losses[name], params, retain_graph=True, allow_unused=True
            )
            grads[index[name]] = torch.cat(
                [
                    (g if g is not None else torch.zeros_like(p)).flatten()
                    for g, p in zip(parts, params)
                ]
            )
            present[index[name]] = 1.0
        # the loss's own gradient on the shared parameters: the mean of this rank's task
        # gradients (DDP then averages it over the ranks)
        local = grads[[index[n] for n in names]].mean(0)
        # every rank takes part in the same reductions, whatever tasks it holds
        grads = context.all_reduce_mean(grads)
        share = context.all_reduce_mean(present)
        held = (share > 0).nonzero(as_tuple=True)[0]
        grads = grads[held] / share[held, None]
        generator = torch.Generator().manual_seed(self.options.seed * 1_000_003 + context.step)
        projected = project_conflicts(grads.double().cpu(), generator).to(grads)
        # the linear term turns the local gradient into the mean of the projected ones;
        # averaged over ranks by DDP, the locals cancel and the projected mean remains
        correction = projected.mean(0) - local
        linear = first.new_zeros(())
        offset = 0
        for p in params:
            n = p.numel()
            linear = linear + (correction[offset : offset + n].view_as(p).to(p.dtype) * p).sum()
            offset += n
        return mean_loss + linear
