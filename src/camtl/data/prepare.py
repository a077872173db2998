"""From task specs to tokenized features: what the trainer, evaluator and predictor share."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from camtl.data import feature_cache
from camtl.data.examples import load_task_examples
from camtl.data.feature_cache import cached_encode, tokenizer_fingerprint
from camtl.tasks.spec import TaskSpec

log = logging.getLogger("camtl")


@dataclass
class TaskData:
    """A task's data. ``spec`` is the task as configured, never changed by loading (a
    run's config.yaml records what the user wrote); ``labels`` are the label names in use:
    the spec's, a saved model's, or inferred from train."""

    spec: TaskSpec
    labels: list[str]
    examples: dict[str, list[dict]] = field(default_factory=dict)
    features: dict[str, list[dict]] = field(default_factory=dict)
    # rows left out under source.on_bad_rows: skip (file, row, split, error)
    skipped: list[dict] = field(default_factory=list)


def encode_split(
    task: TaskData, split: str, tokenizer: Any, task_id: int, fingerprint: str | None = None
) -> None:
    result = cached_encode(task.spec, task.examples[split], tokenizer, task_id, fingerprint)
    if result.truncated:
        log.warning(
            "task %s, split %s: %d of %d examples were longer than max_length=%d "
            "tokens and were truncated",
            task.spec.name,
            split,
            result.truncated,
            len(task.examples[split]),
            task.spec.max_length,
        )
    task.features[split] = result.features


def prepare_tasks(
    specs: list[TaskSpec],
    tokenizer: Any,
    splits: Iterable[str],
    labels: dict[str, list[str]] | None = None,
    encode: Iterable[str] | None = None,
) -> list[TaskData]:
    """Load, validate and tokenize every task (the specs are left as they are).

    ``labels`` pins the label lists (those of a saved model); ``encode`` names the splits to
    tokenize (default: all loaded), e.g. only ``dev`` when train is loaded for baselines.
    """
    tasks = []
    splits = tuple(splits)
    to_encode = set(splits if encode is None else encode)
    # once: every task shares the tokenizer (and only when the cache is used)
    fingerprint = tokenizer_fingerprint(tokenizer) if feature_cache.enabled() else None
    for task_id, spec in enumerate(specs):
        pinned = (labels or {}).get(spec.name)
        skipped: list[dict] = []
        examples, task_labels = load_task_examples(spec, splits, skipped, pinned)
        if skipped:
            log.warning(
                "task %s: %d bad rows skipped (source.on_bad_rows: skip), e.g. %s",
                spec.name,
                len(skipped),
                skipped[0]["error"],
            )
        task = TaskData(spec, task_labels or [], examples, skipped=skipped)
        for split in examples:
            if split in to_encode:
                encode_split(task, split, tokenizer, task_id, fingerprint)
        tasks.append(task)
    return tasks
