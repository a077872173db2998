"""MultiTaskModel: one shared encoder, one head per task, save/load from a run directory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from camtl.device import resolve_device
from camtl.errors import CamtlError
from camtl.fileio import atomic_target, atomic_write_text
from camtl.hub_models import resolve_model
from camtl.model_config import ModelConfig, fill_legacy_freezing
from camtl.modeling.dropout import set_dropout_masks
from camtl.modeling.encoder import (
    disable_pooler,
    freeze_encoder,
    load_encoder_and_tokenizer,
    set_dropout,
)
from camtl.modeling.families import check_encoder, check_task_lengths, fit_saved_lengths
from camtl.modeling.shared_encoder import SharedEncoder, build_shared_encoder, resolved_freezing
from camtl.runfiles import ENCODER_CONFIG_DIR, EXPORT_FILE, MODEL_FILE, WEIGHTS_FILE
from camtl.structured import from_dict, to_dict
from camtl.tasks.kinds.heads import TaskHead
from camtl.tasks.spec import TaskSpec

FORMAT_VERSION = 1


@dataclass
class MultiTaskOutput:
    """loss: the mean over tasks present of each task's mean loss (None without labels)."""

    loss: torch.Tensor | None
    task_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    logits: dict[str, torch.Tensor] = field(default_factory=dict)
    rows: dict[str, torch.Tensor] = field(default_factory=dict)


