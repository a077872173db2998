"""Loss balancers: how the per-task losses of a batch combine into the loss to minimise.

A balancer is looked up by name (``training.balancer.name``) with its own options dataclass.
``combine`` gets the task losses of the batch (a dict, only the tasks present) and a
``BalanceContext`` (the step, the learning rate, the parameters gradient-based methods
differentiate, and a function that averages a tensor over DDP ranks), and returns the loss.
Balancers that keep weights expose them through ``weights()`` for the training log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from camtl.errors import ConfigError
from camtl.structured import from_dict

_BALANCERS: dict[str, type[LossBalancer]] = {}


def register_balancer(name: str) -> Callable[[type[LossBalancer]], type[LossBalancer]]:
    def decorate(cls: type[LossBalancer]) -> type[LossBalancer]:
        _BALANCERS[name] = cls
        cls.name = name
        return cls

    return decorate


def balancer_names() -> list[str]:
    return sorted(_BALANCERS)


@dataclasses.dataclass
class NoOptions:
    """Balancers without options."""


@dataclass
class BalanceContext:
    step: int = 0
    learning_rate: float = 0.0
    shared_parameters: list[nn.Parameter] = field(default_factory=list)
    # False on the micro-batches of a step but the last: stateful weights update once a step
    update: bool = True
    # averages a tensor over DDP ranks (identity in one process)
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor] = lambda t: t


class LossBalancer(nn.Module):
    """Base: subclasses implement ``combine``. An nn.Module so learnable weights (uncertainty
    weighting) train with the model's optimizer and travel in checkpoints."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def __init__(self, task_names: list[str], options: Any) -> None:
        super().__init__()
        self.task_names = list(task_names)
        self.options = options

    def combine(self, task_losses: dict[str, torch.Tensor],
                context: BalanceContext) -> torch.Tensor:
        raise NotImplementedError

    def weights(self) -> dict[str, float]:
        return {}


def build_balancer(name: str, options: dict[str, Any], task_names: list[str],
                   where: str = "") -> LossBalancer:
    if name not in _BALANCERS:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}key 'training.balancer.name': unknown balancer {name!r} "
                          f"(known: {', '.join(balancer_names())})")
    cls = _BALANCERS[name]
    opts = from_dict(cls.Options, options, "training.balancer.options", where)
    return cls(task_names, opts)
