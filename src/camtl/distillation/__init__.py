"""Distillation from single-task teachers with teacher annealing (``training.distillation``).

A teacher's outputs on the student's own training windows are computed once
(camtl.distillation.teachers, cached like the features) and mixed into each task's loss
by the step (camtl.distillation.distiller)."""

from camtl.distillation.config import DistillationConfig

__all__ = ["DistillationConfig"]
