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

    # distillation (camtl.distillation): a teacher's logits for the same rows stand in for
    # the labels. ``token_level`` heads give one output per token, which a teacher's cache
    # keeps at each window's own length and pads with ``teacher_fill``.
    token_level = False
    teacher_fill = 0.0

    def distillation_loss(
        self, logits: torch.Tensor, teacher: torch.Tensor, labels: Fields, temperature: float
    ) -> torch.Tensor:
        """The mean loss of these rows against the teacher's outputs (soft targets); a
        mix ``w * loss + (1 - w) * distillation_loss`` trains on the mixed target of
        teacher annealing (the losses are linear in their targets)."""
        raise NotImplementedError(f"{type(self).__name__} has no distillation loss")


def soft_cross_entropy(
    logits: torch.Tensor, teacher: torch.Tensor, temperature: float, dim: int = -1
) -> torch.Tensor:
    """-sum softmax(teacher / T) log_softmax(logits / T) along ``dim``, times T^2 (so that
    gradients keep their size across temperatures, as in Hinton et al.), per position."""
    target = torch.softmax(teacher.float() / temperature, dim=dim)
    log_probs = torch.log_softmax(logits.float() / temperature, dim=dim)
    # 0 * log(0-probability position) is 0: masked positions carry no target mass
    return -(target * log_probs).nan_to_num(0.0).sum(dim) * temperature**2


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
