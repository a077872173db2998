"""`camtl serve` as a real process over real HTTP, on a tiny run with a task of every kind.

Predictions equal `camtl predict`'s; concurrent requests of different tasks share forward
passes; every client mistake is a 4xx naming the field and the server keeps serving; the
bearer token is checked; SIGTERM answers what is in flight and exits 0.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from camtl.cli import main
from camtl.tasks.kinds import get_kind, kind_names
from camtl.testing.server import ServerProcess

pytest.importorskip("fastapi")

KINDS = kind_names()


@pytest.fixture(scope="module")
def server(served_run: Path):
    running = ServerProcess(
        served_run, "--max-wait-ms", "300", "--max-inputs", "8", "--max-body-bytes", "4000"
    )
    yield running
    assert running.stop() == 0


def _inputs(kind_name: str) -> list[dict]:
    sample = get_kind(kind_name).sample()
    return [{c: r[c] for c in sample.text_columns} for r in sample.records]


def test_tasks_lists_every_task_with_its_inputs(server: ServerProcess) -> None:
    status, body, _ = server.call("GET", "/v1/tasks")
    assert status == 200
    by_name = {t["name"]: t for t in body["tasks"]}
    for kind_name in KINDS:
        task = by_name[f"{kind_name}_task"]
        assert task["type"] == kind_name
        assert task["inputs"] == get_kind(kind_name).sample().text_columns


@pytest.mark.parametrize("kind_name", KINDS)
def test_predictions_equal_camtl_predict(
    server: ServerProcess, served_run: Path, kind_name: str, tmp_path: Path
) -> None:
    inputs = _inputs(kind_name)
    status, body, _ = server.call(
        "POST", "/v1/predict", {"task": f"{kind_name}_task", "inputs": inputs}
    )
    assert status == 200 and body["task"] == f"{kind_name}_task"
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in inputs))
    argv = ["predict", str(served_run), "--task", f"{kind_name}_task"]
    assert main([*argv, "--input", str(source), "--output", str(out)]) == 0
    expected = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(body["predictions"]) == len(expected)
    for served, offline in zip(body["predictions"], expected):
        offline.pop("row")
        assert set(served) == set(offline)
        for key, value in offline.items():
            if key == "probabilities":
                values = value.values() if isinstance(value, dict) else value
                got = served[key].values() if isinstance(value, dict) else served[key]
                assert all(abs(a - b) < 1e-4 for a, b in zip(got, values))
            elif key == "score":
                assert abs(served[key] - value) < 1e-4
            else:
                assert served[key] == value


def test_concurrent_requests_of_different_tasks_share_a_forward_pass(served_run: Path) -> None:
    # a server of its own with a 5 s gathering window: six requests released together
    # reach it well inside that even on a loaded CI machine, where the shared fixture's
    # 300 ms were once missed (every pass held one task); the window ends the test's wait
    server = ServerProcess(served_run, "--max-wait-ms", "5000")
    try:
        _send_every_kind_at_once_and_check_metrics(server)
    finally:
        assert server.stop() == 0


def _send_every_kind_at_once_and_check_metrics(server: ServerProcess) -> None:
    barrier = threading.Barrier(len(KINDS))
    statuses: list[int] = []

    def send(kind_name: str) -> None:
        barrier.wait()
        status, _, _ = server.call(
            "POST", "/v1/predict", {"task": f"{kind_name}_task", "inputs": _inputs(kind_name)}
        )
        statuses.append(status)

    threads = [threading.Thread(target=send, args=(k,)) for k in KINDS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * len(KINDS)
    status, text, headers = server.call("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    mixed = [
        line
        for line in text.splitlines()
        if line.startswith('camtl_tasks_per_batch_bucket{le="1.0"}')
    ]
    count = [line for line in text.splitlines() if line.startswith("camtl_tasks_per_batch_count")]
    assert float(count[0].split()[-1]) > float(mixed[0].split()[-1])  # a pass with 2+ tasks
    assert 'camtl_requests_total{status="200",task="classification_task"}' in text
    assert "camtl_request_latency_seconds_bucket" in text and "camtl_queue_depth" in text


@pytest.mark.parametrize(
    ("raw", "body", "status", "message"),
    [
        (b"{not json", None, 400, "body: malformed JSON"),
        (None, [1, 2], 422, "body: must be an object"),
        (None, {"inputs": []}, 422, "task: required"),
        (None, {"task": "nope", "inputs": [{}]}, 404, "unknown task 'nope'"),
        (None, {"task": "classification_task", "inputs": []}, 422, "inputs: must be a non-empty"),
        (
            None,
            {"task": "classification_task", "inputs": [{"premise": "a"}]},
            422,
            "inputs[0].hypothesis: missing",
        ),
        (
            None,
            {"task": "classification_task", "inputs": [{"premise": 3, "hypothesis": "b"}]},
            422,
            "inputs[0].premise: must be text, got int",
        ),
        (
            None,
            {"task": "token_tagging_task", "inputs": [{"tokens": ["a", ""]}]},
            422,
            "inputs[0]: empty token at position 2 in column 'tokens'",
        ),
        (
            None,
            {"task": "classification_task", "inputs": [{"premise": "a", "hypothesis": "b"}] * 9},
            413,
            "more than --max-inputs 8",
        ),
        (b"{" + b" " * 5000 + b"}", None, 413, "more than --max-body-bytes 4000"),
    ],
)
def test_client_mistakes_are_4xx_naming_the_field_and_the_server_keeps_serving(
    server: ServerProcess, raw: bytes | None, body: Any, status: int, message: str
) -> None:
    got, answer, _ = server.call("POST", "/v1/predict", body, raw=raw)
    assert got == status and message in answer["error"] and "\n" not in answer["error"]
    assert server.call("GET", "/health")[0] == 200


def _wait_until_one_waits(server: ServerProcess, token: str | None = None) -> None:
    """Until /metrics says one request waits for the model (not a fixed sleep: a loaded
    machine can take longer than any guess to hand a request to the batcher)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = server.call("GET", "/metrics", token=token)[1]
        if "camtl_queue_depth 1.0" in text.splitlines():
            return
        time.sleep(0.02)
    raise AssertionError("no request reached the batcher in 30 s")


