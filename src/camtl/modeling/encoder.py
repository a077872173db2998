"""Loading the shared encoder (hub name, local folder or the offline alias) and freezing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from camtl.errors import CamtlError, ConfigError
from camtl.modeling.families import check_encoder, family_for
from camtl.modeling.families.base import EncoderFamily
from camtl.runfiles import ENCODER_CONFIG_DIR, MODEL_FILE, TOKENIZER_FILE

if TYPE_CHECKING:
    from camtl.modeling.shared_encoder import SharedEncoder


def resolve_encoder_name(name: str) -> str:
    """Map the offline alias (``minilm``) to its cached folder; other names pass through."""
    from camtl.data.assets import resolve_encoder

    return resolve_encoder(name)


def load_encoder_config(name: str, key: str) -> tuple[str, Any]:
    """(resolved source, its AutoConfig); an unreadable config is one line naming ``key``."""
    from transformers import AutoConfig

    source = resolve_encoder_name(name)
    try:
        return source, AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        hint = "" if Path(source).exists() else " (no such folder, and the hub is unreachable?)"
        if (Path(source) / MODEL_FILE).is_file():
            hint = f" (a camtl run: its encoder's config is {Path(source) / ENCODER_CONFIG_DIR})"
        raise ConfigError(
            f"{key}: cannot load {name!r}{hint}: {str(exc).splitlines()[0]}"
        ) from None


def load_encoder_and_tokenizer(name: str) -> tuple[nn.Module, Any]:
    """Load a pretrained encoder and its tokenizer by hub name, local folder, or alias."""
    from transformers import AutoModel, AutoTokenizer

    source, config = load_encoder_config(name, "key 'model.encoder'")
    check_encoder(config, name, "plain")  # the architecture's own checks come with the model
    encoder = AutoModel.from_pretrained(source, config=config)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"key 'model.encoder': {name!r} has no fast tokenizer "
            "(tokenizer.json); camtl needs offsets and word ids"
        )
    disable_pooler(encoder)
    return encoder, tokenizer


def load_saved_tokenizer(folder: Path) -> Any:
    """The tokenizer a run or an ONNX export saved. Without its ``tokenizer.json``,
    transformers quietly builds one of a few special tokens, every word ``[UNK]``: wrong
    predictions at exit 0. Refused in one line instead."""
    from transformers import AutoTokenizer

    path = folder / TOKENIZER_FILE
    if not path.is_file():
        raise CamtlError(f"{path}: missing (the run's tokenizer); the folder is incomplete")
    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise CamtlError(f"{path}: unreadable tokenizer ({str(exc).splitlines()[0]})") from None


def disable_pooler(encoder: nn.Module) -> None:
    """Freeze the pretrained pooler: heads pool themselves, so it never gets a gradient."""
    pooler = getattr(encoder, "pooler", None)
    if pooler is not None:
        for param in pooler.parameters():
            param.requires_grad_(False)


def set_dropout(encoder: nn.Module, attention: float | None, hidden: float | None) -> None:
    """Set a pretrained Hugging Face encoder's attention-probability and hidden dropout
    before the shared encoder is built on it (``model.attention_dropout`` /
    ``model.hidden_dropout``; None keeps the pretrained value), where its family keeps
    them (camtl.modeling.families)."""
    config: Any = encoder.config
    family = family_for(config.model_type) or EncoderFamily
    family.set_dropout(encoder, attention, hidden)


def freeze_encoder(encoder: SharedEncoder, freeze_embeddings: bool, freeze_layers: int) -> None:
    """Keep the embeddings and/or the bottom ``freeze_layers`` layers at pretrained values.

    CA-MTL's conditional modules always train, also inside frozen layers.
    """
    layers = encoder.pretrained_layers()
    if freeze_layers and not layers:
        raise ConfigError(
            "key 'model.freeze_layers': camtl cannot find the layer list of a "
            f"{encoder.config.model_type!r} model; leave it at 0"
        )
    if freeze_layers > len(layers):
        raise ConfigError(
            f"key 'model.freeze_layers': {freeze_layers} is more than the "
            f"encoder's {len(layers)} layers"
        )
    if freeze_embeddings:
        for module in [encoder.embeddings, *encoder.position_modules()]:
            for param in module.parameters():
                param.requires_grad_(False)
    for layer in layers[:freeze_layers]:
        for param in layer.parameters():
            param.requires_grad_(False)
    for module in encoder.conditional_modules():
        for param in module.parameters():
            param.requires_grad_(True)
