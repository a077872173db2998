"""`camtl serve` under what real clients send: concurrent requests of mixed lengths, hostile
and malformed bodies, empty fields, and faults inside the server itself.

The served run is the tiny fp32 run with a task of every kind (conftest's ``served_run``,
max_length 48). A record answered under concurrency must equal the same record alone.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from camtl.cli import main
from camtl.tasks.kinds import get_kind, kind_names
from camtl.testing import TINY_WORDS
from camtl.testing.server import ServerProcess, free_port

pytest.importorskip("fastapi")

MAX_LENGTH = 48  # the served run's max_length
LONG = " ".join(TINY_WORDS * 8)  # ~800 words: far over max_length
SHORT = "the film was good"


@pytest.fixture(scope="module")
def server(served_run: Path) -> Iterator[ServerProcess]:
    running = ServerProcess(served_run, "--max-wait-ms", "20", "--max-inputs", "16")
    yield running
    assert running.stop() == 0


def _record(kind_name: str, long: bool) -> dict[str, Any]:
    """One record of the kind's sample task, its longest text field made over-long."""
    sample = get_kind(kind_name).sample()
    record = {c: sample.records[0][c] for c in sample.text_columns}
    if long:
        column = max(record, key=lambda c: len(str(record[c])))
        record[column] = LONG.split() if isinstance(record[column], list) else LONG
    return record


def _close(served: dict[str, Any], alone: dict[str, Any], tolerance: float) -> None:
    """Same discrete prediction; probabilities and scores within ``tolerance``."""
    assert set(served) == set(alone)
    for key, value in alone.items():
        if key == "probabilities":
            got = served[key].values() if isinstance(value, dict) else served[key]
            want = value.values() if isinstance(value, dict) else value
            assert all(abs(a - b) <= tolerance for a, b in zip(got, want)), (served, alone)
        elif key == "score":
            assert abs(served[key] - value) <= tolerance
        else:
            assert served[key] == value


# ----------------------------------------------------------------------------- concurrency


