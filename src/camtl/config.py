"""Run configuration: dataclasses that round-trip to YAML and fail early with the key path."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from camtl.distillation.config import DistillationConfig
from camtl.errors import CamtlError, ConfigError
from camtl.model_config import (  # the model's own options, part of a run config
    ModelConfig,
    fill_legacy_freezing,
)
from camtl.runfiles import CONFIG_FILE
from camtl.structured import from_dict, to_dict
from camtl.tasks.registry import resolve_task
from camtl.tasks.spec import TaskSpec, anchor_paths
from camtl.yamlio import read_yaml


@dataclass
class SamplerConfig:
    """Which task sampler builds the batches; ``options`` go to its own config dataclass."""

    name: str = "uniform"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class BalancerConfig:
    """How task losses combine: a registered balancer (camtl.balancing: equal, fixed,
    uncertainty, group_dro, lookahead_dro, famo, pcgrad, score_dro); ``options`` go to its
    own config dataclass."""

    name: str = "equal"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class EarlyStoppingConfig:
    """Stop when the aggregate that selects checkpoints (``select_by``) has not risen more
    than ``min_delta`` above its best for ``patience`` evaluations in a row."""

    patience: int = 3
    min_delta: float = 0.0

    def validate(self, path: str, where: str) -> None:
        if self.patience < 1:
            raise ConfigError.at(where, f"key '{path}.patience': must be a positive integer")
        if not (self.min_delta >= 0 and math.isfinite(self.min_delta)):
            raise ConfigError.at(where, f"key '{path}.min_delta': must be >= 0")

    def evaluations_without_gain(self, scores: list[float]) -> int:
        """How many of the last evaluations did not beat the best before them by more than
        ``min_delta`` (computed from the history, so a resumed run counts alike)."""
        best, count = -math.inf, 0
        for score in scores:
            if score > best + self.min_delta:
                best, count = score, 0
            else:
                count += 1
        return count

    def should_stop(self, scores: list[float]) -> bool:
        return self.evaluations_without_gain(scores) >= self.patience


@dataclass
class SamConfig:
    """A sharpness-aware step, one perturbation per task (camtl.training.sam).
    rho: the radius of each task's perturbation (SAM's; 0.05 in Foret et al.)."""

    rho: float = 0.05

    def validate(self, path: str, where: str) -> None:
        if not (self.rho >= 0 and math.isfinite(self.rho)):
            raise ConfigError.at(where, f"key '{path}.rho': must be a number >= 0")


@dataclass
class TrainingConfig:
    max_steps: int = 1000
    batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    # auto: bf16 where the hardware runs it fast, else fp32 (camtl.precision); YAML reads an
    # unquoted `no` as false, which means fp32 too
    mixed_precision: str | bool = "auto"
    # AdamW's kernel: auto = fused where torch has it for every parameter, else torch's
    # own choice; torch_default = torch's own choice (a loop over parameters on CPU,
    # foreach on CUDA), what camtl ran before this option (camtl.training.setup)
    optimizer_impl: Literal["auto", "fused", "foreach", "torch_default"] = "auto"
    # frozen layers' weights cast to the autocast dtype once, not at every forward pass
    # (bit-identical results); None: on for bf16 runs (camtl.modeling.frozen_cast)
    cast_frozen_once: bool | None = None
    batch_mode: Literal["mixed", "single_task"] = "mixed"
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    balancer: BalancerConfig = field(default_factory=BalancerConfig)
    eval_every: int = 200
    checkpoint_every: int | None = None
    log_every: int = 10
    select_by: Literal["mean", "worst"] = "mean"
    # stop before max_steps once the selected aggregate stops rising (None: never)
    early_stopping: EarlyStoppingConfig | None = None
    # mix each task's gold labels with a single-task teacher's outputs (None: no teachers)
    distillation: DistillationConfig | None = None
    # a sharpness-aware step, one perturbation per task (camtl.training.sam; None: off)
    sam: SamConfig | None = None
    num_threads: int | None = None

    def validate(self, path: str, where: str) -> None:
        from camtl.balancing.base import BALANCERS
        from camtl.sampling.base import SAMPLERS

        # the sampler's and balancer's names and options, checked with the rest of the file
        # (not when training builds them, after the run folder's checks)
        SAMPLERS.lookup(self.sampler.name, self.sampler.options, where)
        BALANCERS.lookup(self.balancer.name, self.balancer.options, where)
        sampler = SAMPLERS.get(self.sampler.name)
        if self.batch_mode == "single_task" and sampler is not None and sampler.selects_examples:
            raise ConfigError.at(
                where,
                f"key '{path}.batch_mode': 'single_task' cannot be used with the sampler "
                f"'{self.sampler.name}', which picks the most uncertain examples across tasks "
                "(use batch_mode: mixed)",
            )
        # not a Literal: YAML reads an unquoted `no` as false, which must mean fp32
        if self.mixed_precision is False:
            self.mixed_precision = "no"
        allowed = ("auto", "no", "bf16", "fp16")
        if self.mixed_precision not in allowed:
            raise ConfigError.at(
                where,
                f"key '{path}.mixed_precision': {self.mixed_precision!r} is not "
                f"allowed (allowed: {', '.join(map(repr, allowed))})",
            )
        for key in (
            "max_steps",
            "batch_size",
            "eval_batch_size",
            "gradient_accumulation_steps",
            "eval_every",
            "log_every",
        ):
            if getattr(self, key) < 1:
                raise ConfigError.at(where, f"key '{path}.{key}': must be a positive integer")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ConfigError.at(where, f"key '{path}.learning_rate': must be a positive number")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError.at(where, f"key '{path}.warmup_ratio': must be in [0, 1)")


@dataclass
class RunConfig:
    """A whole experiment: where it writes, the model, the tasks, the training recipe."""

    output_dir: str = "runs/demo"
    seed: int = 12
    model: ModelConfig = field(default_factory=ModelConfig)
    tasks: list[TaskSpec] = field(default_factory=list)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def validate(self, path: str, where: str) -> None:
        if not self.tasks:
            raise ConfigError.at(where, "key 'tasks': at least one task is required")
        seen: set[str] = set()
        for i, task in enumerate(self.tasks):
            if task.name in seen:
                raise ConfigError.at(
                    where, f"key 'tasks[{i}].name': task {task.name!r} appears twice"
                )
            seen.add(task.name)

    def precision(self, device: str = "cpu") -> str:
        """``training.mixed_precision`` resolved for this machine (``auto`` -> bf16 where
        the hardware runs it fast, else "no"); training, evaluation, prediction and
        add-task of this run all use it."""
        from camtl.precision import resolve_precision

        return resolve_precision(str(self.training.mixed_precision), device)

    def task(self, name: str) -> TaskSpec:
        for task in self.tasks:
            if task.name == name:
                return task
        raise ConfigError(
            f"unknown task {name!r} for this run (tasks: {', '.join(t.name for t in self.tasks)})"
        )


def config_from_dict(data: Any, where: str = "", base_dir: Path | None = None) -> RunConfig:
    """Build a RunConfig; task entries may be names, overrides, inline specs or files."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError.at(where, "expected a mapping at the top level")
    data = dict(data)
    raw_tasks = data.pop("tasks", None)
    if raw_tasks is None or raw_tasks == []:
        raise ConfigError.at(where, "key 'tasks': at least one task is required")
    if not isinstance(raw_tasks, list):
        raise ConfigError.at(where, "key 'tasks': expected a list of tasks")
    tasks = [resolve_task(ref, f"tasks[{i}]", where, base_dir) for i, ref in enumerate(raw_tasks)]
    if base_dir is not None:
        for task in tasks:
            anchor_paths(task, base_dir)
    return from_dict(RunConfig, {**data, "tasks": [to_dict(t) for t in tasks]}, "", where)


