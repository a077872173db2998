"""The server's OpenAPI document is a contract a client can build on: valid (checked by a
maintained validator), typed for every request and answer, free of server paths, and good
enough that a client generated from it calls the server."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from camtl.tasks.kinds import get_kind, kind_names
from camtl.testing.server import ServerProcess

pytest.importorskip("fastapi")
openapi_spec_validator = pytest.importorskip("openapi_spec_validator")
jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def server(served_run: Path) -> Iterator[ServerProcess]:
    running = ServerProcess(served_run, "--max-inputs", "8")
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def document(server: ServerProcess) -> dict[str, Any]:
    status, body, _ = server.call("GET", "/openapi.json")
    assert status == 200
    return body


def _inputs(kind_name: str) -> list[dict[str, Any]]:
    sample = get_kind(kind_name).sample()
    return [{c: r[c] for c in sample.text_columns} for r in sample.records]


def _validator(document: dict[str, Any], name: str) -> Any:
    """A JSON Schema validator of components.schemas[name], its $refs resolved in place."""
    root = {"components": document["components"], "$ref": f"#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(root)


def test_the_document_is_valid_openapi_and_names_no_server_path(
    document: dict[str, Any], served_run: Path
) -> None:
    openapi_spec_validator.validate(document)
    text = json.dumps(document)
    assert str(served_run) not in text and str(served_run.parent) not in text
    assert served_run.name in document["info"]["description"]
    for kind_name in kind_names():
        assert f"{kind_name}_task ({kind_name})" in document["info"]["description"]


def test_every_endpoint_declares_its_answers(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("Error", "Health", "TaskList", "PredictRequest", "PredictResponse"):
        assert name in schemas
    predict = document["paths"]["/v1/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PredictRequest"}
    assert {"200", "400", "404", "413", "422", "500", "503"} <= set(predict["responses"])
    for status in ("400", "404", "413", "422", "500", "503"):
        content = predict["responses"][status]["content"]["application/json"]["schema"]
        assert content == {"$ref": "#/components/schemas/Error"}
    assert schemas["PredictRequest"]["properties"]["inputs"]["maxItems"] == 8
    assert sorted(schemas["PredictRequest"]["properties"]["task"]["enum"]) == sorted(
        f"{k}_task" for k in kind_names()
    )


@pytest.mark.parametrize("kind_name", kind_names())
def test_answers_of_every_kind_match_their_schemas(
    server: ServerProcess, document: dict[str, Any], kind_name: str
) -> None:
    request = {"task": f"{kind_name}_task", "inputs": _inputs(kind_name)}
    _validator(document, "PredictRequest").validate(request)
    status, body, _ = server.call("POST", "/v1/predict", request)
    assert status == 200
    _validator(document, "PredictResponse").validate(body)
    kind_schema = f"{''.join(p.capitalize() for p in kind_name.split('_'))}Prediction"
    for prediction in body["predictions"]:
        _validator(document, kind_schema).validate(prediction)
    status, error, _ = server.call("POST", "/v1/predict", {"task": f"{kind_name}_task"})
    assert status == 422
    _validator(document, "Error").validate(error)
    _validator(document, "TaskList").validate(server.call("GET", "/v1/tasks")[1])
    _validator(document, "Health").validate(server.call("GET", "/health")[1])


def test_a_client_generated_from_the_document_calls_the_server(
    server: ServerProcess, document: dict[str, Any], tmp_path: Path
) -> None:
    pytest.importorskip("openapi_python_client")
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(document))
    config = tmp_path / "generator.yaml"
    config.write_text("project_name_override: camtl_api_client\npackage_name_override: camtl_api\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(spec),
            "--output-path",
            str(tmp_path / "client" / "camtl_api"),  # --meta none: the package alone
            "--config",
            str(config),
            "--meta",
            "none",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    sys.path.insert(0, str(tmp_path / "client"))
    try:
        client_module = importlib.import_module("camtl_api")
        models = importlib.import_module("camtl_api.models")
        predict = importlib.import_module("camtl_api.api.default.predict_v1_predict_post")
        client = client_module.Client(base_url=server.url)
        request = models.PredictRequest.from_dict(
            {"task": "classification_task", "inputs": _inputs("classification")}
        )
        answer = predict.sync(client=client, body=request)
        assert isinstance(answer, models.PredictResponse)
        assert answer.task == "classification_task" and len(answer.predictions) == 4
        first = answer.predictions[0]
        assert isinstance(first.to_dict()["label"], str)
        bad = models.PredictRequest.from_dict({"task": "classification_task", "inputs": []})
        error = predict.sync(client=client, body=bad)
        assert isinstance(error, models.Error) and "inputs" in error.error
    finally:
        sys.path.remove(str(tmp_path / "client"))
        for name in [m for m in sys.modules if m == "camtl_api" or m.startswith("camtl_api.")]:
            del sys.modules[name]
