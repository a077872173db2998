"""The HTTP API (FastAPI): /health, /v1/tasks, /v1/predict, /metrics, OpenAPI at /docs.

Every client mistake is a 4xx with ``{"error": "one line naming the field"}`` and the
server keeps serving: malformed JSON 400, a bad bearer token 401, an unknown task 404, a
missing or wrong-typed field or an empty list 422, a body over ``max_body_bytes`` or more
than ``max_inputs`` records 413, a body not declared as JSON 415, a full queue 503 with
Retry-After; a Host header the server does not answer to 400 (camtl.serving.hosts).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from camtl import __version__
from camtl.serving import contract
from camtl.serving.batcher import DynamicBatcher, QueueFull, WorkerStopped
from camtl.serving.engine import BatchStats, InferenceEngine, RequestError
from camtl.serving.hosts import AllowedHosts

log = logging.getLogger("camtl")


@dataclass
class ServeSettings:
    max_batch_tokens: int = 8192  # padded tokens per forward pass
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    max_body_bytes: int = 1_000_000
    max_inputs: int = 256  # records per request
    max_queue: int = 256  # requests waiting for the model
    api_key: str | None = None  # bearer token checked on /v1/* and /metrics when set
    # Host names answered beside the loopback ones (camtl.serving.hosts); None: any
    allowed_hosts: tuple[str, ...] | None = None


class _Metrics:
    """Prometheus metrics of one app (its own registry, so tests can start several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "camtl_requests_total",
            "Prediction requests by task and HTTP status",
            ["task", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "camtl_request_latency_seconds",
            "Latency of prediction requests",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.batch_size = Histogram(
            "camtl_batch_size",
            "Model inputs (windows) per forward pass",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        )
        self.tasks_per_batch = Histogram(
            "camtl_tasks_per_batch",
            "Distinct tasks in one forward pass",
            registry=self.registry,
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
        )
        self.queue_depth = Gauge(
            "camtl_queue_depth", "Requests waiting for the model", registry=self.registry
        )
        self.truncated = Counter(
            "camtl_truncated_inputs_total",
            "Inputs longer than their task's max_length, cut",
            ["task"],
            registry=self.registry,
        )

    def batch(self, stats: BatchStats) -> None:
        for features, tasks in stats.passes:
            self.batch_size.observe(features)
            self.tasks_per_batch.observe(tasks)


def create_app(engine: InferenceEngine, settings: ServeSettings) -> Any:
    metrics = _Metrics()
    state: dict[str, DynamicBatcher] = {}

    @asynccontextmanager
    async def lifespan(_app: Any):  # the worker lives as long as the server
        state["batcher"] = DynamicBatcher(
            engine.run,
            settings.max_batch_tokens,
            settings.max_wait_ms,
            settings.max_queue,
            metrics.batch,
        )
        yield
        await run_in_threadpool(state["batcher"].close)  # answers what is in flight

    app = FastAPI(
        title="camtl",
        version=__version__,
        description=contract.model_description(engine),
        lifespan=lifespan,
    )

    def openapi() -> dict[str, Any]:
        """FastAPI's document with the schemas of the hand-read body and of every answer."""
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            document.setdefault("components", {})["schemas"] = contract.schemas(
                engine, settings.max_inputs
            )
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    if settings.allowed_hosts is not None:
        app.add_middleware(AllowedHosts, allowed=settings.allowed_hosts)
    secured = (401,) if settings.api_key else ()

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")  # a client's
        # lone surrogate quoted back must not break the response's own encoding
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> Any:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error(422, f"{where or 'body'}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> Any:
        log.exception("request failed")
        return error(500, "internal error (the server log has the details)")

    def authorized(request: Request) -> bool:
        if not settings.api_key:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.encode(), settings.api_key.encode()
        )

    def unauthorized() -> Any:
        return error(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.get(
        "/health",
        summary="200 while the model is loaded and its worker runs, else 503",
        response_model=None,
        responses={
            200: contract.json_content(contract.ref("Health"), "ready"),
            **contract.error_responses(503),
        },
    )
    async def health() -> Any:
        batcher = state.get("batcher")
        if batcher is None or not batcher.alive:
            return error(503, "the model worker is not running")
        return {"status": "ok", "tasks": len(engine.specs)}

    @app.get(
        "/v1/tasks",
        summary="the tasks, their input fields and labels",
        response_model=None,
        responses={
            200: contract.json_content(contract.ref("TaskList"), "every task of the model"),
            **contract.error_responses(*secured),
        },
    )
    async def tasks(request: Request) -> Any:
        if not authorized(request):
            return unauthorized()
        return {"tasks": engine.tasks()}

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_model=None,
        responses={
            200: {
                "description": "Prometheus text format",
                "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
            },
            **contract.error_responses(*secured),
        },
    )
    async def prometheus(request: Request) -> Any:
        if not authorized(request):
            return unauthorized()
        metrics.queue_depth.set(state["batcher"].depth if "batcher" in state else 0)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    first = next(iter(engine.specs.values()))
    example_record = dict.fromkeys(first.kind.input_columns(first), "...")
    example = {"task": first.name, "inputs": [example_record]}

    @app.post(
        "/v1/predict",
        summary="predict one task on a list of records",
        response_model=None,
        responses={
            200: contract.json_content(contract.ref("PredictResponse"), "one per record"),
            **contract.error_responses(400, *secured, 404, 413, 415, 422, 500, 503),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": contract.ref("PredictRequest"),
                        "example": example,
                    }
                },
            }
        },
    )
    async def predict(request: Request) -> Any:
        started = time.perf_counter()
        task = "-"  # the label of requests whose task is not (yet) known
        try:
            if not authorized(request):
                status, response = 401, unauthorized()
            else:
                _check_json_type(request.headers.get("content-type"))
                body = await _read_body(request, settings.max_body_bytes)
                task, records = _parse(body, engine, settings)
                checked = engine.check_records(task, records)
                prepared = await run_in_threadpool(engine.prepare, task, checked)
                if prepared.truncated:
                    metrics.truncated.labels(task).inc(prepared.truncated)
                try:
                    future = state["batcher"].submit(prepared)
                except QueueFull as exc:
                    raise RequestError(503, f"busy: {exc}; retry shortly") from None
                except WorkerStopped as exc:
                    raise RequestError(503, f"unavailable: {exc}") from None
                predictions = await asyncio.wrap_future(future)
                status = 200
                response = {"task": task, "predictions": predictions}
                if prepared.truncated:
                    response["truncated"] = prepared.truncated
        except RequestError as exc:
            status = exc.status
            headers = {"Retry-After": "1"} if status == 503 else None
            response = error(status, str(exc), headers)
        except ClientDisconnect:  # the client hung up mid-body: nobody to answer, not ours
            log.info("client disconnected before its request was read (task %s)", task)
            status = CLIENT_CLOSED
            response = error(status, "client closed the request")
        except Exception:  # ours, not the client's: logged, answered, counted
            log.exception("prediction request failed (task %s)", task)
            status = 500
            response = error(500, "internal error (the server log has the details)")
        metrics.requests.labels(task, str(status)).inc()
        metrics.latency.observe(time.perf_counter() - started)
        return response

    return app


