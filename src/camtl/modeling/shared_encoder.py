"""The shared encoder's contract, the registry of encoder kinds, and the plain encoder.

``MultiTaskModel`` talks to its encoder only through ``SharedEncoder``: encode a batch with
its task ids, add a task, list the modules that always train, give the pretrained layers
and the first layer (whose input covsim reads), and the task-embedding table where there is
one. Each encoder kind registers under the name ``model.architecture`` gives
(``@register_encoder``), with what the rest of the library asks of it: its ``Options``
dataclass (a config's ``model.<name>``), its default freezing, how a model card names and
tags it, and how it describes itself in parameter reports. Built in: the plain pretrained
encoder (here) and CA-MTL's ``ConditionalEncoder`` (``model.architecture: camtl``).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
from torch import nn

from camtl.errors import ConfigError
from camtl.model_config import ModelConfig
from camtl.modeling.attention import attention_kernel
from camtl.modeling.families import family_for
from camtl.registry import NoOptions, Registry
from camtl.structured import from_dict


class SharedEncoder(nn.Module):
    """One encoder for every task; subclasses register with ``@register_encoder(name)``
    and are built as ``cls(pretrained, num_tasks, options)``."""

    name: ClassVar[str] = ""  # set by register_encoder
    # the kind's own options, a dataclass read from ``model.<name>`` of a config
    Options: ClassVar[type] = NoOptions
    # how a model card names a model of this kind ("One CA-MTL model ..."); "" = multi-task
    title: ClassVar[str] = ""
    tags: ClassVar[tuple[str, ...]] = ()  # the model card's hub tags for this kind
    config: Any  # the Hugging Face config of the pretrained encoder
    embeddings: nn.Module
    attention_setting: str = "auto"  # model.attention: auto | sdpa | eager

    @classmethod
    def default_freezing(cls, num_layers: int) -> tuple[bool, int]:
        """(freeze the embeddings, frozen bottom layers) where ``model.freeze_embeddings``
        and ``model.freeze_layers`` are unset: nothing frozen."""
        return False, 0

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
        """Facts about the encoder's own design for parameter reports (``camtl params
        --json``)."""
        return {}

    def summary(self) -> str:
        """The same facts in a few words for text reports ("" when there are none)."""
        return ""

    def pretrained_extras(self) -> list[nn.Module]:
        """The pretrained modules besides the embeddings and the layers (a relative
        position table, a final norm; never the pooler)."""
        return []

    def position_modules(self) -> list[nn.Module]:
        """Pretrained position tables outside the embeddings: they freeze with them."""
        return []

    def pretrained_parameter_count(self) -> int:
        """Parameters of the bare pretrained encoder (no conditional modules, no pooler)."""
        parts = [self.embeddings, *self.pretrained_layers(), *self.pretrained_extras()]
        return sum(p.numel() for part in parts for p in part.parameters())


ENCODERS: Registry[SharedEncoder] = Registry("encoder kind", "model.architecture")
register_encoder = ENCODERS.register
encoder_names = ENCODERS.names


def encoder_kind(name: str) -> type[SharedEncoder]:
    """The encoder class registered as ``name`` (camtl.modeling imports every built-in
    encoder module, which registers it); ConfigError lists the registered ones."""
    cls = ENCODERS.get(name)
    if cls is None:
        raise ConfigError(
            f"key 'model.architecture': {name!r} is not allowed "
            f"(allowed: {', '.join(map(repr, encoder_names()))})"
        )
    return cls


def encoder_options(config: ModelConfig, name: str | None = None) -> Any:
    """The options of encoder kind ``name`` (default: the config's architecture): those
    ``model.<name>`` gives, or the kind's defaults."""
    cls = encoder_kind(name or config.architecture)
    options = config.options.get(cls.name)
    if options is None:
        return cls.Options()
    if isinstance(options, dict):  # a model section built in code from plain data
        return from_dict(cls.Options, options, f"model.{cls.name}")
    return options


def resolved_freezing(config: ModelConfig, num_layers: int) -> tuple[bool, int]:
    """(freeze embeddings, frozen bottom layers): the config's (``half``: num_layers // 2),
    or where unset the encoder kind's default (plain and camtl: nothing frozen)."""
    embeddings, layers = encoder_kind(config.architecture).default_freezing(num_layers)
    if config.freeze_embeddings is not None:
        embeddings = config.freeze_embeddings
    if config.freeze_layers == "half":
        layers = num_layers // 2
    elif config.freeze_layers is not None:
        layers = config.freeze_layers
    return embeddings, layers


def build_shared_encoder(
    config: ModelConfig, pretrained: nn.Module, num_tasks: int
) -> SharedEncoder:
    """The encoder kind of ``model.architecture`` around a pretrained Hugging Face model."""
    cls = encoder_kind(config.architecture)
    return cls(pretrained, num_tasks, encoder_options(config))  # type: ignore[call-arg]


@register_encoder("plain")
class PlainEncoder(SharedEncoder):
    """The pretrained encoder as it is, any encoder-only model AutoModel loads; task ids are
    ignored.

    Its children are registered under the pretrained model's own names (``embeddings``,
    ``encoder``, ``layers``, ``pooler``), so saved weights keep the Hugging Face key names,
    and its forward is the pretrained model's.
    """

    _pretrained: nn.Module  # the Hugging Face model itself, not registered a second time

    def __init__(self, pretrained: nn.Module, num_tasks: int = 0, options: Any = None) -> None:
        super().__init__()
        self.config = pretrained.config
        for name, child in pretrained.named_children():
            self.add_module(name, child)
        object.__setattr__(self, "_pretrained", pretrained)  # not a second registration
        family = family_for(self.config.model_type)
        if family is not None:
            parts = family.parts(pretrained)
            layers, embeddings = parts.layers, parts.embeddings
            positions = [parts.extras[n] for n in parts.frozen_with_embeddings]
        else:
            layers, embeddings, positions = find_layers(pretrained), None, []
        self._layers = list(layers)  # plain lists: the modules are registered above already
        self._positions = positions
        if embeddings is not None:
            self.embeddings = embeddings
        elif not hasattr(self, "embeddings"):
            raise ConfigError(
                f"key 'model.encoder': {self.config.model_type!r} has no 'embeddings' module"
            )
        self._takes_token_types = (
            "token_type_ids" in inspect.signature(pretrained.forward).parameters
        )
        self._supports_sdpa = bool(getattr(pretrained, "_supports_sdpa", False))

    def train(self, mode: bool = True) -> PlainEncoder:
        super().train(mode)
        self._pretrained.training = mode  # the children share the mode already
        return self

    def forward(self, input_ids, attention_mask, token_type_ids, task_ids):
        # Hugging Face reads the kernel from its config at every forward pass; a model
        # without an sdpa path (MPNet, DeBERTa) keeps its own, which its masks are built for
        kernel = attention_kernel(self.attention_setting, self.training, input_ids.device)
        if self._supports_sdpa and self.config._attn_implementation != kernel:
            self.config._attn_implementation = kernel
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._takes_token_types:
            inputs["token_type_ids"] = token_type_ids
        return self._pretrained(**inputs).last_hidden_state

    def pretrained_layers(self):
        return list(self._layers)

    def first_layer(self):
        if not self._layers:
            raise ConfigError(
                f"camtl cannot find the layer list of a {self.config.model_type!r} model"
            )
        return self._layers[0]

    def position_modules(self):
        return list(self._positions)

    def pretrained_parameter_count(self) -> int:
        """Every pretrained parameter but the pooler's (named_parameters counts a shared
        tensor once)."""
        return sum(
            p.numel()
            for name, p in self._pretrained.named_parameters()
            if not name.startswith("pooler.")
        )


def find_layers(model: nn.Module) -> list[nn.Module]:
    """The layers of a model no family module knows: its first ``nn.ModuleList`` as long
    as the config's ``num_hidden_layers``; none where it shares layers (ALBERT) or keeps
    them otherwise (freezing layers and covsim then refuse, naming the model type)."""
    count = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return list(module)
    return []
