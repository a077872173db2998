"""The model side of serving: validate request records, tokenize, run mixed-task batches.

One ``InferenceEngine`` holds the model of a run directory. ``prepare`` turns one request
(one task, its records) into features; ``run`` takes the prepared requests of several
tasks at once, sorts all their features by length, cuts them into forward passes of at most
``max_batch_tokens`` padded tokens, and decodes each request's predictions as ``camtl
predict`` writes them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from camtl.data.examples import to_examples
from camtl.data.tokenize import encode_examples
from camtl.device import resolve_device
from camtl.errors import CamtlError
from camtl.evaluation.decode import forward_features, readable_predictions
from camtl.export import load_model
from camtl.predict import run_precision
from camtl.tasks.kinds.records import unicode_problem

log = logging.getLogger("camtl")


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


Answer = list[dict[str, Any]] | Exception  # a request's predictions, or what failed it


@dataclass
class BatchStats:
    """What one call of ``InferenceEngine.run`` did, for the metrics."""

    passes: list[tuple[int, int]] = field(default_factory=list)  # (features, tasks) per pass


class InferenceEngine:
    def __init__(
        self, run_dir: str | Path, device: str = "cpu", max_batch_tokens: int = 8192
    ) -> None:
        from camtl.modeling.encoder import load_saved_tokenizer

        self.run_dir = run_dir = Path(run_dir)
        self.device = resolve_device(device)  # a --device value: cpu, cuda[:N], auto
        self.model = load_model(run_dir, self.device).eval()  # a run directory or ONNX export
        self.tokenizer = load_saved_tokenizer(run_dir)
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

    def spec(self, task: str) -> Any:
        """The task's spec; an unknown task is a 404 naming the tasks there are."""
        spec = self.specs.get(task)
        if spec is None:
            raise RequestError(404, f"task: unknown task {task!r} (tasks: {', '.join(self.specs)})")
        return spec

    def check_records(self, task: str, records: Any) -> list[dict[str, Any]]:
        """The records of a request, checked against the task's input fields."""
        spec = self.spec(task)
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
            message = re.sub(r"^inputs, row (\d+): ", r"inputs[\1]: ", str(exc))
            raise RequestError(422, message) from None
        encoded = encode_examples(spec, examples, self.tokenizer, self.model.task_index[task])
        return Prepared(task, examples, encoded.features, encoded.truncated)

    # -- the model ------------------------------------------------------------------------
    def run(self, requests: list[Prepared]) -> tuple[list[Answer], BatchStats]:
        """Each request's predictions (in its records' order), or the exception that failed
        it, and the passes it took.

        A forward pass that raises fails no request on its own evidence: each request of
        that pass is run again alone, so that only a request that fails by itself is
        answered with its error and the others of the pass get their predictions.
        """
        stats = BatchStats()
        outputs, failed = self._forward(requests, range(len(requests)), stats)
        answers: list[Answer] = []
        for r, request in enumerate(requests):
            if r in failed:
                alone, error = self._forward([request], [0], stats)
                if error:
                    answers.append(error[0])
                    continue
                outputs[r] = alone[0]
            try:
                answers.append(self._decode(request, outputs[r]))
            except Exception as exc:  # a decoding bug fails this request only
                log.exception("decoding the predictions of task %s failed", request.task)
                answers.append(exc)
        return answers, stats

    def _forward(
        self, requests: list[Prepared], which: Iterable[int], stats: BatchStats
    ) -> tuple[list[list[Any]], dict[int, Exception]]:
        """Outputs of every feature of ``requests[r]`` for r in ``which``, and the requests
        that took part in a pass that raised (with its exception)."""
        items = [(r, f) for r in which for f in range(len(requests[r].features))]
        items.sort(key=lambda item: len(requests[item[0]].features[item[1]]["input_ids"]))
        outputs: list[list[Any]] = [[None] * len(r.features) for r in requests]
        failed: dict[int, Exception] = {}
        for chunk in self._passes(requests, items):
            features = [requests[r].features[f] for r, f in chunk]
            try:
                with torch.inference_mode():
                    results = forward_features(
                        self.model,
                        features,
                        self.tokenizer.pad_token_id,
                        self.device,
                        self.precision,
                    )
            except Exception as exc:
                log.exception("a forward pass of %d inputs failed", len(chunk))
                failed.update({r: exc for r, _ in chunk})
                continue
            for (r, f), output in zip(chunk, results):
                outputs[r][f] = output
            stats.passes.append((len(chunk), len({requests[r].task for r, _ in chunk})))
        return outputs, failed

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
    """The value's type (text, or words as a list of texts or one string) and that it is
    valid Unicode. Whether it may be empty is the task kind's to say (``prepare``)."""
    if form == "words" and isinstance(value, list):
        for i, word in enumerate(value):
            if not isinstance(word, str):
                raise RequestError(
                    422, f"{where}[{i}]: a word must be text, got {type(word).__name__}"
                )
            _check_unicode(word, f"{where}[{i}]")
        return
    if not isinstance(value, str):
        wanted = "a list of words or a string" if form == "words" else "text"
        raise RequestError(422, f"{where}: must be {wanted}, got {type(value).__name__}")
    _check_unicode(value, where)


def _check_unicode(value: str, where: str) -> None:
    problem = unicode_problem(value)
    if problem:
        raise RequestError(422, f"{where}: {problem}")
