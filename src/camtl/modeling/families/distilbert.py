"""DistilBERT: a post-norm block with its own names (q_lin ... out_lin, sa_layer_norm,
ffn.lin1/lin2, output_layer_norm), no token types, dropout fields ``attention_dropout``
and ``dropout``."""

from __future__ import annotations

from typing import Any

from camtl.modeling.families import register_family
from camtl.modeling.families.base import EncoderFamily, PostNormLayer, PretrainedParts


class DistilBertLayer(PostNormLayer):
    def project(self, hidden):
        attn = self.base.attention
        return tuple(self.split_heads(p(hidden)) for p in (attn.q_lin, attn.k_lin, attn.v_lin))

    def probability_dropout(self):
        return self.base.attention.dropout.p

    def attention_output(self, merged):
        return self.base.attention.out_lin(merged)  # DistilBERT has no dropout here

    def feed_forward(self, attended):
        ffn = self.base.ffn
        return ffn.dropout(ffn.lin2(ffn.activation(ffn.lin1(attended))))

    def norms(self):
        return self.base.sa_layer_norm, self.base.output_layer_norm


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
