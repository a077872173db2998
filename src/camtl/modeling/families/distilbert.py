"""DistilBERT: a post-norm block with its own names (q_lin ... out_lin, sa_layer_norm,
ffn.lin1/lin2, output_layer_norm), no token types, dropout fields ``attention_dropout``
and ``dropout``."""

from __future__ import annotations

from typing import Any

import torch

from camtl.modeling.conditional import TaskRows
from camtl.modeling.families import register_family
from camtl.modeling.families.base import ConditionalLayer, EncoderFamily, PretrainedParts


class DistilBertLayer(ConditionalLayer):
    def forward(
        self,
        hidden: torch.Tensor,
        mask_bias: torch.Tensor,
        z: torch.Tensor,
        rows: TaskRows,
        context: Any = None,
    ) -> torch.Tensor:
        base = self.base
        attn = base.attention
        q, k, v = (self.split_heads(p(hidden)) for p in (attn.q_lin, attn.k_lin, attn.v_lin))
        merged = self.attention(q, k, v, mask_bias, z, rows, attn.dropout.p)
        attended = self.norm(
            self.cln_attention, base.sa_layer_norm, attn.out_lin(merged) + hidden, z, rows
        )
        ffn = base.ffn
        residual = ffn.dropout(ffn.lin2(ffn.activation(ffn.lin1(attended)))) + attended
        if self.bottleneck is not None:
            residual = residual + self.bottleneck(attended, z, rows)
        return self.norm(self.cln_output, base.output_layer_norm, residual, z, rows)


@register_family("distilbert")
class DistilBertFamily(EncoderFamily):
    name = "distilbert"
    layer = DistilBertLayer
    takes_token_type_ids = False
    attention_dropout_fields = ("attention_dropout",)
    hidden_dropout_fields = ("dropout",)
    attention_dropout_modules = ("attention.dropout",)

    @classmethod
    def parts(cls, model: Any) -> PretrainedParts:
        return PretrainedParts(model.embeddings, list(model.transformer.layer))

    @classmethod
    def embed(cls, encoder, input_ids, token_type_ids, attention_mask):
        return encoder.embeddings(input_ids=input_ids)
