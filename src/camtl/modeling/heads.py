"""Task heads, registered by task type; each computes its own loss from the batch rows."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from camtl.constants import IGNORE_INDEX
from camtl.tasks.spec import TaskType

_HEADS: dict[TaskType, type[TaskHead]] = {}


def register_head(task_type: TaskType) -> Callable[[type[TaskHead]], type[TaskHead]]:
    def decorate(cls: type[TaskHead]) -> type[TaskHead]:
        _HEADS[task_type] = cls
        return cls

    return decorate


def build_head(
    task_type: TaskType, hidden_size: int, num_labels: int, dropout: float, pooling: str
) -> TaskHead:
    return _HEADS[task_type](hidden_size, num_labels, dropout, pooling)


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """First token ([CLS]) or the mask-weighted mean of the tokens."""
    if how == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class TaskHead(nn.Module):
    """A head maps encoder states of its own rows to logits and a loss."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, pooling: str) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.pooling = pooling

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor], rows: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError


class _PooledHead(TaskHead):
    def __init__(self, hidden_size: int, num_labels: int, dropout: float, pooling: str) -> None:
        super().__init__(hidden_size, num_labels, dropout, pooling)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.dropout(pool(hidden, mask, self.pooling))
        x = self.dropout(torch.tanh(self.dense(x)))
        return self.out(x)


@register_head(TaskType.CLASSIFICATION)
class ClassificationHead(_PooledHead):
    def loss(self, logits, batch, rows):
        return F.cross_entropy(logits.float(), batch["cls_labels"][rows])


@register_head(TaskType.REGRESSION)
class RegressionHead(_PooledHead):
    def __init__(self, hidden_size: int, num_labels: int, dropout: float, pooling: str) -> None:
        super().__init__(hidden_size, 1, dropout, pooling)

    def forward(self, hidden, mask):
        return super().forward(hidden, mask).squeeze(-1)

    def loss(self, logits, batch, rows):
        return F.mse_loss(logits.float(), batch["reg_labels"][rows].float())


@register_head(TaskType.TOKEN_TAGGING)
class TaggingHead(TaskHead):
    def __init__(self, hidden_size: int, num_labels: int, dropout: float, pooling: str) -> None:
        super().__init__(hidden_size, num_labels, dropout, pooling)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden, mask):
        return self.out(self.dropout(hidden))

    def loss(self, logits, batch, rows):
        labels = batch["tag_labels"][rows][:, : logits.shape[1]]
        if bool((labels != IGNORE_INDEX).any()):
            return F.cross_entropy(
                logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
            )
        return logits.sum() * 0.0  # every word truncated away: no signal, keep the graph


@register_head(TaskType.SPAN_QA)
class SpanHead(TaskHead):
    """Start and end logits per token; padding positions are masked out."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, pooling: str) -> None:
        super().__init__(hidden_size, 2, dropout, pooling)
        self.out = nn.Linear(hidden_size, 2)

    def forward(self, hidden, mask):
        logits = self.out(hidden).float()
        return logits.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(logits.dtype).min)

    def loss(self, logits, batch, rows):
        start = F.cross_entropy(logits[..., 0], batch["start_positions"][rows])
        end = F.cross_entropy(logits[..., 1], batch["end_positions"][rows])
        return (start + end) / 2