class MultiTaskModel(nn.Module):
    def __init__(
        self,
        encoder: nn.Module,
        tasks: list[TaskSpec],
        labels: dict[str, list[str]],
        config: ModelConfig,
    ) -> None:
        super().__init__()
        encoder_config: Any = encoder.config  # the Hugging Face model's
        check_encoder(encoder_config, config.encoder, config.architecture)
        config = replace(config)  # its own: the freezing below is filled in
        self.config = config
        disable_pooler(encoder)
        set_dropout(encoder, config.attention_dropout, config.hidden_dropout)
        self.encoder: SharedEncoder = build_shared_encoder(config, encoder, len(tasks))
        self.encoder.set_attention(config.attention)
        self.tasks = list(tasks)
        self.labels = {k: list(v) for k, v in labels.items()}
        self.task_index = {t.name: i for i, t in enumerate(self.tasks)}
        hidden = self.encoder.config.hidden_size
        self.heads = nn.ModuleDict({t.name: self._build_head(t, hidden) for t in self.tasks})
        set_dropout_masks(self, config.dropout_masks)
        embeddings, layers = resolved_freezing(config, encoder_config.num_hidden_layers)
        freeze_encoder(self.encoder, embeddings, layers)
        # an unset value takes the default it resolved to, so the saved model (and the run's
        # config.yaml, camtl.training.setup) name their freezing whatever the defaults
        # become (camtl.model_config.fill_legacy_freezing)
        if config.freeze_embeddings is None:
            config.freeze_embeddings = embeddings
        if config.freeze_layers is None:
            config.freeze_layers = layers

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_encoder(
        cls, config: ModelConfig, tasks: list[TaskSpec], labels: dict[str, list[str]]
    ) -> tuple[MultiTaskModel, Any]:
        """A fresh model on a pretrained encoder; returns (model, tokenizer)."""
        encoder, tokenizer = load_encoder_and_tokenizer(config.encoder)
        check_task_lengths(encoder.config, tasks, config.encoder)
        return cls(encoder, tasks, labels, config), tokenizer

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        device: str | torch.device = "cpu",
        *,
        revision: str | None = None,
        token: str | None = None,
        cache_dir: str | Path | None = None,
    ) -> MultiTaskModel:
        """Reload a saved model (weights, tasks, label maps) from a run directory, or from a
        model pushed to the Hugging Face hub with ``camtl push``: ``"NAMESPACE/NAME"`` (a
        local folder of that spelling wins) at ``revision`` (a branch, tag or commit),
        downloaded into huggingface_hub's cache (``cache_dir``; ``token``: for a private
        repository, default ``$HF_TOKEN``). See camtl.hub_models."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel

        if not isinstance(device, torch.device):  # a --device value: cpu, cuda[:N], auto
            device = resolve_device(str(device))
        run_dir = resolve_model(name_or_path, revision, token=token, cache_dir=cache_dir)
        meta_path = run_dir / MODEL_FILE
        if not meta_path.is_file():
            raise CamtlError(
                f"{run_dir}: no saved model here ({MODEL_FILE} missing); is it a "
                "finished camtl run directory?"
            )
        if (run_dir / EXPORT_FILE).is_file():
            raise CamtlError(
                f"{run_dir}: an ONNX export (camtl export), which predict and serve read; "
                "this needs the run directory it was exported from"
            )
        config, tasks, labels = cls.describe_saved(read_saved_meta(meta_path), str(meta_path))
        encoder_dir = run_dir / ENCODER_CONFIG_DIR
        try:
            enc_config = AutoConfig.from_pretrained(encoder_dir)
        except (OSError, ValueError) as exc:
            raise CamtlError(
                f"{encoder_dir}: missing or unreadable encoder config ({str(exc).splitlines()[0]})"
            ) from None
        fill_legacy_freezing(config, lambda: enc_config.num_hidden_layers)  # saved before 38
        fit_saved_lengths(enc_config, tasks, str(run_dir))
        encoder = AutoModel.from_config(enc_config)
        model = cls(encoder, tasks, labels, config)
        weights = run_dir / WEIGHTS_FILE
        try:
            state = load_file(str(weights), device=str(device))
        except (OSError, SafetensorError) as exc:  # missing, truncated, not safetensors
            raise CamtlError(f"{weights}: missing or unreadable weights ({exc})") from None
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # a shape that camtl_model.json no longer describes
            first = str(exc).splitlines()[1:2] or [str(exc)]
            raise CamtlError(
                f"{weights}: weights do not match {MODEL_FILE} ({first[0].strip()})"
            ) from None
        if unexpected or [k for k in missing if "pooler" not in k]:
            raise CamtlError(
                f"{weights}: weights do not match the model "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return model.to(device).eval()

    @staticmethod
    def describe_saved(
        meta: dict[str, Any], where: str = MODEL_FILE
    ) -> tuple[ModelConfig, list[TaskSpec], dict[str, list[str]]]:
        """(model config, tasks, label maps) of a saved model's ``camtl_model.json``; a
        missing or mistyped part is one error naming the file and key."""
        for key, kind in (("model", dict), ("tasks", list), ("labels", dict)):
            if not isinstance(meta.get(key), kind):
                raise CamtlError(
                    f"{where}: key '{key}' missing or not a {kind.__name__}; "
                    "the saved model's description is damaged"
                )
        config = from_dict(ModelConfig, meta["model"], "model", where)
        tasks = [from_dict(TaskSpec, t, f"tasks[{i}]", where) for i, t in enumerate(meta["tasks"])]
        labels = {}
        for name, names in meta["labels"].items():
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise CamtlError(f"{where}: key 'labels.{name}' is not a list of names")
            if len(set(names)) != len(names):
                raise CamtlError(f"{where}: key 'labels.{name}' names a label twice")
            labels[name] = names
        return config, tasks, labels

    def save_pretrained(self, run_dir: str | Path, tokenizer: Any = None) -> None:
        """Write weights (safetensors), tasks and label maps, encoder config, tokenizer."""
        from safetensors.torch import save_file

        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_target(run_dir / WEIGHTS_FILE) as tmp:
            save_file(state, str(tmp))
        self.encoder.config.save_pretrained(run_dir / ENCODER_CONFIG_DIR)
        if tokenizer is not None:
            tokenizer.save_pretrained(run_dir)
        meta = {
            "format_version": FORMAT_VERSION,
            "model": to_dict(self.config),
            "tasks": [to_dict(t) for t in self.tasks],
            "labels": self.labels,
        }
        atomic_write_text(run_dir / MODEL_FILE, json.dumps(meta, indent=2))

    def add_task(
        self, spec: TaskSpec, labels: list[str], embedding: torch.Tensor | None = None
    ) -> int:
        """Append a task: a fresh head and, for CA-MTL, a task-embedding row (``embedding``,
        or a random one). The other tasks' parameters are untouched. Returns its index."""
        if spec.name in self.task_index:
            raise CamtlError(
                f"task {spec.name!r} is already in the model (tasks: {', '.join(self.task_index)})"
            )
        device = next(self.parameters()).device
        self.labels[spec.name] = list(labels)
        head = self._build_head(spec, self.encoder.config.hidden_size).to(device)
        set_dropout_masks(head, self.config.dropout_masks)
        self.heads[spec.name] = head
        self.encoder.add_task(embedding)
        self.tasks.append(spec)
        self.task_index[spec.name] = len(self.tasks) - 1
        return len(self.tasks) - 1

    def _build_head(self, spec: TaskSpec, hidden_size: int) -> TaskHead:
        num_labels = len(self.labels.get(spec.name) or []) or 1
        return spec.kind.build_head(
            spec, hidden_size, num_labels, self.config.dropout, self.config.pooling
        )

    # -- forward ------------------------------------------------------------------------
    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        task_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Hidden states [B, L, d] of the shared encoder (task_ids unused by the plain one)."""
        return self.encoder(input_ids, attention_mask, token_type_ids, task_ids)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        task_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        **fields: torch.Tensor,
    ) -> MultiTaskOutput:
        """``fields``: the batch fields of the task kinds (camtl.tasks.kinds.BatchField);
        a task's loss is computed when its kind's label fields are among them."""
        hidden = self.encode(input_ids, attention_mask, token_type_ids, task_ids)
        output = MultiTaskOutput(loss=None)
        for index in torch.unique(task_ids).tolist():
            task = self.tasks[index]
            kind = task.kind
            rows = (task_ids == index).nonzero(as_tuple=True)[0]
            head: TaskHead = self.heads[task.name]  # type: ignore[assignment]
            inputs = {f.name: fields[f.name][rows] for f in kind.batch_fields if f.role == "input"}
            logits = head(hidden[rows], attention_mask[rows], inputs)
            output.logits[task.name] = logits
            output.rows[task.name] = rows
            label_names = [f.name for f in kind.batch_fields if f.role == "label"]
            if label_names and all(fields.get(name) is not None for name in label_names):
                labels = {name: fields[name][rows] for name in label_names}
                output.task_losses[task.name] = head.loss(logits, labels)
        if output.task_losses:
            output.loss = torch.stack(list(output.task_losses.values())).mean()
        return output

    # -- accounting ---------------------------------------------------------------------
    def shared_parameters(self, which: str = "top_layer") -> list[nn.Parameter]:
        """The trainable parameters gradient-based balancers differentiate: the top
        layer's (``top_layer``), with the heads (``heads_and_top_layer``), or the whole
        encoder's (``all_shared``)."""
        params = list(self.encoder.pretrained_layers()[-1].parameters())
        if which == "heads_and_top_layer":
            params += list(self.heads.parameters())
        elif which == "all_shared":
            params = list(self.encoder.parameters())
        return [p for p in params if p.requires_grad]

    def parameter_counts(self) -> dict[str, int | float]:
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        encoder = self.encoder.pretrained_parameter_count()
        heads = {
            name: sum(p.numel() for p in head.parameters()) for name, head in self.heads.items()
        }
        per_task = sum(heads.values()) / max(1, len(heads))
        per_task += self.encoder.per_task_parameter_count()
        return {
            "total": total,
            "trainable": trainable,
            "encoder": encoder,
            "heads": sum(heads.values()),
            "per_task": round(per_task),
            "ratio": round(total / encoder, 4),
        }


def read_saved_meta(path: Path) -> dict[str, Any]:
    """A saved model's ``camtl_model.json`` as a mapping, or one error naming the file."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CamtlError(f"{path}: unreadable ({exc})") from None
    if not isinstance(meta, dict):
        raise CamtlError(f"{path}: not a camtl model description (a JSON object is expected)")
    version = meta.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise CamtlError(
            f"{path}: format_version {version!r}; this camtl reads up to {FORMAT_VERSION} "
            "(a newer camtl wrote it, or the file is damaged)"
        )
    return meta
