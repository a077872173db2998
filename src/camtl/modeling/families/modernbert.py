"""ModernBERT (and Ettin, which shares its model type): pre-norm blocks, rotary positions,
a fused Wqkv, a gated MLP, global attention every few layers and a sliding window in the
others, a final norm, no token types.

CA-MTL's modules sit where the post-norm families have them: the conditional LayerNorms
condition the block's two pre-norms (the first layer has none before attention), and the
bottleneck reads the normalised input of the MLP and adds to the residual beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from camtl.modeling.conditional import TaskRows
from camtl.modeling.families import register_family
from camtl.modeling.families.base import ConditionalLayer, EncoderFamily, PretrainedParts


@dataclass
class RotaryContext:
    """Per layer type ("full_attention", "sliding_attention"): (cos, sin) [1, L, d_head]
    and the additive window mask [1, 1, L, L] (None for full attention)."""

    angles: dict[str, tuple[torch.Tensor, torch.Tensor]]
    window: dict[str, torch.Tensor | None]


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding, computed in fp32 as the pretrained model does."""
    half = x.shape[-1] // 2
    x32 = x.float()
    rotated = torch.cat((-x32[..., half:], x32[..., :half]), dim=-1)
    return (x32 * cos + rotated * sin).to(x.dtype)


class ModernBertLayer(ConditionalLayer):
    def __init__(self, base: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(base, config, *args, **kwargs)
        if not isinstance(base.attn_norm, nn.LayerNorm):  # the first layer: no pre-norm
            self.cln_attention = None
        self.layer_type = base.attention_type

    def forward(
        self,
        hidden: torch.Tensor,
        mask_bias: torch.Tensor,
        z: torch.Tensor,
        rows: TaskRows,
        context: RotaryContext,
    ) -> torch.Tensor:
        base = self.base
        attn = base.attn
        normed = (
            self.norm(self.cln_attention, base.attn_norm, hidden, z, rows)
            if isinstance(base.attn_norm, nn.LayerNorm)
            else base.attn_norm(hidden)
        )
        b, length, _ = hidden.shape
        qkv = attn.Wqkv(normed).view(b, length, 3, self.heads, self.head_size)
        q, k, v = (part.transpose(1, 2) for part in qkv.unbind(dim=2))
        cos, sin = context.angles[self.layer_type]
        q, k = rotate(q, cos[:, None], sin[:, None]), rotate(k, cos[:, None], sin[:, None])
        window = context.window[self.layer_type]
        bias = mask_bias if window is None else mask_bias + window
        merged = self.attention(q, k, v, bias, z, rows, attn.attention_dropout)
        hidden = hidden + attn.out_drop(attn.Wo(merged))
        normed = self.norm(self.cln_output, base.mlp_norm, hidden, z, rows)
        out = hidden + base.mlp(normed)
        if self.bottleneck is not None:
            out = out + self.bottleneck(normed, z, rows)
        return out


@register_family("modernbert")
class ModernBertFamily(EncoderFamily):
    name = "modernbert"
    layer = ModernBertLayer
    takes_token_type_ids = False
    # attention_dropout is both the probabilities' dropout and the attention output's
    attention_dropout_fields = ("attention_dropout",)
    hidden_dropout_fields = ("mlp_dropout", "embedding_dropout")
    attention_dropout_modules = ("attn.out_drop",)

    @classmethod
    def parts(cls, model: Any) -> PretrainedParts:
        return PretrainedParts(
            model.embeddings,
            list(model.layers),
            {"final_norm": model.final_norm, "rotary_emb": model.rotary_emb},
        )

    @classmethod
    def max_positions(cls, config: Any) -> int | None:
        return None  # rotary positions: no table to run out of

    @classmethod
    def set_dropout(cls, model: nn.Module, attention: float | None, hidden: float | None) -> None:
        super().set_dropout(model, attention, hidden)
        if attention is not None:  # read at every forward pass, not an nn.Dropout
            for module in model.modules():
                if hasattr(module, "attention_dropout") and hasattr(module, "Wqkv"):
                    setattr(module, "attention_dropout", attention)  # noqa: B010

    @classmethod
    def hidden_dropout(cls, config: Any) -> float:
        return float(config.mlp_dropout)

    @classmethod
    def embed(cls, encoder, input_ids, token_type_ids, attention_mask):
        return encoder.embeddings(input_ids=input_ids)

    @classmethod
    def context(cls, encoder: Any, hidden: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        config = encoder.config
        length = hidden.shape[1]
        positions = torch.arange(length, device=hidden.device)
        angles: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        window: dict[str, torch.Tensor | None] = {}
        dtype = (
            torch.get_autocast_dtype(hidden.device.type)
            if torch.is_autocast_enabled(hidden.device.type)
            else hidden.dtype
        )
        for layer_type in set(config.layer_types):
            cos, sin = encoder.rotary_emb(hidden, positions[None], layer_type)
            angles[layer_type] = (cos.float(), sin.float())
            window[layer_type] = None
            if layer_type == "sliding_attention":
                far = (positions[None, :] - positions[:, None]).abs() > config.sliding_window
                window[layer_type] = (far.to(dtype) * (torch.finfo(dtype).min / 2))[None, None]
        return RotaryContext(angles, window)

    @classmethod
    def finish(cls, encoder: Any, hidden: torch.Tensor) -> torch.Tensor:
        return encoder.final_norm(hidden)  # type: ignore[no-any-return]
