"""The shared encoder's contract, and its plain implementation.

``MultiTaskModel`` talks to its encoder only through ``SharedEncoder``: encode a batch with
its task ids, add a task, list the modules that always train, give the pretrained layers
and the first layer (whose input covsim reads), and the task-embedding table where there is
one. Two classes implement it, registered by the ``model.architecture`` name: the plain
pretrained encoder (here) and CA-MTL's ``ConditionalEncoder``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from camtl.model_config import CamtlConfig
from camtl.modeling.attention import attention_kernel


class SharedEncoder(nn.Module):
    """One encoder for every task; subclasses register with ``@register_encoder(name)``."""

    config: Any  # the Hugging Face config of the pretrained encoder
    embeddings: nn.Module
    attention_setting: str = "auto"  # model.attention: auto | sdpa | eager

    def set_attention(self, setting: str) -> None:
        """Which attention kernel forward passes run (camtl.modeling.attention); ``auto``
        decides per pass from the module's mode and the device."""
        self.attention_setting = setting

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        task_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Hidden states [B, L, d]."""
        raise NotImplementedError

    def pretrained_layers(self) -> list[nn.Module]:
        """The pretrained Transformer layers, bottom first."""
        raise NotImplementedError

    def first_layer(self) -> nn.Module:
        """The module whose input is the first layer's input (after any alignment)."""
        raise NotImplementedError

    def conditional_modules(self) -> list[nn.Module]:
        """Modules that always train, whatever part of the pretrained encoder is frozen."""
        return []

    def task_embeddings(self) -> nn.Parameter | None:
        """The task-embedding table [tasks, dim], where the encoder conditions on tasks."""
        return None

    def add_task(self, embedding: torch.Tensor | None = None) -> None:
        """Make room for one more task (a new embedding row: ``embedding`` or random)."""

    def gather_for_export(self, enabled: bool = True) -> None:
        """Switch to a form without data-dependent shapes or control flow, for graph export
        (the plain encoder has nothing to switch)."""

    def per_task_parameter_count(self) -> int:
        """Parameters the encoder holds per task (an embedding row)."""
        table = self.task_embeddings()
        return 0 if table is None else int(table.shape[1])

    def description(self) -> dict[str, Any]:
        """Facts about the encoder's own design for parameter reports."""
        return {}

    def pretrained_parameter_count(self) -> int:
        """Parameters of the bare pretrained encoder (no conditional modules, no pooler)."""
        parts = [self.embeddings, *self.pretrained_layers()]
        project = getattr(self, "embeddings_project", None)
        if project is not None:
            parts.append(project)
        return sum(p.numel() for part in parts for p in part.parameters())


_ENCODERS: dict[str, Callable[[nn.Module, int, CamtlConfig], SharedEncoder]] = {}


def register_encoder(
    name: str,
) -> Callable[[type[SharedEncoder]], type[SharedEncoder]]:
    def decorate(cls: type[SharedEncoder]) -> type[SharedEncoder]:
        _ENCODERS[name] = cls  # type: ignore[assignment]
        return cls

    return decorate


def encoder_names() -> list[str]:
    return sorted(_ENCODERS)


def build_shared_encoder(
    architecture: str, pretrained: nn.Module, num_tasks: int, cam: CamtlConfig
) -> SharedEncoder:
    """The registered encoder class ``architecture`` around a pretrained Hugging Face model
    (camtl.modeling imports every built-in encoder module, which registers it)."""
    return _ENCODERS[architecture](pretrained, num_tasks, cam)


@register_encoder("plain")
class PlainEncoder(SharedEncoder):
    """The pretrained encoder as it is; task ids are ignored.

    Its children are registered under the pretrained model's own names (``embeddings``,
    ``encoder``, ``pooler``), so saved weights keep the Hugging Face key names, and its
    forward is the pretrained model's.
    """

    _pretrained: nn.Module  # the Hugging Face model itself, not registered a second time

    def __init__(self, pretrained: nn.Module, num_tasks: int = 0, cam: Any = None) -> None:
        super().__init__()
        self.config = pretrained.config
        for name, child in pretrained.named_children():
            self.add_module(name, child)
        object.__setattr__(self, "_pretrained", pretrained)  # not a second registration

    def train(self, mode: bool = True) -> PlainEncoder:
        super().train(mode)
        self._pretrained.training = mode  # the children share the mode already
        return self

    def forward(self, input_ids, attention_mask, token_type_ids, task_ids):
        # Hugging Face reads the kernel from its config at every forward pass
        kernel = attention_kernel(self.attention_setting, self.training, input_ids.device)
        if self.config._attn_implementation != kernel:
            self.config._attn_implementation = kernel
        out = self._pretrained(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        return out.last_hidden_state

    def pretrained_layers(self):
        return list(self.encoder.layer)

    def first_layer(self):
        return self.encoder.layer[0]
