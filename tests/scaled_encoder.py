"""A stand-in encoder kind, added by this one module: the plain encoder with its hidden
states scaled by its own option (``model.scaled.scale``). Registering it is all it takes:
tests/test_encoder_kinds.py shows config validation, the CLI, parameter reports, compare
and model cards taking it with no edit anywhere else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from camtl.errors import ConfigError
from camtl.modeling.shared_encoder import PlainEncoder, register_encoder


@dataclass
class ScaledOptions:
    scale: float = 1.0

    def validate(self, path: str, where: str) -> None:
        if not self.scale > 0:
            raise ConfigError.at(where, f"key '{path}.scale': must be > 0")


@register_encoder("scaled")
class ScaledEncoder(PlainEncoder):
    """The pretrained encoder, its hidden states times ``scale``; the embeddings and the
    bottom layer frozen unless the config says otherwise."""

    Options = ScaledOptions
    title = "scaled-plain"
    tags = ("scaled-encoder",)

    @classmethod
    def default_freezing(cls, num_layers: int) -> tuple[bool, int]:
        return True, 1

    def __init__(self, pretrained: Any, num_tasks: int = 0, options: Any = None) -> None:
        super().__init__(pretrained, num_tasks)
        self.scale = (options or ScaledOptions()).scale

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        task_ids: torch.Tensor,
    ) -> torch.Tensor:
        return super().forward(input_ids, attention_mask, token_type_ids, task_ids) * self.scale

    def description(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def summary(self) -> str:
        return f"hidden states x {self.scale:g}"
