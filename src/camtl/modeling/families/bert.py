"""BERT-like post-norm blocks: bert, roberta, xlm-roberta, electra, camembert."""

from __future__ import annotations

from typing import Any

import torch

from camtl.modeling.conditional import TaskRows
from camtl.modeling.families import register_family
from camtl.modeling.families.base import (
    ConditionalLayer,
    EncoderFamily,
    PretrainedParts,
    refuse,
)


def activation(name: Any) -> Any:
    """A config's activation: a name looked up in transformers, or the callable itself."""
    from transformers.activations import ACT2FN

    return ACT2FN[name] if isinstance(name, str) else name


class BertLayer(ConditionalLayer):
    """attention -> add & norm (conditional) -> feed-forward (+ bottleneck) -> add & norm."""

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
        attn = base.attention.self
        q, k, v = (self.split_heads(p(hidden)) for p in (attn.query, attn.key, attn.value))
        # the pretrained layer's own attention dropout (its p: model.attention_dropout)
        merged = self.attention(q, k, v, mask_bias, z, rows, attn.dropout.p)
        out = base.attention.output
        attended = self.norm(
            self.cln_attention, out.LayerNorm, out.dropout(out.dense(merged)) + hidden, z, rows
        )
        ffn = base.output.dropout(base.output.dense(self.act(base.intermediate.dense(attended))))
        residual = ffn + attended
        if self.bottleneck is not None:  # "base" variant: added before the layer's norm
            residual = residual + self.bottleneck(attended, z, rows)
        return self.norm(self.cln_output, base.output.LayerNorm, residual, z, rows)


@register_family("bert", "roberta", "xlm-roberta", "electra", "camembert")
class BertFamily(EncoderFamily):
    name = "bert"
    layer = BertLayer

    @classmethod
    def parts(cls, model: Any) -> PretrainedParts:
        extras = {}
        project = getattr(model, "embeddings_project", None)  # electra's embedding width
        if project is not None:
            extras["embeddings_project"] = project
        return PretrainedParts(model.embeddings, list(model.encoder.layer), extras)

    @classmethod
    def check_camtl(cls, config: Any) -> None:
        kind = getattr(config, "position_embedding_type", "absolute")
        if kind != "absolute":
            raise refuse(f"CA-MTL supports absolute position embeddings only, not {kind!r}")

    @classmethod
    def embed(cls, encoder, input_ids, token_type_ids, attention_mask):
        hidden = encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        project = getattr(encoder, "embeddings_project", None)
        return hidden if project is None else project(hidden)
