"""What camtl needs of a pretrained encoder family, and the layer CA-MTL builds on it.

A family is one layout of Hugging Face encoder, registered under the ``model_type`` values
that share it (``@register_family("bert", "roberta", ...)``). It says where the pretrained
parts live (embeddings, layers, any other module the forward pass reads), how the
embeddings take their inputs, what each forward pass computes once for every layer (a
position bias, rotary angles), and which config fields and modules hold its dropout. Its
``layer`` class is CA-MTL's layer on that family's own block: it reuses the block's
pretrained ``nn.Linear``/``nn.LayerNorm`` objects and runs its own forward with the
conditional modules around them (we never patch the library's forward functions, which
change between versions). A family without a ``layer`` is served by ``plain`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from camtl.errors import ConfigError
from camtl.modeling.attention import attend, attention_kernel
from camtl.modeling.conditional import (
    ConditionalAttentionBias,
    ConditionalBottleneck,
    ConditionalLayerNorm,
    FiLMGenerator,
    TaskRows,
)
from camtl.modeling.dropout import DrawsDropoutMasks

if TYPE_CHECKING:
    from camtl.modeling.conditional_encoder import CamtlOptions


@dataclass
class PretrainedParts:
    """Where a pretrained model keeps what an encoder kind takes over.

    extras: other pretrained modules the forward pass reads (a relative position table, a
    final norm), registered by the encoder under these names; ``frozen_with_embeddings``
    names those that freeze with the embeddings (position tables).
    """

    embeddings: nn.Module
    layers: list[nn.Module]
    extras: dict[str, nn.Module] = field(default_factory=dict)
    frozen_with_embeddings: tuple[str, ...] = ()


class ConditionalLayer(DrawsDropoutMasks, nn.Module):
    """CA-MTL's layer on one pretrained block: the block's weights (``base``, read by
    attribute name: its submodules are used, its forward is not) and the optional
    conditional attention bias, conditional LayerNorms and bottleneck. Each family
    subclasses it with the forward pass of its own block."""

    def __init__(
        self,
        base: Any,
        config: Any,
        z_dim: int,
        cam: CamtlOptions,
        use_attention: bool,
        use_cln: bool,
        use_bottleneck: bool,
        shared: nn.ModuleDict | None,
        hidden_dropout: float,
    ) -> None:
        super().__init__()
        gen = SharedLookup(shared)
        self.base: Any = base
        self.heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.attention_setting = "auto"  # model.attention (ConditionalEncoder.set_attention)
        d = config.hidden_size
        self.cond_attention = (
            ConditionalAttentionBias(
                z_dim,
                cam.max_length,
                cam.blocks(d),
                cam.attention_form,
                gen("attention"),
            )
            if use_attention
            else None
        )
        self.cln_attention = (
            ConditionalLayerNorm(d, z_dim, gen("cln_attention")) if use_cln else None
        )
        self.cln_output = ConditionalLayerNorm(d, z_dim, gen("cln_output")) if use_cln else None
        self.bottleneck = (
            ConditionalBottleneck(
                z_dim, d, cam.bottleneck_reduction, hidden_dropout, gen.pair("bottleneck")
            )
            if use_bottleneck
            else None
        )

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, d] -> [B, heads, L, d_head]."""
        b, length, _ = x.shape
        return x.view(b, length, self.heads, self.head_size).transpose(1, 2)

    def attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask_bias: torch.Tensor,
        z: torch.Tensor,
        rows: TaskRows,
        dropout_p: float,
    ) -> torch.Tensor:
        """softmax(q k^T / sqrt(d_head) + mask_bias + M(z)) v, heads merged: [B, L, d].
        ``mask_bias`` holds padding and whatever the family adds to the scores (a position
        bias); ``dropout_p`` is the pretrained block's probability dropout, 0 at inference."""
        length = q.shape[2]
        bias = (
            mask_bias
            if self.cond_attention is None
            else self.cond_attention(z, rows, length, mask_bias)
        )
        kernel = attention_kernel(self.attention_setting, self.training, q.device)
        p = dropout_p if self.training else 0.0
        context = attend(kernel, q, k, v, bias.to(q.dtype), p, self.dropout_masks)
        b = q.shape[0]
        return context.transpose(1, 2).reshape(b, length, self.heads * self.head_size)

    @staticmethod
    def norm(
        cln: ConditionalLayerNorm | None,
        base: nn.Module,
        x: torch.Tensor,
        z: torch.Tensor,
        rows: TaskRows,
    ) -> torch.Tensor:
        """The pretrained LayerNorm ``base``, task-conditioned where ``cln`` is set."""
        return cln(x, z, rows, base) if cln is not None else base(x)  # type: ignore[arg-type]

    def forward(
        self,
        hidden: torch.Tensor,
        mask_bias: torch.Tensor,
        z: torch.Tensor,
        rows: TaskRows,
        context: Any,
    ) -> torch.Tensor:
        """``z`` [T, d_z]: one vector per task in the batch; ``rows``: each example's task
        (the batch sorted by task); ``context``: what the family computed once for every
        layer of this pass."""
        raise NotImplementedError