# nginx's status for a request its client closed; counted apart from the server's own 500s
CLIENT_CLOSED = 499


def _check_json_type(content_type: str | None) -> None:
    """Refuse a body not declared as JSON (FastAPI, too, refuses one on the routes whose
    body it reads itself, with a 422).

    Why: a browser sends a cross-site POST without asking first (no CORS preflight) only when
    its Content-Type is absent, text/plain, a form or multipart; requiring JSON makes it ask,
    so a web page cannot make a server without --api-key on localhost predict for it.
    """
    media = (content_type or "").split(";")[0].strip().lower()
    json_suffix = media.startswith("application/") and media.endswith("+json")
    if media == "application/json" or json_suffix:
        return
    given = f"{media!r} is not JSON" if media else "missing"
    raise RequestError(415, f"Content-Type: {given}; send 'Content-Type: application/json'")


async def _read_body(request: Any, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"body: {declared} bytes, more than --max-body-bytes {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"body: more than --max-body-bytes {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes, engine: InferenceEngine, settings: ServeSettings) -> tuple[str, Any]:
    try:
        data = json.loads(body)
    except RecursionError:
        raise RequestError(400, "body: JSON nested too deeply") from None
    except ValueError as exc:  # malformed JSON, bad UTF-8, an integer of 4,300+ digits
        raise RequestError(400, f"body: malformed JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RequestError(422, 'body: must be an object {"task": ..., "inputs": [...]}')
    task = data.get("task")
    if not isinstance(task, str):
        raise RequestError(422, "task: required, a task name (GET /v1/tasks lists them)")
    engine.spec(task)  # an unknown task: 404 before the inputs are counted
    records = data.get("inputs")
    if isinstance(records, list) and len(records) > settings.max_inputs:
        raise RequestError(
            413, f"inputs: {len(records)} records, more than --max-inputs {settings.max_inputs}"
        )
    return task, records
