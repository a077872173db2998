"""Head building blocks the task kinds share.

A head maps the encoder states of its task's rows to logits and computes its own loss from
its kind's batch fields. A head that uses dropout takes an optional ``generator``: with one,
dropout is on whatever the module's mode and its masks come from that generator, which is
how MT-Uncertainty draws rank-identical MC-dropout samples through the head's own forward.
"""

from __future__ import annotations

import torch
from torch import nn

Fields = dict[str, torch.Tensor]


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """First token ([CLS]) or the mask-weighted mean of the tokens."""
    if how == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def dropout(x: torch.Tensor, layer: nn.Dropout, generator: torch.Generator | None) -> torch.Tensor:
    """``layer(x)``, or with a mask drawn from ``generator`` (always on) when one is given."""
    if generator is None:
        return layer(x)
    p = layer.p
    keep = (torch.rand(x.shape, generator=generator) >= p).to(device=x.device, dtype=x.dtype)
    return x * keep / (1 - p)


class TaskHead(nn.Module):
    """Logits from hidden states [rows, L, d] and the mask [rows, L]; ``inputs`` holds the
    kind's input batch fields of the same rows."""

    def __init__(self, hidden_size: int, num_outputs: int, dropout: float, pooling: str) -> None:
        super().__init__()
        self.num_outputs = num_outputs
        self.pooling = pooling

    def forward(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        inputs: Fields | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: Fields) -> torch.Tensor:
        """The mean loss of these rows given the kind's label fields of the same rows."""
        raise NotImplementedError


class PooledHead(TaskHead):
    """pool -> dropout -> dense -> tanh -> dropout -> out (BERT's classifier shape)."""

    def __init__(self, hidden_size: int, num_outputs: int, dropout: float, pooling: str) -> None:
        super().__init__(hidden_size, num_outputs, dropout, pooling)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_outputs)

    def forward(self, hidden, mask, inputs=None, generator=None):
        x = dropout(pool(hidden, mask, self.pooling), self.dropout, generator)
        x = dropout(torch.tanh(self.dense(x)), self.dropout, generator)
        return self.out(x)
