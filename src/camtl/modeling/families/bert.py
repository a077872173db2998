"""BERT-like post-norm blocks: bert, roberta, xlm-roberta, electra, camembert."""

from __future__ import annotations

from typing import Any

from camtl.modeling.families import register_family
from camtl.modeling.families.base import (
    EncoderFamily,
    PostNormLayer,
    PretrainedParts,
    activation,
    positions_after_padding,
    refuse,
)


class BertLayer(PostNormLayer):
    """BERT's names: attention.self.{query,key,value}, attention.output, intermediate,
    output."""

    def __init__(self, base: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(base, config, *args, **kwargs)
        self.act = activation(config.hidden_act)

    def project(self, hidden):
        attn = self.base.attention.self
        return tuple(self.split_heads(p(hidden)) for p in (attn.query, attn.key, attn.value))

    def probability_dropout(self):
        return self.base.attention.self.dropout.p  # model.attention_dropout sets it

    def attention_output(self, merged):
        out = self.base.attention.output
        return out.dropout(out.dense(merged))

    def feed_forward(self, attended):
        base = self.base
        return base.output.dropout(base.output.dense(self.act(base.intermediate.dense(attended))))

    def norms(self):
        return self.base.attention.output.LayerNorm, self.base.output.LayerNorm


# RoBERTa's layout: position ids count from the padding index (camtl: max_positions)
ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert")


@register_family("bert", "electra", *ROBERTA_LIKE)
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
    def max_positions(cls, config: Any) -> int | None:
        if config.model_type in ROBERTA_LIKE:
            return positions_after_padding(config)
        return super().max_positions(config)

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
