"""DeBERTa-v2 and v3: a post-norm block whose attention scores add the disentangled
content-to-position and position-to-content terms; CA-MTL's conditional bias joins them.

The disentangled terms come from the pretrained attention module's own
``disentangled_attention_bias`` and the library's ``build_relative_position``: the bucket
arithmetic is DeBERTa's definition, and copying it would let it drift from the weights'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from camtl.modeling.families import register_family
from camtl.modeling.families.base import EncoderFamily, PretrainedParts, refuse
from camtl.modeling.families.bert import BertLayer


@dataclass
class RelativePositions:
    """What every layer of one pass reads: relative positions [1, L, L] and the
    (normalised) relative embeddings [2k, d]; None without relative attention."""

    positions: torch.Tensor | None
    embeddings: torch.Tensor | None


class DebertaV2Layer(BertLayer):
    """BERT's block under DeBERTa's names (query_proj, key_proj, value_proj), the
    disentangled terms added to the scores."""

    def __init__(self, base: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(base, config, *args, **kwargs)
        kinds = base.attention.self.pos_att_type or []
        self.scale_factor = 1 + ("c2p" in kinds) + ("p2c" in kinds)

    def project(self, hidden):
        attn = self.base.attention.self
        projections = (attn.query_proj, attn.key_proj, attn.value_proj)
        return tuple(self.split_heads(p(hidden)) for p in projections)

    def scores(self, q, k, mask_bias, context: RelativePositions):
        attn = self.base.attention.self
        bias = mask_bias
        if attn.relative_attention and context.embeddings is not None:
            b, h, length, d = q.shape
            relative = attn.disentangled_attention_bias(
                q.reshape(b * h, length, d),
                k.reshape(b * h, length, d),
                context.positions,
                attn.pos_dropout(context.embeddings),
                self.scale_factor,
            )
            bias = bias + relative.view(b, h, length, length)
        # scores are q k^T / sqrt(d_head * scale_factor): attention divides by sqrt(d_head)
        return q * self.scale_factor**-0.5, bias


@register_family("deberta-v2")
class DebertaV2Family(EncoderFamily):
    name = "deberta-v2"
    layer = DebertaV2Layer

    @classmethod
    def parts(cls, model: Any) -> PretrainedParts:
        encoder = model.encoder
        extras = {}
        if getattr(encoder, "relative_attention", False):
            extras["rel_embeddings"] = encoder.rel_embeddings
            if "layer_norm" in encoder.norm_rel_ebd:
                extras["rel_embeddings_norm"] = encoder.LayerNorm
        return PretrainedParts(
            model.embeddings, list(encoder.layer), extras, frozen_with_embeddings=tuple(extras)
        )

    @classmethod
    def check_camtl(cls, config: Any) -> None:
        if getattr(config, "conv_kernel_size", 0) > 0:
            raise refuse(
                "CA-MTL has no layer for DeBERTa-v2's convolution branch (conv_kernel_size > "
                "0, as in deberta-v2-xlarge); use model.architecture: plain"
            )

    @classmethod
    def max_positions(cls, config: Any) -> int | None:
        """DeBERTa-v3 adds no position table to its input (relative positions only)."""
        if getattr(config, "position_biased_input", True):
            return super().max_positions(config)
        return None

    @classmethod
    def embed(cls, encoder, input_ids, token_type_ids, attention_mask):
        # DeBERTa zeroes the padded positions' embeddings (its own forward passes the mask)
        return encoder.embeddings(
            input_ids=input_ids, token_type_ids=token_type_ids, mask=attention_mask
        )

    @classmethod
    def context(
        cls, encoder: Any, hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> RelativePositions:
        from transformers.models.deberta_v2.modeling_deberta_v2 import build_relative_position

        table = getattr(encoder, "rel_embeddings", None)
        if table is None:
            return RelativePositions(None, None)
        config = encoder.config
        max_position = getattr(config, "max_relative_positions", -1)
        if max_position < 1:
            max_position = config.max_position_embeddings
        positions = build_relative_position(
            hidden,
            hidden,
            bucket_size=getattr(config, "position_buckets", -1),
            max_position=max_position,
        )
        embeddings = table.weight
        norm = getattr(encoder, "rel_embeddings_norm", None)
        return RelativePositions(positions, embeddings if norm is None else norm(embeddings))
