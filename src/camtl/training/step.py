"""One optimizer step over accumulated micro-batches: the trainer's, and add-task's.

The step runs under accelerate's ``Accelerator`` in the trainer and under
``SingleProcess``, its one-process stand-in in plain torch, in add-task; both give it
what ``StepAccelerator`` names.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from camtl.balancing import BalanceContext, LossBalancer
from camtl.data.collate import collate_features
from camtl.data.prepare import TaskData
from camtl.distillation.distiller import Distiller
from camtl.precision import autocast
from camtl.sampling import BatchScheduler


class StepAccelerator(Protocol):
    """The part of accelerate's ``Accelerator`` that a step uses."""

    @property
    def device(self) -> torch.device: ...
    @property
    def process_index(self) -> int: ...
    @property
    def num_processes(self) -> int: ...
    def autocast(self) -> AbstractContextManager[Any]: ...
    def no_sync(self, model: nn.Module) -> AbstractContextManager[Any]: ...
    def backward(self, loss: torch.Tensor) -> None: ...
    def clip_grad_norm_(self, parameters: list[nn.Parameter], max_norm: float) -> Any: ...
    def reduce(self, tensor: torch.Tensor, reduction: str = "sum") -> torch.Tensor: ...


class SingleProcess:
    """``StepAccelerator`` for one process in plain torch: autocast by ``precision``,
    ``loss.backward()``, torch's gradient clipping."""

    process_index, num_processes = 0, 1

    def __init__(self, precision: str, device: torch.device) -> None:
        self.precision = precision
        self.device = device

    def autocast(self) -> AbstractContextManager[Any]:
        return autocast(self.precision, self.device)

    def no_sync(self, model: nn.Module) -> AbstractContextManager[Any]:
        return nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm_(self, parameters: list[nn.Parameter], max_norm: float) -> Any:
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def reduce(self, tensor: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        return tensor


def all_reduce_mean(accelerator: StepAccelerator, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` averaged over the processes (itself in one process)."""
    if accelerator.num_processes == 1:
        return tensor
    return accelerator.reduce(tensor.contiguous(), reduction="mean")


@dataclass
class StepParts:
    """What one optimizer step works on."""

    model: nn.Module  # what runs the batches: DDP-wrapped under several processes
    balancer: LossBalancer
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any  # get_last_lr() and step(), as torch's LR schedulers have
    batch_scheduler: BatchScheduler  # draws each step's global batch
    tasks: list[TaskData]
    pad_token_id: int
    clip_parameters: list[nn.Parameter]
    max_grad_norm: float  # 0: no clipping
    accumulation: int = 1  # micro-batches per optimizer step
    context: BalanceContext = field(default_factory=BalanceContext)
    distiller: Distiller | None = None  # training.distillation: teachers' outputs mixed in
    sam: Any = None  # training.sam (camtl.training.sam.SamConfig): per-task perturbations


def micro_batch(
    parts: StepParts, accelerator: StepAccelerator, step: int
) -> tuple[dict[str, torch.Tensor], list[tuple[int, int]]]:
    """This process's shard of the next global batch, collated on its device, and its
    rows' (task index, window index)."""
    global_batch = parts.batch_scheduler.next_batch(step)
    mine = BatchScheduler.shard(global_batch, accelerator.process_index, accelerator.num_processes)
    features = [parts.tasks[t].features["train"][i] for t, i in mine]
    batch = collate_features(features, parts.pad_token_id)
    return {k: v.to(accelerator.device) for k, v in batch.items()}, list(mine)


def unwrap(model: nn.Module) -> Any:
    """The MultiTaskModel inside a DDP wrapper (itself when not wrapped)."""
    return getattr(model, "module", model)


def train_step(parts: StepParts, accelerator: StepAccelerator, step: int) -> dict[str, float]:
    """Optimizer step ``step + 1`` over ``parts.accumulation`` micro-batches; returns the
    step's loss (``loss``) and each task's mean loss (``loss/TASK``)."""
    if parts.sam is not None:
        from camtl.training.sam import sam_train_step

        return sam_train_step(parts, accelerator, step)
    accum = parts.accumulation
    task_losses: dict[str, list[float]] = {}
    total = 0.0
    for micro in range(accum):
        batch, pairs = micro_batch(parts, accelerator, step)
        sync = micro == accum - 1  # DDP averages gradients on the last micro-batch only
        parts.context.step = step
        parts.context.update = sync
        parts.context.learning_rate = parts.lr_scheduler.get_last_lr()[0]
        no_sync = nullcontext() if sync else accelerator.no_sync(parts.model)
        with no_sync, accelerator.autocast():
            out = parts.model(**batch)
            if parts.distiller is not None:
                out.task_losses = parts.distiller.task_losses(
                    unwrap(parts.model), out, batch, pairs, step
                )
            loss = parts.balancer.combine(out.task_losses, parts.context) / accum
        accelerator.backward(loss)
        total += float(loss.detach())
        for name, value in out.task_losses.items():
            task_losses.setdefault(name, []).append(float(value.detach()))
    if accelerator.num_processes > 1:  # the balancer is outside DDP: average its gradients
        for param in parts.balancer.parameters():
            if param.grad is not None:
                param.grad = all_reduce_mean(accelerator, param.grad)
    return apply_update(parts, accelerator, total, task_losses)


def apply_update(
    parts: StepParts,
    accelerator: StepAccelerator,
    total: float,
    task_losses: dict[str, list[float]],
) -> dict[str, float]:
    """Clip, step the optimizer and the LR schedule, clear the gradients; the step's logs:
    its loss and each task's mean loss over the micro-batches."""
    if parts.max_grad_norm > 0:
        accelerator.clip_grad_norm_(parts.clip_parameters, parts.max_grad_norm)
    parts.optimizer.step()
    parts.lr_scheduler.step()
    parts.optimizer.zero_grad(set_to_none=True)
    return {"loss": total, **{f"loss/{k}": sum(v) / len(v) for k, v in task_losses.items()}}
