"""MPNet: BERT's post-norm block under other names, and a relative position bias (T5's
buckets) that every layer adds to its attention scores."""

from __future__ import annotations

from typing import Any

import torch

from camtl.modeling.families import register_family
from camtl.modeling.families.base import (
    EncoderFamily,
    PretrainedParts,
    positions_after_padding,
)
from camtl.modeling.families.bert import BertLayer


class MPNetLayer(BertLayer):
    """BERT's block under MPNet's names (attention.attn.{q,k,v,o}, attention.LayerNorm),
    the position bias added to the scores."""

    def project(self, hidden):
        attn = self.base.attention.attn
        return tuple(self.split_heads(p(hidden)) for p in (attn.q, attn.k, attn.v))

    def scores(self, q, k, mask_bias, context):
        return q, mask_bias + context

    def probability_dropout(self):
        return self.base.attention.attn.dropout.p

    def attention_output(self, merged):
        return self.base.attention.dropout(self.base.attention.attn.o(merged))

    def norms(self):
        return self.base.attention.LayerNorm, self.base.output.LayerNorm


@register_family("mpnet")
class MPNetFamily(EncoderFamily):
    name = "mpnet"
    layer = MPNetLayer
    takes_token_type_ids = False
    attention_dropout_modules = ("attention.attn.dropout",)

    @classmethod
    def parts(cls, model: Any) -> PretrainedParts:
        return PretrainedParts(
            model.embeddings,
            list(model.encoder.layer),
            {"relative_attention_bias": model.encoder.relative_attention_bias},
            frozen_with_embeddings=("relative_attention_bias",),
        )

    @classmethod
    def max_positions(cls, config: Any) -> int | None:
        return positions_after_padding(config)

    @classmethod
    def embed(cls, encoder, input_ids, token_type_ids, attention_mask):
        # positions count from the padding id, as the pretrained model's own forward does
        return encoder.embeddings(input_ids=input_ids)

    @classmethod
    def context(cls, encoder: Any, hidden: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        """The position bias [1, heads, L, L], the same for every layer."""
        from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

        length = hidden.shape[1]
        positions = torch.arange(length, device=hidden.device)
        relative = positions[None, :] - positions[:, None]
        buckets = MPNetEncoder.relative_position_bucket(relative, num_buckets=32)
        values = encoder.relative_attention_bias(buckets)  # [L, L, heads]
        return values.permute(2, 0, 1).unsqueeze(0)
