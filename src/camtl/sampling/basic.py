"""Static samplers: uniform, proportional to task size, temperature-scaled."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from camtl.errors import ConfigError
from camtl.sampling.base import TaskSampler, register_sampler


@register_sampler("uniform")
class UniformSampler(TaskSampler):
    """Every task equally likely, whatever its size."""

    def probabilities(self, step: int) -> np.ndarray:
        return np.full(len(self.task_sizes), 1.0 / len(self.task_sizes))


@register_sampler("proportional")
class ProportionalSampler(TaskSampler):
    """p_t proportional to the number of training examples N_t."""

    def probabilities(self, step: int) -> np.ndarray:
        return self.task_sizes / self.task_sizes.sum()


@dataclass
class TemperatureOptions:
    temperature: float = 2.0

    def validate(self, path: str, where: str) -> None:
        if not self.temperature > 0:
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}key '{path}.temperature': must be > 0")


@register_sampler("temperature")
class TemperatureSampler(TaskSampler):
    """p_t proportional to N_t^(1/T): T=1 is proportional, large T tends to uniform."""

    Options = TemperatureOptions

    def probabilities(self, step: int) -> np.ndarray:
        weights = self.task_sizes ** (1.0 / self.options.temperature)
        return weights / weights.sum()


@dataclass
class AnnealedOptions:
    epochs: int = 5

    def validate(self, path: str, where: str) -> None:
        if self.epochs < 1:
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}key '{path}.epochs': must be a positive integer")


@register_sampler("annealed")
class AnnealedSampler(TaskSampler):
    """p_t proportional to N_t^alpha, alpha = 1 - 0.8 (e - 1) / (E - 1) at epoch e of E
    (Stickland & Murray 2019): proportional at first, nearly uniform at the end. The step
    budget is split into ``epochs`` equal parts."""

    Options = AnnealedOptions

    def alpha(self, step: int) -> float:
        epochs = self.options.epochs
        if epochs == 1:
            return 1.0
        epoch = min(epochs, 1 + step * epochs // max(1, self.total_steps))
        return 1.0 - 0.8 * (epoch - 1) / (epochs - 1)

    def probabilities(self, step: int) -> np.ndarray:
        weights = self.task_sizes ** self.alpha(step)
        return weights / weights.sum()
