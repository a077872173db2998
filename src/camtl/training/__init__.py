"""The training loop (accelerate), checkpoints and the run directory."""

from camtl.training.trainer import Trainer, train

__all__ = ["Trainer", "train"]
