"""The server's API contract: JSON Schemas of every request and response, for /openapi.json.

The body of ``/v1/predict`` is read by hand (size limits, nesting, one-line errors), so
FastAPI cannot infer its schema; this module writes it, and the response shapes, from the
served model: one record schema per task (its input fields), one prediction schema per
task kind (``TaskKind.prediction_schema``). A client generated from the document is typed.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

REF = "#/components/schemas/{}"

ERROR_STATUSES = {
    400: "malformed JSON",
    401: "a missing or wrong bearer token (when the server has --api-key)",
    404: "an unknown task",
    413: "a body over --max-body-bytes, or more records than --max-inputs",
    415: "a body whose Content-Type is not application/json (or another +json type)",
    422: "a missing, wrong-typed or unreadable field; the message names it",
    500: "the server failed on this request (its log has the details)",
    503: "the queue is full (retry after Retry-After seconds) or the worker is not running",
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(name)}


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: json_content(ref("Error"), ERROR_STATUSES[status]) for status in statuses}


def schema_name(text: str) -> str:
    """A component name (letters, digits, ., _ and - only) in CamelCase."""
    parts = re.split(r"[^A-Za-z0-9]+", text)
    return "".join(part[:1].upper() + part[1:] for part in parts if part)


def _field_schema(form: str, column: str) -> dict[str, Any]:
    if form == "words":
        return {
            "anyOf": [
                {"type": "array", "items": {"type": "string"}},
                {"type": "string"},
            ],
            "description": f"{column}: the words, as a list or one space-separated string",
        }
    return {"type": "string", "description": f"{column}: text"}


def model_description(engine: Any) -> str:
    """The model and its tasks, without any path of the server's file system."""
    encoder = PurePath(str(engine.model.config.encoder)).name
    tasks = ", ".join(f"{spec.name} ({spec.type})" for spec in engine.specs.values())
    return (
        f"Every task of the camtl multi-task model {PurePath(engine.run_dir).name!r} "
        f"(encoder {encoder}) from one process: {tasks}. Requests of different tasks share "
        "forward passes."
    )


def schemas(engine: Any, max_inputs: int) -> dict[str, Any]:
    """components.schemas for the served model."""
    specs = list(engine.specs.values())
    kinds = {spec.type: spec.kind for spec in specs}
    records = {}
    for spec in specs:
        columns = spec.kind.input_columns(spec)
        records[f"{schema_name(spec.name)}Input"] = {
            "type": "object",
            "title": f"{spec.name} record",
            "description": f"One input of task {spec.name} ({spec.type}). "
            + spec.kind.empty_fields(spec),
            "required": list(columns),
            "properties": {c: _field_schema(form, c) for c, form in columns.items()},
        }
    predictions = {
        f"{schema_name(kind_name)}Prediction": {
            "title": f"{kind_name} prediction",
            **kind.prediction_schema(),
        }
        for kind_name, kind in kinds.items()
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "description": "one line, naming the field"}
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "tasks"],
            "properties": {"status": {"type": "string"}, "tasks": {"type": "integer"}},
        },
        "TaskInfo": {
            "type": "object",
            "required": ["name", "type", "inputs", "labels"],
            "properties": {
                "name": {"type": "string"},
                "type": {"type": "string", "enum": sorted(kinds)},
                "inputs": {"type": "array", "items": {"type": "string"}},
                "labels": {"type": "array", "items": {"type": "string"}},
            },
        },
        "TaskList": {
            "type": "object",
            "required": ["tasks"],
            "properties": {"tasks": {"type": "array", "items": ref("TaskInfo")}},
        },
        **records,
        **predictions,
        "PredictRequest": {
            "type": "object",
            "required": ["task", "inputs"],
            "properties": {
                "task": {"type": "string", "enum": [spec.name for spec in specs]},
                "inputs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": max_inputs,
                    "items": {"anyOf": [ref(name) for name in records]},
                    "description": "records with the task's input fields (GET /v1/tasks)",
                },
            },
        },
        "PredictResponse": {
            "type": "object",
            "required": ["task", "predictions"],
            "properties": {
                "task": {"type": "string"},
                "predictions": {
                    "type": "array",
                    "items": {"anyOf": [ref(name) for name in predictions]},
                    "description": "one per record, in the request's order",
                },
                "truncated": {
                    "type": "integer",
                    "description": "how many records were longer than max_length and cut",
                },
            },
        },
    }
