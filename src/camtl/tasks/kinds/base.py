"""The TaskKind contract: everything that differs between kinds of task, in one class.

A kind (classification, regression, token tagging, span QA, ...) says how many text columns
its tasks read, which metrics they may ask for, how a source record becomes a validated
example, how examples become features, which batch fields carry its inputs and labels, its
head and loss, how outputs become predictions and readable answers, and how uncertain the
model is about an example (for MT-Uncertainty). The rest of the library dispatches on the
registry (``camtl.tasks.kinds.get_kind``) and never branches on the kind's name.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch

from camtl.registry import NoOptions
from camtl.tasks.kinds.heads import TaskHead
from camtl.tasks.kinds.records import Record
from camtl.validation import config_key, require


class TaskSpec(Protocol):
    """What a kind reads of a task's spec (camtl.tasks.spec.TaskSpec has it all); a
    protocol, so that the kinds do not depend on the spec module that dispatches to them."""

    name: str
    type: str
    text_columns: list[str]
    label_column: str
    labels: list[str] | None
    metrics: list[str]
    max_length: int
    doc_stride: int | None
    options: dict[str, Any]

    @property
    def is_pair(self) -> bool: ...


Metric = Callable[[Sequence[Any], Sequence[Any]], float]
Feature = dict[str, Any]
Uncertainty = tuple[np.ndarray, np.ndarray]  # (normalised to [0, 1], raw entropy)


@dataclass(frozen=True)
class BatchField:
    """A tensor of the batch filled from a feature key of the same name.

    layout: ``scalar`` one value per row; ``tokens`` one per token, padded like the input
    ids; ``vector`` a list per row, padded to the longest in the batch. ``fill`` stands in
    for padding and for rows of other kinds (which never read it). ``role``: ``label`` fields
    reach only the loss and are left out at inference; ``input`` fields reach the head.
    """

    name: str
    dtype: torch.dtype
    fill: float
    layout: Literal["scalar", "tokens", "vector"] = "scalar"
    role: Literal["label", "input"] = "label"


@dataclass
class KindSample:
    """A few records of a made-up task of the kind: its worked example in docs/tasks.md and
    what tests/test_kinds.py trains, evaluates and predicts with, for every registered kind."""

    text_columns: list[str]
    label_column: str
    records: list[Record]


@dataclass
class ScoringContext:
    """What uncertainty scoring needs besides the head's outputs."""

    mc_samples: int  # MC-dropout passes, for kinds that sample
    generator: torch.Generator  # the seeded source of their dropout masks
    prior: float = 1.0  # the kind's ``uncertainty_prior`` of the task's train examples