def test_concurrent_encoding_with_one_tokenizer_never_mixes_truncation(served_run: Path) -> None:
    """The fast tokenizer's truncation is backend state: threads sharing one must not
    encode under each other's settings (the cause of 500s on mixed lengths)."""
    from camtl.serving.engine import InferenceEngine

    engine = InferenceEngine(served_run)
    records = {True: [{"text": LONG}], False: [{"text": SHORT}]}
    alone = {long: engine.prepare("regression_task", r).features[0] for long, r in records.items()}
    bad: list[str] = []

    def encode(long: bool) -> None:
        for _ in range(30):
            feature = engine.prepare("regression_task", records[long]).features[0]
            if feature["input_ids"] != alone[long]["input_ids"]:
                bad.append(f"long={long}: {len(feature['input_ids'])} tokens")

    threads = [threading.Thread(target=encode, args=(i % 2 == 0,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(alone[True]["input_ids"]) == MAX_LENGTH and not bad


def test_concurrent_mixed_lengths_all_answer_and_equal_the_record_alone(
    server: ServerProcess,
) -> None:
    """40 concurrent single-record requests over every kind, half over max_length: every
    one answers 200 with what the same record gets alone (fp32: within 1e-3)."""
    requests = [
        (f"{kind_name}_task", _record(kind_name, long))
        for long in (False, True)
        for kind_name in kind_names()
    ]
    requests = (requests * 4)[:40]
    alone = {}
    for task, record in requests:
        key = json.dumps([task, record])
        if key not in alone:
            status, body, _ = server.call("POST", "/v1/predict", {"task": task, "inputs": [record]})
            assert status == 200, body
            alone[key] = body["predictions"][0]
    barrier = threading.Barrier(len(requests))

    def send(task: str, record: dict[str, Any]) -> tuple[int, Any]:
        barrier.wait(30)
        status, body, _ = server.call("POST", "/v1/predict", {"task": task, "inputs": [record]})
        return status, body

    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(lambda r: send(*r), requests))
    assert [status for status, _ in answers] == [200] * len(requests), answers
    for (task, record), (_, body) in zip(requests, answers):
        _close(body["predictions"][0], alone[json.dumps([task, record])], 1e-3)


@pytest.mark.parametrize(("precision", "tolerance"), [("no", 1e-3), ("bf16", 2e-2)])
def test_a_record_batched_with_long_inputs_of_other_tasks_equals_it_alone(
    served_run: Path, precision: str, tolerance: float
) -> None:
    """Padding and the other tasks of a mixed pass leave a record's prediction as it is
    alone: within 1e-3 in fp32, 2e-2 in bf16 autocast."""
    from camtl.serving.engine import InferenceEngine

    engine = InferenceEngine(served_run)
    engine.precision = precision
    kinds = kind_names()
    short = [engine.prepare(f"{k}_task", [_record(k, long=False)]) for k in kinds]
    long = [engine.prepare(f"{k}_task", [_record(k, long=True)]) for k in kinds]
    alone = [engine.run([request])[0][0] for request in short]
    together, stats = engine.run([*long, *short])
    assert any(tasks > 1 for _, tasks in stats.passes)
    for got, want in zip(together[len(long) :], alone):
        _close(got[0], want[0], tolerance)


# ----------------------------------------------------------------------------- hostile input


def _deep(depth: int) -> bytes:
    return b'{"task": "regression_task", "inputs": ' + b"[" * depth + b"]" * depth + b"}"


def _body(task: str, *records: Any, **extra: Any) -> dict[str, Any]:
    return {"task": task, "inputs": list(records), **extra}


CLS = "classification_task"
REG = "regression_task"
TAG = "token_tagging_task"
MC = "multiple_choice_task"
QA = "span_qa_task"
ML = "multi_label_task"

# (what, raw body or a JSON-able body) -> the server must answer it below 500 and go on
HOSTILE: list[tuple[str, Any]] = [
    ("empty body", b""),
    ("truncated JSON", b'{"task": "regression_task", "inputs": [{"text": "a"'),
    ("not JSON", b"{not json"),
    ("JSON null", b"null"),
    ("JSON list", b"[]"),
    ("JSON string", b'"regression_task"'),
    ("JSON number", b"123"),
    ("JSON true", b"true"),
    ("5,000 nested arrays", b"[" * 5000 + b"]" * 5000),
    ("5,000 nested arrays in inputs", _deep(5000)),
    ("5,000 nested objects", b'{"a":' * 5000 + b"1" + b"}" * 5000),
    ("lone surrogate in a text", b'{"task": "regression_task", "inputs": [{"text": "\\ud800"}]}'),
    ("lone surrogate as the task", b'{"task": "\\udfff", "inputs": [{"text": "a"}]}'),
    ("lone surrogate as a key", b'{"task": "regression_task", "inputs": [{"\\ud800": "a"}]}'),
    ("invalid UTF-8", b'{"task": "regression_task", "inputs": [{"text": "\xff\xfe\xfa"}]}'),
    ("a UTF-8 byte order mark", b'\xef\xbb\xbf{"task": "regression_task", "inputs": []}'),
    ("an integer of 5,000 digits", b'{"task": ' + b"9" * 5000 + b', "inputs": []}'),
    ("a float overflowing to inf", _body(REG, {"text": 1e309})),
    ("NaN literal", b'{"task": "regression_task", "inputs": [{"text": NaN}]}'),
    ("-Infinity literal", b'{"task": "regression_task", "inputs": [-Infinity]}'),
    ("task a number", _body(7, {"text": "a"})),  # type: ignore[arg-type]
    ("task null", _body(None, {"text": "a"})),  # type: ignore[arg-type]
    ("task a list", _body(["regression_task"], {"text": "a"})),  # type: ignore[arg-type]
    ("task an object", _body({"name": REG}, {"text": "a"})),  # type: ignore[arg-type]
    ("task empty", _body("", {"text": "a"})),
    ("task unknown", _body("nope", {"text": "a"})),
    ("task 100,000 characters", _body("x" * 100_000, {"text": "a"})),
    ("inputs missing", {"task": REG}),
    ("inputs null", {"task": REG, "inputs": None}),
    ("inputs an object", {"task": REG, "inputs": {"text": "a"}}),
    ("inputs a string", {"task": REG, "inputs": "a"}),
    ("inputs empty", _body(REG)),
    ("a record null", _body(REG, None)),
    ("a record a number", _body(REG, 1)),
    ("a record a list", _body(REG, ["a"])),
    ("a record empty", _body(REG, {})),
    ("a text a number", _body(REG, {"text": 5})),
    ("a text a list", _body(REG, {"text": ["a", "b"]})),
    ("a text an object", _body(REG, {"text": {"a": 1}})),
    ("a text a boolean", _body(REG, {"text": True})),
    ("a text null", _body(REG, {"text": None})),
    ("a single text empty", _body(REG, {"text": ""})),
    ("a single text blank", _body(REG, {"text": " \t\n "})),
    ("both texts of a pair empty", _body(CLS, {"premise": "", "hypothesis": " "})),
    ("words holding a number", _body(TAG, {"tokens": ["a", 3]})),
    ("words holding a list", _body(TAG, {"tokens": ["a", ["b"]]})),
    ("words empty", _body(TAG, {"tokens": []})),
    ("words with an empty word", _body(TAG, {"tokens": ["a", ""]})),
    ("words blank string", _body(TAG, {"tokens": "   "})),
    ("a choice empty", _body(MC, {"premise": "a", "choice1": "", "choice2": "b"})),
    ("a question empty", _body(QA, {"question": "", "context": "the cat sits"})),
    ("a context empty", _body(QA, {"question": "who", "context": ""})),
    ("more records than --max-inputs", _body(REG, *[{"text": "a"}] * 17)),
    ("a second record bad", _body(REG, {"text": "good"}, {"text": 1})),
]

# well-formed if odd: the server must answer 200
ODD_BUT_VALID: list[tuple[str, dict[str, Any]]] = [
    ("unknown top-level key", _body(REG, {"text": "good"}, extra_key=1)),
    ("unknown record key", _body(REG, {"text": "good", "other": [1, {}]})),
    ("NUL and control characters", _body(REG, {"text": "a\x00b\x07c\x1b"})),
    ("emoji and right-to-left text", _body(REG, {"text": "good 🎬 فيلم جيد"})),
    ("500,000 characters, cut", _body(REG, {"text": "good " * 100_000})),
    ("a context of 20,000 words", _body(QA, {"question": "who", "context": LONG * 25})),
    ("choices each over max_length", _body(MC, {"premise": "a", "choice1": LONG, "choice2": LONG})),
    ("an empty premise", _body(MC, {"premise": "", "choice1": "a", "choice2": "b"})),
    ("the first text of a pair empty", _body(CLS, {"premise": "", "hypothesis": "a dog"})),
    ("the second text of a pair empty", _body(CLS, {"premise": "a dog", "hypothesis": ""})),
    ("words as one string", _body(TAG, {"tokens": "john lives in london"})),
    ("sixteen records", _body(ML, *[{"text": "good film"}] * 16)),
]


def _raw_request(port: int, head: bytes, body: bytes = b"") -> int:
    """Send bytes as they are (a lying Content-Length, a bad method) and read the status."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        line = sock.makefile("rb").readline()
    return int(line.split()[1])


def test_at_least_fifty_hostile_requests_are_4xx_and_the_server_goes_on(
    server: ServerProcess,
) -> None:
    assert len(HOSTILE) + len(ODD_BUT_VALID) >= 60
    reference = _body(REG, {"text": SHORT})
    before = server.call("POST", "/v1/predict", reference)[1]["predictions"][0]
    failures = []
    for what, body in HOSTILE:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, answer, _ = server.call("POST", "/v1/predict", raw=raw)
        if not (400 <= status < 500 and isinstance(answer, dict) and "error" in answer):
            failures.append((what, status, answer))
    for what, body in ODD_BUT_VALID:
        status, answer, _ = server.call("POST", "/v1/predict", body)
        if status != 200:
            failures.append((what, status, answer))
    for what, path, method in (
        ("GET on predict", "/v1/predict", "GET"),
        ("PUT on predict", "/v1/predict", "PUT"),
        ("an unknown path", "/v2/nothing", "POST"),
    ):
        status = server.call(method, path, raw=b"{}")[0]
        if not 400 <= status < 500:
            failures.append((what, status, None))
    # a body over --max-body-bytes, by its declared length (a client still sending 1 MB
    # when the 413 comes would see a broken pipe instead of the answer)
    lying = (
        b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 99999999\r\n\r\n"
    )
    if _raw_request(server.port, lying, b"{}") != 413:
        failures.append(("a Content-Length over the limit", "not 413", None))
    assert not failures, failures
    assert server.call("GET", "/health")[0] == 200
    _close(server.call("POST", "/v1/predict", reference)[1]["predictions"][0], before, 1e-6)


def test_a_body_not_declared_as_json_is_415_and_json_types_are_read(
    server: ServerProcess,
) -> None:
    """A browser's cross-site POST without a CORS preflight cannot declare JSON: refused."""
    body = json.dumps(_body(REG, {"text": SHORT})).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        status, answer, _ = server.call(
            "POST", "/v1/predict", raw=body, headers={"Content-Type": content_type}
        )
        assert status == 415, (content_type, status, answer)
        assert answer["error"].startswith(f"Content-Type: '{content_type}' is not JSON")
    head = f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
    assert _raw_request(server.port, head.encode(), body) == 415  # no Content-Type at all
    json_types = ("application/json; charset=utf-8", "Application/JSON", "application/x+json")
    for content_type in json_types:
        status, answer, _ = server.call(
            "POST", "/v1/predict", raw=body, headers={"Content-Type": content_type}
        )
        assert status == 200, (content_type, status, answer)
    assert _counted(server, "415") >= 4


def _counted(server: ServerProcess, status: str) -> float:
    """``camtl_requests_total`` of requests with no known task (``task="-"``) and ``status``."""
    text = server.call("GET", "/metrics")[1]
    label = f'camtl_requests_total{{status="{status}",task="-"}} '
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(label))


def test_a_host_header_not_naming_this_server_is_400_on_every_path(
    server: ServerProcess, served_run: Path
) -> None:
    """DNS rebinding: a page on evil.example re-points its name at 127.0.0.1, and the
    browser still sends its own name as Host; a server bound to localhost refuses it."""
    body = _body(REG, {"text": SHORT})
    for method, path, payload in (
        ("GET", "/health", None),
        ("GET", "/v1/tasks", None),
        ("GET", "/metrics", None),
        ("POST", "/v1/predict", body),
    ):
        for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1.evil.example"):
            status, answer, _ = server.call(method, path, payload, headers={"Host": host})
            assert status == 400, (method, path, host, status, answer)
            assert answer["error"].startswith(f"Host: {host!r} is not a name this server")
    for host in (f"localhost:{server.port}", "LOCALHOST", "127.0.0.1", f"[::1]:{server.port}"):
        status, answer, _ = server.call("POST", "/v1/predict", body, headers={"Host": host})
        assert status == 200, (host, status, answer)
    allowing = ServerProcess(served_run, "--allowed-hosts", "api.example.com, *.corp.example")
    try:
        for host, expected in (
            ("api.example.com", 200),
            ("models.corp.example:443", 200),
            (f"localhost:{allowing.port}", 200),  # loopback names stay allowed
            ("corp.example", 400),
            ("evil.example", 400),
        ):
            status, answer, _ = allowing.call("POST", "/v1/predict", body, headers={"Host": host})
            assert status == expected, (host, status, answer)
    finally:
        assert allowing.stop() == 0


def test_a_client_that_hangs_up_mid_body_is_counted_apart_from_server_failures(
    server: ServerProcess,
) -> None:
    """Counted as 499 (client closed request), not as the server's own 500."""
    failures_before, closed_before = _counted(server, "500"), _counted(server, "499")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(
                b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\n"
                b'Content-Length: 500\r\n\r\n{"task": '
            )
    deadline = time.monotonic() + 10
    while _counted(server, "499") < closed_before + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _counted(server, "499") == closed_before + 3, server.call("GET", "/metrics")[1]
    assert _counted(server, "500") == failures_before
    assert server.call("GET", "/health")[0] == 200


def test_a_flood_of_mixed_lengths_gets_answers_or_503_never_an_error(
    served_run: Path,
) -> None:
    """300 requests from 48 clients at once against a queue of 16: each is answered 200,
    or 503 with Retry-After; nothing else."""
    running = ServerProcess(served_run, "--max-queue", "16", "--max-wait-ms", "5")
    kinds = kind_names()
    requests = [
        (f"{kinds[i % len(kinds)]}_task", _record(kinds[i % len(kinds)], i % 2 == 0))
        for i in range(300)
    ]

    def send(request: tuple[str, dict[str, Any]]) -> tuple[int, str | None]:
        status, _, headers = running.call(
            "POST", "/v1/predict", {"task": request[0], "inputs": [request[1]]}
        )
        return status, headers.get("retry-after")

    try:
        with ThreadPoolExecutor(48) as pool:
            answers = list(pool.map(send, requests))
        statuses = {status for status, _ in answers}
        assert statuses <= {200, 503}, answers
        assert all(retry == "1" for status, retry in answers if status == 503)
        assert [s for s, _ in answers].count(200) > 0
        _, text, _ = running.call("GET", "/metrics")
        assert 'status="500"' not in text
    finally:
        assert running.stop() == 0


# ----------------------------------------------------------------------------- empty fields


def test_empty_fields_in_predict_and_skip_of_unreadable_rows(
    served_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty text of a pair is read in predict as in serve; a record the task cannot
    read stops predict naming its row (nothing written), or with --on-bad-rows skip is
    written as {"row", "error"} in its place."""
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [
        json.dumps({"premise": "", "hypothesis": "a dog sleeps"}),
        json.dumps({"premise": "", "hypothesis": ""}),
        "{broken",
        json.dumps({"premise": "a cat", "hypothesis": ""}),
    ]
    source.write_text("\n".join(lines) + "\n")
    argv = ["predict", str(served_run), "--task", CLS, "--input", str(source), "--output", str(out)]
    assert main(argv) == 2
    assert f"{source}, line 3: malformed JSON" in capsys.readouterr().err
    assert not out.exists()
    source.write_text("\n".join(lines[:2]) + "\n")
    assert main(argv) == 2
    assert f"{source}, row 2: empty text in both columns" in capsys.readouterr().err
    assert not out.exists()
    source.write_text("\n".join(lines) + "\n")
    assert main([*argv, "--on-bad-rows", "skip"]) == 0
    assert "skipped 2 unreadable records" in capsys.readouterr().out
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["row"] for w in written] == [1, 2, 3, 4]
    assert "label" in written[0] and "label" in written[3]
    assert "empty text in both columns" in written[1]["error"]
    assert "line 3" in written[2]["error"] and "label" not in written[2]


# ----------------------------------------------------------------------------- faults


def _prepared(task: str, tokens: int = 4) -> Any:
    from camtl.serving.engine import Prepared

    return Prepared(task, [{}], [{"input_ids": [0] * tokens}])


def _batcher(run: Callable[..., Any], on_batch: Callable[..., Any] | None = None) -> Any:
    from camtl.serving.batcher import DynamicBatcher

    return DynamicBatcher(run, max_batch_tokens=100, max_wait_ms=0, max_queue=10, on_batch=on_batch)


def test_batcher_skips_a_cancelled_request_and_keeps_answering() -> None:
    from camtl.serving.engine import BatchStats

    release, seen = threading.Event(), []

    def run(requests: list[Any]) -> tuple[list[Any], BatchStats]:
        seen.extend(r.task for r in requests)
        release.wait(10)
        return [r.task for r in requests], BatchStats()

    batcher = _batcher(run)
    running = batcher.submit(_prepared("first"))
    time.sleep(0.2)  # "first" is in its model run
    assert not running.cancel()  # too late to cancel: it is answered as usual
    cancelled = batcher.submit(_prepared("cancelled"))
    assert cancelled.cancel()
    release.set()
    assert running.result(5) == "first"
    assert batcher.submit(_prepared("next")).result(5) == "next"
    assert seen == ["first", "next"] and batcher.alive
    batcher.close()


@pytest.mark.parametrize("fault", ["raises", "fewer results", "on_batch raises"])
def test_batcher_survives_a_fault_and_answers_every_request(fault: str) -> None:
    from camtl.serving.engine import BatchStats

    def run(requests: list[Any]) -> tuple[list[Any], BatchStats]:
        if any(r.task == "bad" for r in requests):
            if fault == "raises":
                raise ValueError("boom")
            if fault == "fewer results":
                return [], BatchStats()
        return [r.task for r in requests], BatchStats()

    def on_batch(stats: BatchStats) -> None:
        if fault == "on_batch raises":
            raise ValueError("metrics broke")

    batcher = _batcher(run, on_batch)
    bad = batcher.submit(_prepared("bad"))
    if fault == "on_batch raises":
        assert bad.result(5) == "bad"
    else:
        with pytest.raises((ValueError, RuntimeError)):
            bad.result(5)
    assert batcher.submit(_prepared("good")).result(5) == "good"
    assert batcher.alive
    batcher.close()
    assert not batcher.alive


def test_a_failing_pass_is_rerun_so_only_the_failing_request_fails(
    served_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import camtl.serving.engine as engine_module

    engine = engine_module.InferenceEngine(served_run)
    requests = [
        engine.prepare(f"{kind}_task", [_record(kind, long=False)]) for kind in kind_names()
    ]
    expected, _ = engine.run(requests)
    poisoned = requests[2]
    poisoned.features[0]["poison"] = True
    real = engine_module.forward_features

    def forward(model: Any, features: list[dict], *args: Any) -> Any:
        if any(f.get("poison") for f in features):
            raise RuntimeError("this input breaks the model")
        return real(model, features, *args)

    monkeypatch.setattr(engine_module, "forward_features", forward)
    answers, _ = engine.run(requests)
    assert isinstance(answers[2], RuntimeError)
    for i, (got, want) in enumerate(zip(answers, expected)):
        if i != 2:
            _close(got[0], want[0], 1e-5)


class _InProcessServer:
    """The app on uvicorn in a thread, for faults that need a hand inside the process."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def test_a_model_failure_is_a_counted_500_and_a_dead_worker_fails_health(
    served_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import camtl.serving.app as app_module
    from camtl.serving.engine import InferenceEngine

    engine = InferenceEngine(served_run)
    real_decode = engine._decode

    def decode(request: Any, outputs: list[Any]) -> Any:
        if request.task == REG:
            raise RuntimeError("decoding broke")
        return real_decode(request, outputs)

    monkeypatch.setattr(engine, "_decode", decode)
    served = _InProcessServer(app_module.create_app(engine, app_module.ServeSettings()))
    try:
        status, body = served.call("POST", "/v1/predict", _body(REG, {"text": SHORT}))
        assert status == 500 and "internal error" in body["error"]
        assert served.call("POST", "/v1/predict", _body(ML, {"text": SHORT}))[0] == 200
        assert served.call("GET", "/health")[0] == 200
        text = served.call("GET", "/metrics")[1]
        assert f'camtl_requests_total{{status="500",task="{REG}"}} 1.0' in text
    finally:
        served.stop()

    class DeadOnArrival(app_module.DynamicBatcher):
        def _loop(self) -> None:  # the worker ends at once, as a crashed one would
            return

    monkeypatch.setattr(app_module, "DynamicBatcher", DeadOnArrival)
    served = _InProcessServer(app_module.create_app(engine, app_module.ServeSettings()))
    try:
        time.sleep(0.1)
        status, body = served.call("GET", "/health")
        assert status == 503 and "not running" in body["error"]
        status, body = served.call("POST", "/v1/predict", _body(ML, {"text": SHORT}))
        assert status == 503 and "unavailable" in body["error"]
    finally:
        served.stop()
