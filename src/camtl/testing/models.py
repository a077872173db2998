"""Tiny multi-task models for the test suite: four tasks of the built-in kinds, a batch
mixing them, and a CA-MTL model whose conditional modules are moved off their identity
initialisation (the helpers several test modules share)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoModel

from camtl.model_config import ModelConfig
from camtl.modeling import MultiTaskModel
from camtl.modeling.conditional_encoder import CamtlOptions, ConditionalEncoder
from camtl.tasks.spec import SourceSpec, TaskSpec

SRC = SourceSpec(kind="files", paths={"train": "unused.jsonl"})
TASKS = [
    TaskSpec("cls", "classification", ["text"], "label", ["a", "b", "c"], source=SRC),
    TaskSpec("reg", "regression", ["text"], "label", source=SRC),
    TaskSpec("tag", "token_tagging", ["tokens"], "tags", ["O", "B-X", "I-X"], source=SRC),
    TaskSpec("qa", "span_qa", ["question", "context"], "answers", source=SRC),
]
for _t in TASKS:
    _t.validate("", "")
LABELS = {"cls": ["a", "b", "c"], "tag": ["O", "B-X", "I-X"]}


def mixed_batch(vocab: int = 50, length: int = 9) -> dict[str, torch.Tensor]:
    """Eight rows, two per task of ``TASKS`` (in order), with labels; row 1 is padded."""
    g = torch.Generator().manual_seed(0)
    b = 8
    ids = torch.randint(5, vocab, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.long)
    mask[1, 6:] = 0
    ids[1, 6:] = 0
    task_ids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    cls = torch.full((b,), -100)
    cls[:2] = torch.tensor([2, 0])
    reg = torch.full((b,), float("nan"))
    reg[2:4] = torch.tensor([0.5, -1.0])
    tag = torch.full((b, length), -100)
    tag[4:6, 1:5] = torch.randint(0, 3, (2, 4), generator=g)
    start = torch.full((b,), -100)
    end = torch.full((b,), -100)
    start[6:], end[6:] = torch.tensor([2, 0]), torch.tensor([3, 0])
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(ids),
        "task_ids": task_ids,
        "cls_labels": cls,
        "reg_labels": reg,
        "tag_labels": tag,
        "start_positions": start,
        "end_positions": end,
    }


def padded_inputs(length: int = 12) -> dict[str, torch.Tensor]:
    """Three rows of random ids, two padded (from 7 and from 3): encoder inputs."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 50, (3, length), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def build_camtl(
    encoder_dir: Path, generators: Literal["per_layer", "shared"] = "shared", **model_cfg: Any
) -> MultiTaskModel:
    """A CA-MTL model (attention blocks of 16 tokens) of ``TASKS`` on the encoder in
    ``encoder_dir``."""
    config = ModelConfig(
        encoder=str(encoder_dir),
        architecture="camtl",
        options={"camtl": CamtlOptions(max_length=16, generators=generators)},
        **model_cfg,
    )
    return MultiTaskModel(AutoModel.from_pretrained(encoder_dir), TASKS, LABELS, config)


def randomize_conditional(encoder: ConditionalEncoder, seed: int = 0) -> None:
    """Move every conditional parameter away from its identity initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in encoder.conditional_modules():
            for param in module.parameters():
                param.add_(torch.randn(param.shape, generator=g) * 0.05)