def load_saved_config(run_dir: Path) -> RunConfig:
    """The resolved config a run directory holds (a run saved before issue 38 with the
    freezing it trained with, camtl.model_config.fill_legacy_freezing)."""
    path = run_dir / CONFIG_FILE
    raw = read_yaml(path)
    config = config_from_dict(raw, str(path), run_dir)
    fill_legacy_freezing(config.model, lambda: _saved_encoder_depth(run_dir, config.model.encoder))
    return config


def _saved_encoder_depth(run_dir: Path, encoder: str) -> int | None:
    """The encoder's layer count: from the model the run saved, else from the encoder it
    names; None where neither can be read (then ``half`` stands for it)."""
    from transformers import AutoConfig

    from camtl.modeling.encoder import resolve_encoder_name
    from camtl.runfiles import ENCODER_CONFIG_DIR

    saved = run_dir / ENCODER_CONFIG_DIR
    try:
        source = str(saved) if saved.is_dir() else resolve_encoder_name(encoder)
        return int(AutoConfig.from_pretrained(source).num_hidden_layers)
    except (OSError, ValueError, AttributeError, CamtlError):
        return None


def load_task_file(path: str | Path) -> TaskSpec:
    """One task from a YAML file: a full definition, or a known name with overrides
    (``{name: snli, max_train_examples: 2000}``); data paths relative to the file."""
    path = Path(path)
    data = read_yaml(path)
    base_dir = path.parent.absolute()
    spec = resolve_task(data, "task", str(path), base_dir)
    anchor_paths(spec, base_dir)
    return spec


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a run config YAML; ``overrides`` are ``key.path=value`` strings (YAML values)."""
    path = Path(path)
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):  # before the overrides, which need a mapping
        raise ConfigError(f"{path}: expected a mapping at the top level")
    for item in overrides or []:
        apply_override(data, item)
    # absolute: anchored data paths must stay valid from any working directory
    return config_from_dict(data, str(path), path.parent.absolute())


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` inside nested dicts (value parsed as YAML); ``tasks[0].x`` indexes
    a list (a task given by name alone becomes ``{name: ...}``)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE (e.g. training.max_steps=50)")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
    node: Any = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = _override_child(node, part, item)
    node[parts[-1]] = value


def _override_child(node: dict[str, Any], part: str, item: str) -> dict[str, Any]:
    match = re.fullmatch(r"(\w+)\[(\d+)\]", part)
    if match is None:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: key '{part}' does not hold a mapping")
        return child
    name, index = match.group(1), int(match.group(2))
    items = node.get(name)
    if not isinstance(items, list) or index >= len(items):
        size = len(items) if isinstance(items, list) else 0
        raise ConfigError(f"override {item!r}: key '{name}' has no item {index} ({size} items)")
    if isinstance(items[index], str):
        items[index] = {"name": items[index]}
    if not isinstance(items[index], dict):
        raise ConfigError(f"override {item!r}: '{part}' does not hold a mapping")
    return items[index]


def config_to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)


def save_config(config: RunConfig, path: str | Path) -> None:
    Path(path).write_text(config_to_yaml(config), encoding="utf-8")
