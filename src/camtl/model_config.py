"""The model's own options: the pretrained encoder, the encoder kind and its options, the
heads.

A section of the run config (camtl.config), kept apart so that the model code reads its
options without importing the whole run configuration. The encoder kinds are a registry
(camtl.modeling.shared_encoder): ``model.architecture`` names one, and each kind's options
(its own dataclass) sit under ``model.<kind>``, e.g. CA-MTL's under ``model.camtl``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from camtl.errors import ConfigError

if TYPE_CHECKING:
    from camtl.registry import Registry

DEFAULT_ENCODER = "minilm"  # alias of the offline all-MiniLM-L6-v2 package (see camtl.data.assets)


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
    ``hidden_dropout_prob``, or the family's fields); None keeps the pretrained config's
    value, the default for both: 0 attention dropout trains faster but cost the fully
    fine-tuned models accuracy at convergence (docs/decisions.md, "Attention dropout").
    dropout_masks: where hidden and head dropout draw their masks (camtl.modeling.dropout):
    ``bits`` (16 random bits an element, p rounded to a multiple of 1/65536; half the cost
    of torch's masks on CPU), ``bernoulli`` (torch's own dropout: the runs made before this
    option, bit for bit), or ``auto``: bits on CPU, torch's elsewhere.
    freeze_embeddings, freeze_layers: whether the embeddings, and how many bottom
    Transformer layers (or ``half`` of them), keep their pretrained weights fixed; None:
    the encoder kind's default, nothing frozen for plain and camtl (the paper froze the
    embeddings and ``half``). A built model records the values it applied here, so a
    saved run or model always names its freezing (see ``fill_legacy_freezing``).
    architecture: the encoder kind (a registered name: ``plain``, ``camtl``, ...).
    options: each encoder kind's options (its ``Options`` dataclass) by kind name, written
    as ``model.<kind>`` beside the other keys; an absent kind has its defaults.
    """

    encoder: str = DEFAULT_ENCODER
    architecture: str = "plain"
    pooling: Literal["mean", "cls"] = "mean"
    dropout: float = 0.1
    attention: Literal["auto", "sdpa", "eager"] = "auto"
    attention_dropout: float | None = None
    hidden_dropout: float | None = None
    dropout_masks: Literal["auto", "bernoulli", "bits"] = "auto"
    freeze_embeddings: bool | None = None
    freeze_layers: int | Literal["half"] | None = None
    options: dict[str, Any] = field(default_factory=dict, metadata={"inline": True})

    def validate(self, path: str, where: str) -> None:
        for key in ("dropout", "attention_dropout", "hidden_dropout"):
            value = getattr(self, key)
            if value is not None and not 0.0 <= value < 1.0:
                raise ConfigError.at(where, f"key '{path}.{key}': must be in [0, 1)")
        if isinstance(self.freeze_layers, int) and self.freeze_layers < 0:
            raise ConfigError.at(where, f"key '{path}.freeze_layers': must be >= 0")
        from camtl.structured import from_dict

        kinds = _encoder_kinds()
        if self.architecture not in kinds.names():
            raise ConfigError.at(
                where,
                f"key '{path}.architecture': {self.architecture!r} is not allowed "
                f"(allowed: {', '.join(map(repr, kinds.names()))})",
            )
        for name, options in self.options.items():
            kind = kinds.get(name)
            if kind is None:
                known = [f.name for f in dataclasses.fields(self) if f.name != "options"]
                known += [
                    k
                    for k in kinds.names()
                    if (cls := kinds.get(k)) is not None and dataclasses.fields(cls.Options)
                ]
                raise ConfigError.at(
                    where, f"unknown key '{path}.{name}' (known keys: {', '.join(known)})"
                )
            if isinstance(options, dict):
                self.options[name] = from_dict(kind.Options, options, f"{path}.{name}", where)
        kind = kinds.get(self.architecture)
        if kind is not None and dataclasses.fields(kind.Options):  # recorded in full
            self.options.setdefault(self.architecture, kind.Options())


def _encoder_kinds() -> Registry[Any]:
    """The registry of encoder kinds, the built-in ones registered (imported here, when a
    config is checked: the model code sits above the config in the layers)."""
    import camtl.modeling  # noqa: F401  (registers the built-in encoder kinds)
    from camtl.modeling.shared_encoder import ENCODERS

    return ENCODERS


def section_in_use(model: dict[str, Any]) -> dict[str, Any]:
    """A model section (plain data) without the options of encoder kinds other than its
    own, which its model never reads: what two runs must share to have the same model."""
    kinds = _encoder_kinds()
    architecture = model.get("architecture", "plain")
    return {k: v for k, v in model.items() if k == architecture or kinds.get(k) is None}


def fill_legacy_freezing(model: ModelConfig, num_layers: Callable[[], int | None]) -> None:
    """The freezing of a run or model saved before issue 38, whose config left it unset:
    CA-MTL then froze the embeddings and the bottom half (``num_layers() // 2``, asked only
    then; ``half`` where the depth cannot be read). Since then a built model records the
    freezing it applied (camtl.modeling.model), so an unset value in a saved file can only
    be that; resuming, reloading or adding a task keeps what the run trained with. Only the
    built-in ``camtl`` kind changed its default; a kind registered elsewhere is left as
    saved."""
    if model.architecture != "camtl":
        return  # every other kind froze nothing by default, then as now
    if model.freeze_embeddings is None:
        model.freeze_embeddings = True
    if model.freeze_layers is None:
        depth = num_layers()
        model.freeze_layers = "half" if depth is None else depth // 2
