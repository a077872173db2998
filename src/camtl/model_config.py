"""The model's own options: the encoder, plain or CA-MTL, and CA-MTL's conditional modules.

A section of the run config (camtl.config), kept apart so that the model code reads its
options without importing the whole run configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from camtl.errors import ConfigError

DEFAULT_ENCODER = "minilm"  # alias of the offline all-MiniLM-L6-v2 package (see camtl.data.assets)


@dataclass
class CamtlConfig:
    """CA-MTL's conditional modules: one switch per row of the paper's Table 3.1, and the
    alternative readings in docs/decisions.md (``*_form``). Used when ``model.architecture: camtl``.

    task_embedding_dim: width of z feeding every FiLM generator; None = the hidden size (the
    paper).
    generators: "per_layer" (the paper: every conditioned module of every layer has its own
    FiLM generator) or "shared" (one generator per kind of module, shared by the layers and
    fed the task vector mixed with a layer embedding, as HyperFormer does). Per-layer
    generators with a d-wide z cost 1.30x BERT-base's parameters for 9 tasks; shared ones
    keep a d-wide z at 1.13x.
    layer_embedding_dim: width of the layer embedding of shared generators.
    attention_blocks: N diagonal blocks of size ceil(max_length / N); None = hidden / max_length.
    cln_from_layer: first layer whose LayerNorms are conditional; None = the upper half.
    bottleneck: "base" (in the top ``bottleneck_layers`` layers), "large" (a side chain
    across all layers) or "none".
    """

    task_embedding_dim: int | None = None
    generators: Literal["per_layer", "shared"] = "shared"
    layer_embedding_dim: int = 64
    conditional_attention: bool = True
    attention_form: Literal["paper", "authors"] = "paper"
    attention_blocks: int | None = None
    max_length: int = 128
    conditional_alignment: bool = True
    alignment_form: Literal["matrix", "elementwise"] = "matrix"
    conditional_layer_norm: bool = True
    cln_from_layer: int | None = None
    bottleneck: Literal["none", "base", "large"] = "base"
    bottleneck_layers: int = 1
    bottleneck_reduction: int = 3

    def blocks(self, hidden_size: int) -> int:
        return self.attention_blocks or max(1, round(hidden_size / self.max_length))

    def validate(self, path: str, where: str) -> None:
        for key in (
            "task_embedding_dim",
            "layer_embedding_dim",
            "attention_blocks",
            "max_length",
            "bottleneck_layers",
            "bottleneck_reduction",
        ):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError.at(where, f"key '{path}.{key}': must be a positive integer")


@dataclass
class ModelConfig:
    """The shared encoder and the heads.

    encoder: ``minilm`` (the offline default), a Hugging Face hub name, or a local folder.
    pooling: how classification/regression heads read a sequence (``mean`` or ``cls``).
    dropout: the heads' dropout.
    attention: the attention kernel: ``sdpa`` (torch's fused scaled_dot_product_attention),
    ``eager`` (explicit matmuls and softmax), or ``auto``: eager when training on CPU, sdpa
    otherwise (camtl.modeling.attention).
    attention_dropout, hidden_dropout: the encoder's dropout on attention probabilities and
    on hidden states (Hugging Face's ``attention_probs_dropout_prob`` and
    ``hidden_dropout_prob``); None keeps the pretrained config's values.
    freeze_layers: how many bottom Transformer layers keep their pretrained weights fixed.
    """

    encoder: str = DEFAULT_ENCODER
    architecture: Literal["plain", "camtl"] = "plain"
    pooling: Literal["mean", "cls"] = "mean"
    dropout: float = 0.1
    attention: Literal["auto", "sdpa", "eager"] = "auto"
    attention_dropout: float | None = None
    hidden_dropout: float | None = None
    freeze_embeddings: bool | None = None
    freeze_layers: int | None = None
    camtl: CamtlConfig = field(default_factory=CamtlConfig)

    def resolved_freezing(self, num_layers: int) -> tuple[bool, int]:
        """(freeze embeddings, frozen bottom layers); unset means the architecture's default:
        nothing frozen for ``plain``, embeddings and the bottom half for ``camtl``."""
        camtl = self.architecture == "camtl"
        embeddings = camtl if self.freeze_embeddings is None else self.freeze_embeddings
        layers = (
            (num_layers // 2 if camtl else 0) if self.freeze_layers is None else self.freeze_layers
        )
        return embeddings, layers

    def validate(self, path: str, where: str) -> None:
        for key in ("dropout", "attention_dropout", "hidden_dropout"):
            value = getattr(self, key)
            if value is not None and not 0.0 <= value < 1.0:
                raise ConfigError.at(where, f"key '{path}.{key}': must be in [0, 1)")
        if self.freeze_layers is not None and self.freeze_layers < 0:
            raise ConfigError.at(where, f"key '{path}.freeze_layers': must be >= 0")


def upgrade_model_section(model: dict[str, Any]) -> None:
    """Configs saved before generators could be shared had per-layer generators: say so,
    since the default is now "shared" (a run's model.json or config.yaml, model section)."""
    camtl = model.get("camtl")
    if isinstance(camtl, dict):
        camtl.setdefault("generators", "per_layer")
