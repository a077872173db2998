"""The model side of serving: validate request records, tokenize, run mixed-task batches.

One ``InferenceEngine`` holds the model of a run directory. ``prepare`` turns one request
(one task, its records) into features; ``run`` takes the prepared requests of several
tasks at once, sorts all their features by length, cuts them into forward passes of at most
``max_batch_tokens`` padded tokens, and decodes each request's predictions as ``camtl
predict`` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camtl.data.examples import to_examples
from camtl.data.tokenize import encode_examples
from camtl.device import resolve_device
from camtl.errors import CamtlError
from camtl.evaluation.decode import forward_features, readable_predictions
from camtl.export import load_model
from camtl.predict import run_precision


class RequestError(CamtlError):
    """A client's mistake: ``status`` is the HTTP status, the message names the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Prepared:
    """One request, tokenized: its task, examples and features."""

    task: str
    examples: list[dict]
    features: list[dict]
    truncated: int = 0

    @property
    def tokens(self) -> int:
        return sum(len(f["input_ids"]) for f in self.features)


@dataclass
class BatchStats:
    """What one call of ``InferenceEngine.run`` did, for the metrics."""

    passes: list[tuple[int, int]] = field(default_factory=list)  # (features, tasks) per pass


class InferenceEngine:
    def __init__(self, run_dir: Path, device: str = "cpu", max_batch_tokens: int = 8192) -> None:
        from transformers import AutoTokenizer

        self.run_dir = run_dir
        self.device = resolve_device(device)  # a --device value: cpu, cuda[:N], auto
        self.model = load_model(run_dir, self.device).eval()  # a run directory or ONNX export
        self.tokenizer = AutoTokenizer.from_pretrained(run_dir)
        self.precision = run_precision(run_dir, self.device)
        self.max_batch_tokens = max_batch_tokens
        self.specs = {spec.name: spec for spec in self.model.tasks}

    # -- requests -------------------------------------------------------------------------
    def tasks(self) -> list[dict[str, Any]]:
        """Every task: name, kind, the input fields a request carries, labels."""
        return [
            {
                "name": spec.name,
                "type": spec.type,
                "inputs": list(spec.kind.input_columns(spec)),
                "labels": list(self.model.labels.get(spec.name) or []),
            }
            for spec in self.specs.values()
        ]

    def check_records(self, task: str, records: Any) -> list[dict[str, Any]]:
        """The records of a request, checked against the task's input fields."""
        spec = self.specs[task]
        if not isinstance(records, list) or not records:
            raise RequestError(422, "inputs: must be a non-empty list of records")
        columns = spec.kind.input_columns(spec)
        checked = []
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise RequestError(422, f"inputs[{i}]: must be an object with {list(columns)}")
            for column, form in columns.items():
                where = f"inputs[{i}].{column}"
                if column not in record:
                    raise RequestError(422, f"{where}: missing (task {task} reads {list(columns)})")
                _check_value(record[column], form, where)
            checked.append({**{c: record[c] for c in columns}, "_file": "inputs", "_row": i})
        return checked

    def prepare(self, task: str, records: list[dict[str, Any]]) -> Prepared:
        spec = self.specs[task]
        try:
            examples = to_examples(spec, records, "input", labelled=False)
        except CamtlError as exc:  # a record the kind refuses: its message names the row
            raise RequestError(422, str(exc)) from None
        encoded = encode_examples(spec, examples, self.tokenizer, self.model.task_index[task])
        return Prepared(task, examples, encoded.features, encoded.truncated)

    # -- the model ------------------------------------------------------------------------
    def run(self, requests: list[Prepared]) -> tuple[list[list[dict[str, Any]]], BatchStats]:
        """Predictions of every request (in its records' order) and the passes it took."""
        items = [(r, f) for r, request in enumerate(requests) for f in range(len(request.features))]
        items.sort(key=lambda item: len(requests[item[0]].features[item[1]]["input_ids"]))
        outputs: list[list[np.ndarray | None]] = [[None] * len(r.features) for r in requests]
        stats = BatchStats()
        for chunk in self._passes(requests, items):
            features = [requests[r].features[f] for r, f in chunk]
            with torch.inference_mode():
                results = forward_features(
                    self.model,
                    features,
                    self.tokenizer.pad_token_id,
                    self.device,
                    self.precision,
                )
            for (r, f), output in zip(chunk, results):
                outputs[r][f] = output
            stats.passes.append((len(chunk), len({requests[r].task for r, _ in chunk})))
        return [self._decode(req, out) for req, out in zip(requests, outputs)], stats

    def _passes(
        self, requests: list[Prepared], items: list[tuple[int, int]]
    ) -> list[list[tuple[int, int]]]:
        """Length-sorted items cut so that rows x longest length <= max_batch_tokens."""
        passes: list[list[tuple[int, int]]] = []
        current: list[tuple[int, int]] = []
        for item in items:
            length = len(requests[item[0]].features[item[1]]["input_ids"])
            if current and (len(current) + 1) * length > self.max_batch_tokens:
                passes.append(current)
                current = []
            current.append(item)
        if current:
            passes.append(current)
        return passes

    def _decode(self, request: Prepared, outputs: list[Any]) -> list[dict[str, Any]]:
        labels = self.model.labels.get(request.task) or []
        return readable_predictions(
            self.specs[request.task], labels, request.examples, request.features, outputs
        )


def _check_value(value: Any, form: str, where: str) -> None:
    if form == "words":
        if isinstance(value, str):
            if not value.strip():
                raise RequestError(422, f"{where}: empty text")
            return
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(w, str) and w.strip() for w in value)
        ):
            raise RequestError(
                422, f"{where}: must be a non-empty list of words (or a space-separated string)"
            )
        return
    if not isinstance(value, str):
        raise RequestError(422, f"{where}: must be text, got {type(value).__name__}")
    if not value.strip():
        raise RequestError(422, f"{where}: empty text")
