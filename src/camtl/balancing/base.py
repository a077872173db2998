"""Loss balancers: how the per-task losses of a batch combine into the loss to minimise.

A balancer is looked up by name (``training.balancer.name``) with its own options dataclass.
``combine`` gets the task losses of the batch (a dict, only the tasks present) and a
``BalanceContext`` (the step, the learning rate, the parameters gradient-based methods
differentiate, and a function that averages a tensor over DDP ranks), and returns the loss.
Balancers that keep weights expose them through ``weights()`` for the training log.

What a balancer needs from the trainer beyond that is its declared contract, ``needs``
(``Need``): the trainer provides exactly what a balancer declares and reads nothing else
of it (camtl.training.setup). Learnable weights need no declaration: the trainer trains
the balancer's own trainable parameters (uncertainty weighting's) with the model's.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from camtl.errors import ConfigError
from camtl.registry import NoOptions, Registry

BALANCERS: Registry[LossBalancer] = Registry("balancer", "training.balancer")
register_balancer = BALANCERS.register
balancer_names = BALANCERS.names


class Need(enum.Enum):
    """What a balancer may need from the trainer besides the batch's task losses."""

    # each dev evaluation's primary scores (higher is better), given to observe_dev_scores
    DEV_SCORES = "dev_scores"
    # BalanceContext.shared_parameters: the model's trainable shared parameters of the set
    # ``shared_parameter_set()`` names, which gradient-based balancers differentiate
    SHARED_PARAMETERS = "shared_parameters"


@dataclass
class BalanceContext:
    step: int = 0
    learning_rate: float = 0.0
    # filled for a balancer that needs them (Need.SHARED_PARAMETERS), else empty
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
    # what the trainer must give it besides the task losses (see Need)
    needs: ClassVar[frozenset[Need]] = frozenset()

    def __init__(self, task_names: list[str], options: Any) -> None:
        super().__init__()
        self.task_names = list(task_names)
        self.options = options

    def combine(
        self, task_losses: dict[str, torch.Tensor], context: BalanceContext
    ) -> torch.Tensor:
        raise NotImplementedError

    def weights(self) -> dict[str, float]:
        return {}

    def observe_dev_scores(self, scores: dict[str, float]) -> None:
        """Each task's primary dev score (higher is better) after an evaluation, the same
        on every rank; called only when ``needs`` holds ``Need.DEV_SCORES``."""

    def wants_teacher_scores(self) -> bool:
        """Whether the trainer must hand it each distilled task's teacher dev score
        (``use_teacher_scores``) before training: score DRO's ``targets: teachers``."""
        return False

    def use_teacher_scores(self, scores: dict[str, float]) -> None:
        """Each distilled task's teacher's primary dev score; called once, before training,
        only when ``wants_teacher_scores``."""

    def shared_parameter_set(self) -> str:
        """Which of the model's shared parameters ``BalanceContext.shared_parameters``
        holds where ``needs`` holds ``Need.SHARED_PARAMETERS``: a set
        ``MultiTaskModel.shared_parameters`` knows (``top_layer``, ``heads_and_top_layer``,
        ``all_shared``)."""
        return "top_layer"

    def gradient_weights(self) -> dict[str, float] | None:
        """Each task's share of the gradient of the last combined loss, for a balancer
        whose weights() are not that (FAMO: its weights z act on log-losses); None when
        weights() already are."""
        return None

    def losses_over_ranks(
        self, task_losses: dict[str, torch.Tensor], context: BalanceContext
    ) -> tuple[list[int], torch.Tensor]:
        """(indices of the tasks some rank holds, each task's loss averaged over the ranks
        that hold it [T], float64 on the CPU): every rank gets the same values, so weights
        computed from them stay equal across ranks."""
        index = {n: i for i, n in enumerate(self.task_names)}
        first = next(iter(task_losses.values()))
        values = torch.zeros(len(self.task_names), device=first.device)
        present = torch.zeros(len(self.task_names), device=first.device)
        for name, loss in task_losses.items():
            values[index[name]] = loss.detach().float()
            present[index[name]] = 1.0
        values = context.all_reduce_mean(values)
        present = context.all_reduce_mean(present)
        seen = (present > 0).nonzero(as_tuple=True)[0].tolist()
        return seen, (values / present.clamp(min=1e-12)).double().cpu()


def check_task_keys(per_task: dict[str, Any], task_names: list[str], key: str) -> None:
    """Refuse a per-task option (``training.balancer.options.<key>``) naming a task that
    is not in the run."""
    unknown = [t for t in per_task if t not in task_names]
    if unknown:
        raise ConfigError(
            f"key 'training.balancer.options.{key}.{unknown[0]}': no such "
            f"task in this run (tasks: {', '.join(task_names)})"
        )


def build_balancer(
    name: str, options: dict[str, Any], task_names: list[str], where: str = ""
) -> LossBalancer:
    """Look a balancer up by name and validate its options (errors name the key path)."""
    cls, opts = BALANCERS.lookup(name, options, where)
    return cls(task_names, opts)