def test_a_full_queue_is_503_with_retry_after(served_run: Path) -> None:
    """--max-queue 1: while one request waits (--max-wait-ms) for company, the next is
    turned away with 503 and Retry-After; the waiting one is answered."""
    running = ServerProcess(served_run, "--max-queue", "1", "--max-wait-ms", "3000")
    request = {"task": "regression_task", "inputs": _inputs("regression")}
    try:
        first: list[Any] = []
        thread = threading.Thread(
            target=lambda: first.append(running.call("POST", "/v1/predict", request))
        )
        thread.start()
        _wait_until_one_waits(running)
        status, body, headers = running.call("POST", "/v1/predict", request)
        assert status == 503 and headers["retry-after"] == "1" and "busy" in body["error"]
        thread.join()
        assert first[0][0] == 200
        assert running.call("GET", "/health")[0] == 200
    finally:
        assert running.stop() == 0


def test_bearer_token_and_sigterm_answers_what_is_in_flight(served_run: Path) -> None:
    running = ServerProcess(served_run, "--api-key", "s3cret", "--max-wait-ms", "3000")
    request = {"task": "regression_task", "inputs": _inputs("regression")}
    assert running.call("POST", "/v1/predict", request)[0] == 401
    assert running.call("POST", "/v1/predict", request, token="wrong")[0] == 401
    assert running.call("GET", "/metrics")[0] == 401
    assert running.call("GET", "/health")[0] == 200  # health stays open
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(running.call("POST", "/v1/predict", request, token="s3cret"))
    )
    thread.start()
    _wait_until_one_waits(running, token="s3cret")  # in the batcher (--max-wait-ms 3000)
    assert running.stop() == 0
    thread.join()
    assert result and result[0][0] == 200 and len(result[0][1]["predictions"]) == 4


def test_overlong_inputs_are_truncated_and_counted(server: ServerProcess) -> None:
    long_text = " ".join(["good"] * 200)
    status, body, _ = server.call(
        "POST",
        "/v1/predict",
        {"task": "classification_task", "inputs": [{"premise": long_text, "hypothesis": "ok"}]},
    )
    assert status == 200 and body["truncated"] == 1 and len(body["predictions"]) == 1
    _, text, _ = server.call("GET", "/metrics")
    assert 'camtl_truncated_inputs_total{task="classification_task"} 1.0' in text


# ----------------------------------------------------------------------------- the batcher


def _prepared(task: str, tokens: int) -> Any:
    from camtl.serving.engine import Prepared

    return Prepared(task, [{}], [{"input_ids": [0] * tokens}])


def test_batcher_gathers_waiting_requests_and_refuses_past_max_queue() -> None:
    from camtl.serving.batcher import DynamicBatcher, QueueFull
    from camtl.serving.engine import BatchStats

    release = threading.Event()
    runs: list[list[str]] = []

    def run(requests: list[Any]) -> tuple[list[Any], BatchStats]:
        runs.append([r.task for r in requests])
        release.wait(10)
        return [[r.task] for r in requests], BatchStats()

    batcher = DynamicBatcher(run, max_batch_tokens=1000, max_wait_ms=50, max_queue=2)
    first = batcher.submit(_prepared("a", 5))
    time.sleep(0.3)  # the worker runs "a" alone and blocks
    assert batcher.depth == 0  # "a" is in its model run, no longer waiting
    waiting = [batcher.submit(_prepared(t, 5)) for t in ("b", "c")]
    assert batcher.depth == 2
    with pytest.raises(QueueFull):
        batcher.submit(_prepared("d", 5))
    release.set()
    assert first.result(5) == ["a"] and [f.result(5) for f in waiting] == [["b"], ["c"]]
    assert runs == [["a"], ["b", "c"]]  # b and c shared one run
    batcher.close()


def test_batcher_closes_after_answering_what_is_queued_and_survives_a_failed_run() -> None:
    from camtl.serving.batcher import DynamicBatcher
    from camtl.serving.engine import BatchStats

    def run(requests: list[Any]) -> tuple[list[Any], BatchStats]:
        if any(r.task == "bad" for r in requests):
            raise ValueError("boom")
        return [r.task for r in requests], BatchStats()

    batcher = DynamicBatcher(run, max_batch_tokens=8, max_wait_ms=0, max_queue=10)
    bad = batcher.submit(_prepared("bad", 5))
    with pytest.raises(ValueError, match="boom"):
        bad.result(5)
    queued = [batcher.submit(_prepared(t, 5)) for t in ("x", "y", "z")]
    batcher.close()
    assert [f.result(0) for f in queued] == ["x", "y", "z"]
