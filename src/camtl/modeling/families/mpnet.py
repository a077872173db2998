"""MPNet: BERT's post-norm block under other names, and a relative position bias (T5's
buckets) that every layer adds to its attention scores."""

from __future__ import annotations

from typing import Any

import torch

from camtl.modeling.conditional import TaskRows
from camtl.modeling.families import register_family
from camtl.modeling.families.base import ConditionalLayer, EncoderFamily, PretrainedParts
from camtl.modeling.families.bert import activation


class MPNetLayer(ConditionalLayer):
    def __init__(self, base: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(base, config, *args, **kwargs)
        self.act = activation(config.hidden_act)

    def forward(
        self,
        hidden: torch.Tensor,
        mask_bias: torch.Tensor,
        z: torch.Tensor,
        rows: TaskRows,
        context: Any = None,
    ) -> torch.Tensor:
        base = self.base
        attn = base.attention.attn
        q, k, v = (self.split_heads(p(hidden)) for p in (attn.q, attn.k, attn.v))
        merged = self.attention(q, k, v, mask_bias + context, z, rows, attn.dropout.p)
        attended = self.norm(
            self.cln_attention,
            base.attention.LayerNorm,
            base.attention.dropout(attn.o(merged)) + hidden,
            z,
            rows,
        )
        ffn = base.output.dropout(base.output.dense(self.act(base.intermediate.dense(attended))))
        residual = ffn + attended
        if self.bottleneck is not None:
            residual = residual + self.bottleneck(attended, z, rows)
        return self.norm(self.cln_output, base.output.LayerNorm, residual, z, rows)


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