class PostNormLayer(ConditionalLayer):
    """A post-norm block (BERT's layout): attention -> add & norm -> feed-forward -> add &
    norm, CA-MTL's conditional LayerNorms on both norms and its bottleneck beside the
    feed-forward (reading the attention sub-block's output, added before the second norm).
    A family names its parts through the accessors below."""

    def project(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v [B, heads, L, d_head]."""
        raise NotImplementedError

    def scores(
        self, q: torch.Tensor, k: torch.Tensor, mask_bias: torch.Tensor, context: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(q as the attention scales it, the additive bias of the scores): by default q
        and the padding mask; a family adds its position terms."""
        return q, mask_bias

    def probability_dropout(self) -> float:
        """The pretrained block's dropout on attention probabilities."""
        raise NotImplementedError

    def attention_output(self, merged: torch.Tensor) -> torch.Tensor:
        """The attention's output projection (and its dropout), before the residual."""
        raise NotImplementedError

    def feed_forward(self, attended: torch.Tensor) -> torch.Tensor:
        """The feed-forward (and its dropout), before the residual."""
        raise NotImplementedError

    def norms(self) -> tuple[nn.Module, nn.Module]:
        """The pretrained LayerNorms after attention and after the feed-forward."""
        raise NotImplementedError

    def forward(
        self,
        hidden: torch.Tensor,
        mask_bias: torch.Tensor,
        z: torch.Tensor,
        rows: TaskRows,
        context: Any = None,
    ) -> torch.Tensor:
        q, k, v = self.project(hidden)
        q, bias = self.scores(q, k, mask_bias, context)
        merged = self.attention(q, k, v, bias, z, rows, self.probability_dropout())
        first, second = self.norms()
        attended = self.norm(
            self.cln_attention, first, self.attention_output(merged) + hidden, z, rows
        )
        residual = self.feed_forward(attended) + attended
        if self.bottleneck is not None:  # "base" variant: added before the layer's norm
            residual = residual + self.bottleneck(attended, z, rows)
        return self.norm(self.cln_output, second, residual, z, rows)


def activation(name: Any) -> Any:
    """A config's activation: a name looked up in transformers, or the callable itself."""
    from transformers.activations import ACT2FN

    return ACT2FN[name] if isinstance(name, str) else name


class SharedLookup:
    """The shared generator of a kind of module, or None for per-layer generators."""

    def __init__(self, shared: nn.ModuleDict | None) -> None:
        self.shared = shared

    def __call__(self, kind: str) -> FiLMGenerator | None:
        if self.shared is None or kind not in self.shared:
            return None
        return self.shared[kind]  # type: ignore[return-value]

    def pair(self, kind: str) -> tuple[FiLMGenerator, FiLMGenerator] | None:
        down, up = self(f"{kind}_down"), self(f"{kind}_up")
        return None if down is None or up is None else (down, up)


def positions_after_padding(config: Any) -> int | None:
    """RoBERTa's and MPNet's position table: its rows start after the padding index (514
    rows hold 512 positions)."""
    rows = getattr(config, "max_position_embeddings", None)
    return None if rows is None else rows - (config.pad_token_id + 1)


class EncoderFamily:
    """One layout of pretrained encoder. Class methods only: the family holds no state;
    ``encoder`` arguments are the CA-MTL encoder, which registered the family's parts
    (``embeddings``, ``extras``)."""

    name: ClassVar[str] = ""
    model_types: ClassVar[tuple[str, ...]] = ()
    layer: ClassVar[type[ConditionalLayer] | None] = None  # None: plain only
    # config fields holding the attention-probability and the other ("hidden") dropout
    attention_dropout_fields: ClassVar[tuple[str, ...]] = ("attention_probs_dropout_prob",)
    hidden_dropout_fields: ClassVar[tuple[str, ...]] = ("hidden_dropout_prob",)
    # names (suffixes) of the nn.Dropout modules on attention probabilities
    attention_dropout_modules: ClassVar[tuple[str, ...]] = ("attention.self.dropout",)
    takes_token_type_ids: ClassVar[bool] = True

    @classmethod
    def parts(cls, model: Any) -> PretrainedParts:
        raise NotImplementedError

    @classmethod
    def check_camtl(cls, config: Any) -> None:
        """Refuse (ConfigError) a variant of the family that CA-MTL's layer cannot run."""

    @classmethod
    def max_positions(cls, config: Any) -> int | None:
        """The longest input, in tokens, the encoder's position table covers (None: no
        table, positions are relative or rotary). A longer input fails in the forward pass."""
        return getattr(config, "max_position_embeddings", None)

    @classmethod
    def hidden_dropout(cls, config: Any) -> float:
        return float(getattr(config, cls.hidden_dropout_fields[0]))

    @classmethod
    def set_dropout(cls, model: nn.Module, attention: float | None, hidden: float | None) -> None:
        """Set the config fields, which CA-MTL's modules read, and the ``nn.Dropout``
        modules built from them (their p is fixed at construction); None keeps the
        pretrained value. An ``nn.Dropout`` with p = 0 draws no random numbers."""
        config: Any = model.config
        for fields, value in (
            (cls.attention_dropout_fields, attention),
            (cls.hidden_dropout_fields, hidden),
        ):
            if value is not None:
                for name in fields:
                    if hasattr(config, name):  # an unknown family may lack the field
                        setattr(config, name, value)
        for name, module in model.named_modules():
            if isinstance(module, nn.Dropout):
                is_attention = name.endswith(cls.attention_dropout_modules)
                value = attention if is_attention else hidden
                if value is not None:
                    module.p = value

    @classmethod
    def embed(
        cls,
        encoder: Any,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """The embeddings' output [B, L, d]."""
        return encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # type: ignore[no-any-return]

    @classmethod
    def context(cls, encoder: Any, hidden: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        """What every layer of one forward pass reads (None: nothing)."""
        return None

    @classmethod
    def finish(cls, encoder: Any, hidden: torch.Tensor) -> torch.Tensor:
        """After the last layer (a pre-norm family's final norm)."""
        return hidden


def refuse(reason: str) -> ConfigError:
    return ConfigError(f"key 'model.encoder': {reason}")