class TaskKind:
    """One kind of task; subclasses register with ``@register_kind("name")``."""

    name: ClassVar[str]
    # the numbers of text columns a task of this kind may read, e.g. (1, 2) for a text or pair
    text_arity: ClassVar[tuple[int, ...]]
    # name -> metric(predictions, references); the first of a spec's metrics is its primary
    metrics: ClassVar[dict[str, Metric]]
    default_metrics: ClassVar[tuple[str, ...]]
    # the metrics of ``metrics`` where a smaller value is better; every other is higher-better
    lower_is_better: ClassVar[frozenset[str]] = frozenset()
    # whether tasks have a label vocabulary (``spec.labels``, inferred from train if unset)
    has_labels: ClassVar[bool] = False
    batch_fields: ClassVar[tuple[BatchField, ...]] = ()
    # whether encoding needs a fast tokenizer (word ids, character offsets)
    needs_fast_tokenizer: ClassVar[bool] = False
    # whether a feature is one whole example (False: examples are split into windows)
    one_feature_per_example: ClassVar[bool] = True
    # whether the head can score another task's examples (MT-Uncertainty's proxies)
    can_proxy: ClassVar[bool] = False
    # the example fields whose content decides its fold for cross-fitted teachers
    # (camtl.data.folds): its text, not its labels or ids, so that one text falls in one
    # fold however it is labelled; None: tasks of the kind cannot be cross-fitted
    fold_fields: ClassVar[tuple[str, ...] | None] = None
    # task-level options of this kind (``tasks[].options``), a dataclass
    Options: ClassVar[type] = NoOptions

    def __init__(self) -> None:
        self._options_cache: dict[str, Any] = {}

    # -- the spec ------------------------------------------------------------------------
    def check_spec(self, spec: TaskSpec, path: str, prefix: str) -> None:
        """Kind-specific checks of a spec beyond arity and metrics (``camtl.validation``'s
        ``require(condition, config_key(f"{path}.KEY", prefix), message)``: a ConfigError)."""
        require(
            not spec.labels or self.has_labels,
            config_key(f"{path}.labels", prefix),
            f"a {self.name} task has no labels",
        )

    def options(self, spec: TaskSpec) -> Any:
        """The spec's validated options (the kind's Options dataclass). Kinds read them
        per record, so each distinct options mapping is converted once."""
        if isinstance(spec.options, self.Options):
            return spec.options
        key = json.dumps(spec.options or {}, sort_keys=True, default=str)
        if key not in self._options_cache:
            from camtl.structured import from_dict

            self._options_cache[key] = from_dict(
                self.Options, dict(spec.options or {}), "options", spec.name
            )
        return self._options_cache[key]

    def input_columns(self, spec: TaskSpec) -> dict[str, str]:
        """The fields a prediction request carries: column -> ``text`` or ``words``."""
        return {column: "text" for column in spec.text_columns}

    def sample(self) -> KindSample:
        """A few labelled records of a made-up task of this kind (at least two labels)."""
        raise NotImplementedError

    # -- records -> examples -------------------------------------------------------------
    def record_labels(self, spec: TaskSpec, record: Record) -> list[str]:
        """The label names a record uses (label vocabulary inference)."""
        return []

    def example(
        self, spec: TaskSpec, record: Record, split: str, index: dict[str, int], labels: list[str]
    ) -> dict[str, Any]:
        """A validated example of a labelled record; ``index`` maps label name -> index."""
        raise NotImplementedError

    def unlabelled_example(self, spec: TaskSpec, record: Record, split: str) -> dict[str, Any]:
        """An example of a prediction input: its text fields only."""
        raise NotImplementedError

    # -- examples -> features ------------------------------------------------------------
    def encode(
        self, spec: TaskSpec, examples: list[dict], tokenizer: Any
    ) -> tuple[list[Feature], int]:
        """Features (model inputs and this kind's batch fields) and how many were cut."""
        raise NotImplementedError

    # -- the model -----------------------------------------------------------------------
    def build_head(
        self, spec: TaskSpec, hidden_size: int, num_labels: int, dropout: float, pooling: str
    ) -> TaskHead:
        raise NotImplementedError

    # -- outputs -> predictions ----------------------------------------------------------
    def decode(
        self,
        spec: TaskSpec,
        labels: list[str],
        examples: list[dict],
        features: list[dict],
        outputs: list[np.ndarray],
    ) -> list[Any]:
        """Predictions in the form this kind's metrics take."""
        raise NotImplementedError

    def references(self, spec: TaskSpec, labels: list[str], examples: Sequence[dict]) -> list[Any]:
        """Gold answers in the same form as ``decode``'s predictions."""
        raise NotImplementedError

    def baseline(
        self, spec: TaskSpec, labels: list[str], train: Sequence[dict], examples: Sequence[dict]
    ) -> list[Any]:
        """A trivial predictor's predictions on ``examples`` (majority, mean, ...)."""
        raise NotImplementedError

    def readable(
        self,
        spec: TaskSpec,
        labels: list[str],
        example: dict,
        prediction: Any,
        output: np.ndarray | None,
    ) -> dict[str, Any]:
        """A prediction as ``camtl predict`` writes it (``output``: None for windowed kinds)."""
        raise NotImplementedError

    def empty_fields(self, spec: TaskSpec) -> str:
        """Which input fields may be empty, in one sentence (for docs and the API)."""
        return "No field may be empty."

    def prediction_schema(self) -> dict[str, Any]:
        """The JSON Schema of one prediction as ``readable`` gives it (the server's API
        contract)."""
        raise NotImplementedError

    # -- MT-Uncertainty ------------------------------------------------------------------
    def uncertainty_prior(self, train_examples: Sequence[dict]) -> float:
        """A statistic of the train split that ``uncertainty`` normalises by."""
        return 1.0

    def uncertainty(
        self,
        head: TaskHead,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        inputs: dict[str, torch.Tensor],
        features: list[dict],
        num_labels: int,
        context: ScoringContext,
    ) -> Uncertainty:
        """Per-row entropy of the model's prediction, normalised to [0, 1] and raw."""
        raise NotImplementedError


# a prediction's {label: probability} object (classification, multi-label)
PROBABILITY_PER_LABEL: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": "number"},
    "description": "each label's probability",
}


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax over the last axis."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


_KINDS: dict[str, TaskKind] = {}


def register_kind(name: str) -> Callable[[type[TaskKind]], type[TaskKind]]:
    """Class decorator: make a TaskKind subclass available as ``type: name`` in configs."""

    def decorate(cls: type[TaskKind]) -> type[TaskKind]:
        cls.name = name
        if not dataclasses.is_dataclass(cls.Options):
            raise TypeError(f"{cls.__name__}.Options must be a dataclass")
        _KINDS[name] = cls()
        return cls

    return decorate


def kind_names() -> list[str]:
    return list(_KINDS)


def get_kind(name: str) -> TaskKind:
    """The registered kind ``name``; KeyError names the known ones."""
    if name not in _KINDS:
        raise KeyError(f"unknown task kind {name!r} (known: {', '.join(_KINDS)})")
    return _KINDS[name]


def higher_is_better(metric: str) -> bool:
    """The direction a metric declares (``TaskKind.lower_is_better``); an unknown name is
    an error, never a silent guess."""
    known = False
    for kind in _KINDS.values():
        if metric in kind.lower_is_better:
            return False
        known = known or metric in kind.metrics
    if not known:
        raise KeyError(f"unknown metric {metric!r}")
    return True


def all_batch_fields() -> list[BatchField]:
    """Every registered kind's batch fields, each name once, in registration order."""
    seen: dict[str, BatchField] = {}
    for kind in _KINDS.values():
        for batch_field in kind.batch_fields:
            if seen.setdefault(batch_field.name, batch_field) != batch_field:
                raise TypeError(
                    f"batch field {batch_field.name!r} is declared twice with different "
                    "dtype, fill, layout or role"
                )
    return list(seen.values())
