"""Parameter accounting without weights: build the model on the meta device from a config."""

from __future__ import annotations

from typing import Any, Literal

import torch

from camtl.errors import ConfigError
from camtl.model_config import ModelConfig
from camtl.tasks.spec import SourceSpec, TaskSpec


def count_parameters(
    model_name: str,
    num_tasks: int,
    architecture: Literal["plain", "camtl"] = "camtl",
    num_labels: int = 3,
    options: Any = None,
) -> dict[str, Any]:
    """Total, trainable, encoder, per-task counts and total/encoder ratio, and the encoder
    kind's own facts (``SharedEncoder.description``, and ``summary`` in words).

    ``options``: the encoder kind's options (its ``Options`` dataclass; None: defaults).
    Only ``config.json`` is read (a folder holding nothing else will do, or a hub name);
    the model is built on the meta device, so no weights are downloaded or allocated.
    """
    from transformers import AutoModel

    from camtl.modeling.encoder import load_encoder_config
    from camtl.modeling.model import MultiTaskModel

    if num_tasks < 1:
        raise ConfigError("--tasks: must be at least 1")
    _, config = load_encoder_config(model_name, "--model")
    tasks = [
        TaskSpec(
            f"task{i}",
            "classification",
            ["text"],
            "label",
            [str(c) for c in range(num_labels)],
            source=SourceSpec(kind="files", paths={"train": "-"}),
        )
        for i in range(num_tasks)
    ]
    labels = {t.name: list(t.labels or []) for t in tasks}
    with torch.device("meta"):
        encoder = AutoModel.from_config(config)
        model = MultiTaskModel(
            encoder,
            tasks,
            labels,
            ModelConfig(
                encoder=model_name,
                architecture=architecture,
                options={} if options is None else {architecture: options},
            ),
        )
    counts: dict[str, Any] = dict(model.parameter_counts())
    counts.update(
        model=model_name,
        architecture=architecture,
        tasks=num_tasks,
        model_type=config.model_type,
        hidden_size=config.hidden_size,
        layers=config.num_hidden_layers,
    )
    counts.update(model.encoder.description())
    counts["summary"] = model.encoder.summary()
    return counts


def format_counts(counts: dict[str, Any]) -> str:
    lines = [
        f"model:        {counts['model']} ({counts['model_type']}, "
        f"{counts['layers']} layers, hidden {counts['hidden_size']})",
        f"architecture: {counts['architecture']}, {counts['tasks']} tasks"
        + (f" ({counts['summary']})" if counts.get("summary") else ""),
        f"encoder:      {counts['encoder']:>12,}  (the bare pretrained encoder)",
        f"total:        {counts['total']:>12,}",
        f"trainable:    {counts['trainable']:>12,}",
        f"heads:        {counts['heads']:>12,}",
        f"per task:     {counts['per_task']:>12,}  (a head and a task embedding row)",
        f"ratio:        {counts['ratio']:.4f}  (total / encoder)",
    ]
    return "\n".join(lines)
