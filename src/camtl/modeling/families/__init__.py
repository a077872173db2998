"""Pretrained encoder families, one module each, registered by Hugging Face model type.

``family_for(model_type)`` gives the family of a loaded model (None where no module
knows it: ``plain`` still runs such a model through its own forward pass, CA-MTL refuses
it). Built in: BERT-like post-norm blocks (bert, roberta, xlm-roberta, electra, camembert),
MPNet, DistilBERT, DeBERTa-v2/v3 and ModernBERT (Ettin included).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from camtl.errors import ConfigError
from camtl.modeling.families.base import EncoderFamily, refuse

log = logging.getLogger("camtl")
FAMILIES: dict[str, type[EncoderFamily]] = {}


def register_family(*model_types: str) -> Callable[[type[EncoderFamily]], type[EncoderFamily]]:
    """Register a family under the Hugging Face ``model_type`` values that share its layout."""

    def decorate(cls: type[EncoderFamily]) -> type[EncoderFamily]:
        cls.model_types = model_types
        for model_type in model_types:
            FAMILIES[model_type] = cls
        return cls

    return decorate


def family_for(model_type: str) -> type[EncoderFamily] | None:
    return FAMILIES.get(model_type)


def camtl_model_types() -> list[str]:
    """Model types CA-MTL has a layer for."""
    return sorted(t for t, fam in FAMILIES.items() if fam.layer is not None)


def check_encoder(config: Any, name: str, architecture: str) -> None:
    """Refuse, with the reason, a model no encoder kind can run: not a text model, an
    encoder-decoder or decoder-only model (its tokens see only the left context), or under
    CA-MTL a family without a CA-MTL layer."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", "?")
    if getattr(config, "is_encoder_decoder", False):
        raise refuse(
            f"{name!r} is an encoder-decoder model ({model_type!r}); camtl needs an "
            "encoder-only model"
        )
    decoder_only = (
        model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    ) or getattr(config, "is_decoder", False)
    if decoder_only:
        raise refuse(
            f"{name!r} is a decoder-only model ({model_type!r}): each token sees only the "
            "tokens before it; camtl needs an encoder-only model"
        )
    if getattr(config, "vocab_size", None) is None or getattr(config, "hidden_size", None) is None:
        raise refuse(
            f"{name!r} ({model_type!r}) is not a text encoder (no vocabulary or hidden size)"
        )
    family = family_for(model_type)
    if architecture == "camtl" and (family is None or family.layer is None):
        raise refuse(
            f"{name!r} is a {model_type!r} model, which CA-MTL has no layer for "
            f"(it has: {', '.join(camtl_model_types())}); use model.architecture: plain"
        )
    if architecture == "camtl" and family is not None:
        family.check_camtl(config)


def position_limit(config: Any) -> int | None:
    """The longest input the encoder of ``config`` takes (None: no limit, or a model type no
    family knows)."""
    family = family_for(getattr(config, "model_type", ""))
    return None if family is None else family.max_positions(config)


def check_task_lengths(
    config: Any, tasks: Sequence[Any], name: str, key: str = "key 'tasks[{index}].max_length'"
) -> None:
    """Refuse a task whose ``max_length`` the encoder's position table cannot hold: its
    first long input would otherwise fail in the forward pass (training, predict, serve).
    ``key``: how the message names the setting (``{index}``: the task's)."""
    limit = position_limit(config)
    if limit is None:
        return
    for i, task in enumerate(tasks):
        if task.max_length > limit:
            raise ConfigError(
                f"{key.replace('{index}', str(i))} (task {task.name!r}): {task.max_length}, more "
                f"than the {limit} positions of the encoder {name!r}; at most {limit}"
            )


def fit_saved_lengths(config: Any, tasks: Sequence[Any], where: str) -> None:
    """A saved model whose task ``max_length`` the encoder's position table cannot hold
    (trained before training refused it) reads its inputs at the table's length: a longer
    input would fail in the forward pass, and no input it trained on was longer."""
    cap_task_lengths(position_limit(config), tasks, where)


def cap_task_lengths(limit: int | None, tasks: Sequence[Any], where: str) -> None:
    """``fit_saved_lengths`` given the limit itself (an ONNX export records it)."""
    if limit is None:
        return
    for task in tasks:
        if task.max_length > limit:
            log.warning(
                "%s: task %s has max_length %d, more than the %d positions of its encoder; "
                "its inputs are cut at %d",
                where,
                task.name,
                task.max_length,
                limit,
                limit,
            )
            task.max_length = limit
            if task.doc_stride is not None and task.doc_stride >= limit:
                task.doc_stride = limit // 2


# the built-in families register themselves
from camtl.modeling.families import (  # noqa: E402,F401
    bert,
    deberta_v2,
    distilbert,
    modernbert,
    mpnet,
)
