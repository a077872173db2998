"""``training.sam``: a sharpness-aware step with one perturbation per task, after "Improving
Multi-task Learning via Seeking Task-based Flat Regions" (Phan et al.).

Each task's gradient is taken at its own worst-case neighbour of the weights: for task t,
g_t = grad L_t(w) on its rows of the batch, e_t = rho * g_t / ||g_t||, and the gradient
L_t(w + e_t) gives is what the step applies, weighted by the balancer as the plain step
weighs L_t. The perturbation covers every trainable parameter (the shared encoder and the
task's head). A step costs one forward pass without gradients (the losses the balancer
weighs) and two forward and backward passes over the batch, split by task.

Written here, not taken from a library: the SAM optimizers on PyPI perturb along the one
gradient of the summed loss, not one per task. Under DDP the passes run on the unwrapped
model (no DDP hooks fire) and gradients are averaged over ranks by hand, in one fixed
order of tasks on every rank, so a rank without a task's rows still joins its collectives.
"""

from __future__ import annotations

from typing import Any

import torch

from camtl.errors import ConfigError


def check_sam(balancer: Any) -> None:
    """Refuse a balancer that differentiates the model itself: its per-task gradients and
    SAM's cannot both define the step."""
    from camtl.balancing.base import Need

    if Need.SHARED_PARAMETERS in balancer.needs:
        raise ConfigError(
            f"key 'training.sam': the balancer {balancer.name} combines task gradients "
            "itself; use training.sam with a balancer that weighs losses (equal, "
            "fixed, uncertainty, group_dro, score_dro, famo)"
        )


def task_weights(
    balancer: Any, losses: dict[str, torch.Tensor], context: Any, scale: float
) -> tuple[float, dict[str, float]]:
    """(the combined loss, each task's weight in it): the derivative of the balancer's
    combination by each task's loss. Its own learnable weights get their gradient (times
    ``scale``) from the same backward pass."""
    leaves = {name: value.detach().clone().requires_grad_(True) for name, value in losses.items()}
    combined = balancer.combine(leaves, context)
    (combined * scale).backward()
    weights = {
        name: 0.0 if leaf.grad is None else float(leaf.grad) / scale
        for name, leaf in leaves.items()
    }
    return float(combined.detach()), weights


def sam_train_step(parts: Any, accelerator: Any, step: int) -> dict[str, float]:
    """``train_step`` with each task's gradient taken at its own perturbation."""
    from camtl.training.step import all_reduce_mean, apply_update, micro_batch, unwrap

    model = unwrap(parts.model)
    rho = parts.sam.rho
    params = [p for p in model.parameters() if p.requires_grad]
    accum = parts.accumulation
    distributed = accelerator.num_processes > 1
    task_losses: dict[str, list[float]] = {}
    total = 0.0
    for micro in range(accum):
        batch, pairs = micro_batch(parts, accelerator, step)
        parts.context.step = step
        parts.context.update = micro == accum - 1  # stateful weights update once a step
        parts.context.learning_rate = parts.lr_scheduler.get_last_lr()[0]
        with torch.no_grad(), accelerator.autocast():  # the losses the balancer weighs
            losses = _task_losses(parts, model, batch, pairs, step)
        combined, weights = task_weights(parts.balancer, losses, parts.context, 1.0 / accum)
        total += combined / accum
        for name, value in losses.items():
            task_losses.setdefault(name, []).append(float(value))
        for index, task in enumerate(model.tasks):  # one order on every rank
            rows = (batch["task_ids"] == index).nonzero(as_tuple=True)[0]
            present = len(rows) > 0
            sub = {k: v[rows] for k, v in batch.items()}
            sub_pairs = [pairs[r] for r in rows.tolist()]
            if present:
                with accelerator.autocast():
                    loss = _task_losses(parts, model, sub, sub_pairs, step)[task.name]
                found = torch.autograd.grad(loss, params, allow_unused=True)
                grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, found)]
            else:
                grads = [torch.zeros_like(p) for p in params]
            if distributed:
                grads = [all_reduce_mean(accelerator, g) for g in grads]
            norm = torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads]))
            if not present or float(norm) == 0.0:
                continue  # nothing of this task here, or no slope to climb
            scale = rho / (float(norm) + 1e-12)
            # the weights are put back by copy: (w + e) - e is not w in floating point, and
            # ranks without this task's rows would drift apart from those with them
            saved = [p.detach().clone() for p in params]
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p.add_(g, alpha=scale)
            del grads
            with accelerator.autocast():
                perturbed = _task_losses(parts, model, sub, sub_pairs, step)[task.name]
            (perturbed * (weights.get(task.name, 0.0) / accum)).backward()
            with torch.no_grad():
                for p, original in zip(params, saved):
                    p.copy_(original)
            del saved
    if distributed:  # the passes ran outside DDP: average the gradients by hand
        for p in [*params, *parts.balancer.parameters()]:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad = all_reduce_mean(accelerator, p.grad)
    return apply_update(parts, accelerator, total, task_losses)


def _task_losses(
    parts: Any, model: Any, batch: dict[str, torch.Tensor], pairs: list, step: int
) -> dict[str, torch.Tensor]:
    """Each task's loss on ``batch`` (mixed with its teacher's under distillation)."""
    out = model(**batch)
    if parts.distiller is None:
        return dict(out.task_losses)
    return parts.distiller.task_losses(model, out, batch, pairs, step)
