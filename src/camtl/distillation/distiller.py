"""The step's side of distillation: each distilled task's loss becomes
``w * gold loss + (1 - w) * loss against the teacher``, w from the annealing schedule.

The model's forward pass is unchanged (its logits and its gold losses); the teacher's
outputs for the batch's rows are looked up by (task, window) and padded to the batch."""

from __future__ import annotations

from typing import Any

import torch

from camtl.data.prepare import TaskData
from camtl.distillation.config import DistillationConfig
from camtl.distillation.teachers import (
    Inference,
    Teacher,
    task_teacher_outputs,
    teacher_runs,
)

KEY = "training.distillation"


class Distiller:
    def __init__(
        self,
        config: DistillationConfig,
        outputs: dict[int, list[torch.Tensor]],
        max_steps: int,
    ) -> None:
        self.config = config
        self.outputs = outputs  # task index -> the teacher's output per training window
        self.max_steps = max_steps

    def gold_weight(self, step: int) -> float:
        return self.config.gold_weight(step, self.max_steps)

    def task_losses(
        self,
        model: Any,
        out: Any,
        batch: dict[str, torch.Tensor],
        pairs: list[tuple[int, int]],
        step: int,
    ) -> dict[str, torch.Tensor]:
        """``out.task_losses`` with each distilled task's loss mixed with its teacher's;
        ``pairs[r]``: (task index, window index) of the batch's row r."""
        weight = self.gold_weight(step)
        losses = dict(out.task_losses)
        for name, logits in out.logits.items():
            index = model.task_index[name]
            if index not in self.outputs or name not in losses or weight >= 1.0:
                continue
            head = model.heads[name]
            rows = out.rows[name]
            teacher = self._teacher_rows(index, [pairs[r][1] for r in rows.tolist()], head, logits)
            labels = {
                f.name: batch[f.name][rows]
                for f in model.tasks[index].kind.batch_fields
                if f.role == "label"
            }
            soft = head.distillation_loss(logits, teacher, labels, self.config.temperature)
            losses[name] = weight * losses[name] + (1.0 - weight) * soft
        return losses

    def _teacher_rows(
        self, index: int, windows: list[int], head: Any, logits: torch.Tensor
    ) -> torch.Tensor:
        values = [self.outputs[index][w] for w in windows]
        if head.token_level:  # each at its window's length: pad to the batch's
            length = logits.shape[1]
            padded = values[0].new_full(
                (len(values), length, *values[0].shape[1:]), head.teacher_fill
            )
            for row, value in enumerate(values):
                padded[row, : value.shape[0]] = value[:length]
            return padded.to(logits.device)
        return torch.stack(values).to(logits.device)


def build_distiller(
    config: DistillationConfig,
    tasks: list[TaskData],
    tokenizer: Any,
    precision: str,
    batch_size: int,
    max_steps: int,
    device: torch.device,
) -> Distiller:
    """Every teacher checked and its outputs computed (or read from the cache)."""
    names = [t.spec.name for t in tasks]
    by_task: dict[str, list[Teacher]] = {}
    for teacher in teacher_runs(config, names, KEY):
        by_task.setdefault(teacher.task, []).append(teacher)
    inference = Inference(tokenizer, precision, batch_size, device)
    outputs = {}
    for name, teachers in by_task.items():
        index = names.index(name)
        outputs[index] = task_teacher_outputs(teachers, tasks[index], inference, KEY)
    return Distiller(config, outputs, max_steps)
