"""Load test of `camtl serve`: a real server process over real HTTP on 127.0.0.1.

    python bench/serve_load.py RUN_DIR --out bench/results/serve_load.json [--quick]
        [--skip-predict] [--skip-flood] [--skip-rss] [--skip-onnx] [--skip-int8]
        [--single-task-runs DIR ...] [--serve-flag=--max-wait-ms=5 ...]

Requests are single-record ``POST /v1/predict`` calls built from each task's test split
(dev where a task has none), read through the run's saved config as training reads it; a
record carries the task's input fields exactly as ``GET /v1/tasks`` lists them (checked
against the running server). Tasks take turns, so concurrent requests are of different
tasks. Each request opens its own connection (stdlib ``http.client``, one thread per
concurrent client), so no stale keep-alive connection can pass for a server error.

Workloads (each bounded by a request count and ``--phase-timeout``):
  c1, c32        short records, 1 and 32 clients in a closed loop
  mixed_c32      half the requests over the task's max_length (the record's longest field
                 made of the task's texts joined to ``--long-chars``), half short, 32 clients
  flood          ``--flood-requests`` clients released at once over mixed lengths
Outcomes: 200 is served; 503 with Retry-After is a rejection (the queue is full), not an
error; anything else is an error: another 5xx, a 4xx (the bench's records are valid), a
timeout, a connection error, or a request still unanswered when its phase ends.

Keys (ratios are measured within this one run, on this machine):
  throughput_c32_over_c1       served requests/s at 32 clients over 1 client
  throughput_c32_over_predict  served records/s at c32 over the offline predict path on the
                               same records: the calls of ``camtl.predict.predict_file``
                               (to_examples, encode_examples, run_model, readable_predictions)
                               in this process, per task; model load and file I/O excluded,
                               as the server's start-up is excluded from its throughput
  mixed_batch_fraction_c32     share of forward passes during the c32 phase that mixed more
                               than one task (``camtl_tasks_per_batch`` from /metrics, diffed)
  rss_over_seven_processes     resident memory of one server of every task over the summed
                               RSS of N one-task servers (N = the run's task count; named for
                               the demo's seven). Each server is a fresh process measured
                               after the same warm-up (its own tasks' records, short and
                               long). Without ``--single-task-runs`` the N one-task servers
                               are N processes of this run, each sent only its own task: a
                               single-task model on the same encoder holds the same encoder
                               weights, and they dominate, so this is a fair proxy of "one
                               model per task". It slightly overstates each one-task process
                               by the other tasks' heads and embeddings (and by CA-MTL's
                               conditional modules against a plain single-task encoder);
                               ``rss_method`` says which measurement was made.
  onnx_over_torch              time per served request at c32 on ``camtl serve`` of an ONNX
                               export (``camtl export --format onnx``) over the PyTorch server
                               (lower is better)
  int8_over_fp32_onnx          the same for an int8 export over the fp32 one, when ``camtl
                               export`` has ``--quantize``; else null and a reason
  errors                       errors of every workload (warm-ups included), with
                               ``errors_by_workload`` (status counts, example bodies) and the
                               exception lines of each server's log
Every server is stopped at the end (SIGTERM, then kill after ``--stop-timeout``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
LOW, HIGH = 1, 32  # the two concurrency levels the keys are named for
LONG_CHARS = 3000  # a long record's longest field, in characters
EXAMPLES_KEPT = 3  # example error bodies kept per workload
BODY_CHARS = 300  # characters kept of each example body
LOG_ERRORS_KEPT = 5  # exception lines kept per server log
POLL_S = 0.2  # wait between /health polls while a server starts
PERCENTILES = (50, 99)
KIB = 1024
RATIO_MEASURE = (
    "time per served request at c32 on the same workload, the first named over the second "
    "(lower is better)"
)


@dataclass(frozen=True)
class Budget:
    """How much each phase may send and how long it may take."""

    records_per_task: int = 200
    warmup_requests: int = 32
    c1_requests: int = 200
    c32_requests: int = 1000
    mixed_requests: int = 1000
    flood_requests: int = 600
    rss_warmup_requests: int = 64
    predict_batch_size: int = 64
    phase_timeout_s: float = 120.0
    request_timeout_s: float = 60.0
    start_timeout_s: float = 180.0
    stop_timeout_s: float = 40.0
    export_timeout_s: float = 600.0


QUICK = Budget(
    records_per_task=8,
    warmup_requests=4,
    c1_requests=12,
    c32_requests=48,
    mixed_requests=48,
    flood_requests=64,
    rss_warmup_requests=8,
    phase_timeout_s=30.0,
    request_timeout_s=30.0,
    start_timeout_s=90.0,
    stop_timeout_s=20.0,
    export_timeout_s=180.0,
)


@dataclass(frozen=True)
class Item:
    """One request: a task and one record."""

    task: str
    record: dict[str, Any]
    long: bool = False

    def body(self) -> bytes:
        return json.dumps({"task": self.task, "inputs": [self.record]}).encode()


@dataclass
class Outcome:
    """What one request got: ``kind`` is the status code, "timeout" or "connection"."""

    kind: str
    latency_s: float
    retry_after: bool = False
    truncated: bool = False
    body: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == "200"

    @property
    def rejected(self) -> bool:
        return self.kind == "503" and self.retry_after


@dataclass
class Phase:
    """The outcomes of one workload and its wall time."""

    name: str
    planned: int
    concurrency: int
    outcomes: list[Outcome] = field(default_factory=list)
    unfinished: int = 0  # requests still unanswered when the phase ended
    wall_s: float = 0.0


# ----------------------------------------------------------------------------- records


def _usable(value: Any, form: str) -> bool:
    if form == "words" and isinstance(value, list):
        return bool(value) and all(isinstance(w, str) and w.strip() for w in value)
    return isinstance(value, str) and bool(value.strip())


def task_specs(model_dir: Path) -> list[Any]:
    from camtl.config import load_saved_config

    return list(load_saved_config(model_dir).tasks)


def task_records(spec: Any, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` records of the task's test split (else dev): its input fields only."""
    from camtl.data.examples import derive_columns
    from camtl.data.sources import read_split

    columns = spec.kind.input_columns(spec)
    records = read_split(spec, "test") or read_split(spec, "dev") or []
    kept = []
    for record in derive_columns(spec, records):
        if all(_usable(record.get(c), form) for c, form in columns.items()):
            kept.append({c: record[c] for c in columns})
            if len(kept) == limit:
                break
    if not kept:
        raise SystemExit(f"task {spec.name}: no usable test or dev records for {list(columns)}")
    return kept


def _text_length(value: Any) -> int:
    return len(" ".join(value)) if isinstance(value, list) else len(value)


def lengthen(records: list[dict[str, Any]], target_chars: int) -> list[dict[str, Any]]:
    """Each record with its longest field (on average) made of the task's texts of that
    field joined, from the record's own on, to at least ``target_chars`` characters."""
    column = max(records[0], key=lambda c: sum(_text_length(r[c]) for r in records))
    out = []
    for i, record in enumerate(records):
        parts: list[Any] = []
        j = i
        while sum(_text_length(p) for p in parts) + len(parts) < target_chars:
            parts.append(records[j % len(records)][column])
            j += 1
        if isinstance(record[column], list):
            value: Any = [w for part in parts for w in _words(part)]
        else:
            value = " ".join(" ".join(p) if isinstance(p, list) else p for p in parts)
        out.append({**record, column: value})
    return out


def _words(value: Any) -> list[str]:
    return value if isinstance(value, list) else value.split()


def short_items(records: dict[str, list[dict[str, Any]]], count: int) -> list[Item]:
    """``count`` requests, tasks taking turns, each task's records in order (cycled)."""
    tasks = list(records)
    out = []
    for j in range(count):
        task = tasks[j % len(tasks)]
        out.append(Item(task, records[task][(j // len(tasks)) % len(records[task])]))
    return out


def mixed_items(
    short: dict[str, list[dict[str, Any]]], long: dict[str, list[dict[str, Any]]], count: int
) -> list[Item]:
    """``count`` requests alternating short and long; each task gets both in turn."""
    tasks = list(short)
    out = []
    for j in range(count):
        task = tasks[(j // 2) % len(tasks)]
        source = long if j % 2 else short
        rows = source[task]
        out.append(Item(task, rows[(j // (2 * len(tasks))) % len(rows)], long=bool(j % 2)))
    return out


# ----------------------------------------------------------------------------- HTTP


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def http_get(port: int, path: str, timeout: float) -> tuple[int, str]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def send(port: int, item: Item, timeout: float) -> Outcome:
    """One request on its own connection; never raises."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(
            "POST", "/v1/predict", body=item.body(), headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        raw = response.read()
        elapsed = time.perf_counter() - started
        text = raw.decode("utf-8", "replace")
        return Outcome(
            str(response.status),
            elapsed,
            retry_after=response.getheader("Retry-After") is not None,
            truncated=response.status == 200 and '"truncated"' in text,
            body="" if response.status == 200 else text[:BODY_CHARS],
        )
    except TimeoutError as exc:
        return Outcome("timeout", time.perf_counter() - started, body=repr(exc)[:BODY_CHARS])
    except (OSError, http.client.HTTPException) as exc:
        return Outcome("connection", time.perf_counter() - started, body=repr(exc)[:BODY_CHARS])
    finally:
        connection.close()


def closed_loop(port: int, name: str, items: list[Item], concurrency: int, budget: Budget) -> Phase:
    """``concurrency`` clients, each sending its next request when the last is answered,
    until the items are sent or ``phase_timeout_s`` has passed."""
    phase = Phase(name, len(items), concurrency)
    counter = itertools.count()
    deadline = time.monotonic() + budget.phase_timeout_s
    timeout = min(budget.request_timeout_s, budget.phase_timeout_s)

    def client() -> None:
        while time.monotonic() < deadline:
            index = next(counter)
            if index >= len(items):
                return
            phase.outcomes.append(send(port, items[index], timeout))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    _run_threads(phase, threads, deadline + timeout)
    return phase


def flood(port: int, name: str, items: list[Item], budget: Budget) -> Phase:
    """One client per item, all released at once."""
    phase = Phase(name, len(items), len(items))
    gate = threading.Event()
    timeout = min(budget.request_timeout_s, budget.phase_timeout_s)

    def client(item: Item) -> None:
        gate.wait()
        phase.outcomes.append(send(port, item, timeout))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in items]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    gate.set()
    _join(threads, time.monotonic() + budget.phase_timeout_s)
    phase.wall_s = time.perf_counter() - started
    phase.unfinished = sum(thread.is_alive() for thread in threads)
    return phase


def _run_threads(phase: Phase, threads: list[threading.Thread], until: float) -> None:
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    _join(threads, until)
    phase.wall_s = time.perf_counter() - started
    phase.unfinished = sum(thread.is_alive() for thread in threads)  # one request each


def _join(threads: list[threading.Thread], until: float) -> None:
    for thread in threads:
        thread.join(max(0.0, until - time.monotonic()))


# ----------------------------------------------------------------------------- summaries


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None when there are no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summarize(phase: Phase) -> dict[str, Any]:
    ok = [o for o in phase.outcomes if o.ok]
    latencies = [o.latency_s * 1000 for o in ok]
    return {
        "concurrency": phase.concurrency,
        "requests_planned": phase.planned,
        "requests_answered": len(phase.outcomes),
        "ok": len(ok),
        "rejected_503": sum(o.rejected for o in phase.outcomes),
        "errors": count_errors(phase),
        "truncated_responses": sum(o.truncated for o in ok),
        "wall_s": round(phase.wall_s, 3),
        "throughput_rps": len(ok) / phase.wall_s if phase.wall_s > 0 else 0.0,
        "latency_ms": {
            **{f"p{p}": percentile(latencies, p) for p in PERCENTILES},
            "mean": statistics.fmean(latencies) if latencies else None,
        },
    }


def count_errors(phase: Phase) -> int:
    return sum(not (o.ok or o.rejected) for o in phase.outcomes) + phase.unfinished


def error_breakdown(phase: Phase) -> dict[str, Any]:
    kinds = Counter(o.kind for o in phase.outcomes)
    if phase.unfinished:
        kinds["unfinished"] = phase.unfinished
    examples: list[str] = []
    for outcome in phase.outcomes:
        if not (outcome.ok or outcome.rejected) and outcome.body not in examples:
            examples.append(outcome.body)
            if len(examples) == EXAMPLES_KEPT:
                break
    return {"errors": count_errors(phase), "status_counts": dict(kinds), "examples": examples}


METRICS = {  # /metrics sample -> the name used here
    "camtl_tasks_per_batch_count": "passes",
    'camtl_tasks_per_batch_bucket{le="1.0"}': "one_task_passes",
    "camtl_batch_size_sum": "inputs",
    "camtl_batch_size_count": "sized_passes",
}


def batch_counters(metrics_text: str) -> dict[str, float]:
    """The forward-pass counters of /metrics (0 for one not yet exported)."""
    values = {}
    for sample, name in METRICS.items():
        match = re.search(rf"^{re.escape(sample)} (\S+)$", metrics_text, re.MULTILINE)
        values[name] = float(match.group(1)) if match else 0.0
    return values


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


# ----------------------------------------------------------------------------- servers


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (psutil, else /proc)."""
    try:
        import psutil
    except ImportError:
        return _proc_rss(pid)
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


def _proc_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):  # in kB
            return int(line.split()[1]) * KIB
    raise RuntimeError(f"no VmRSS for process {pid}")


def _child_env() -> dict[str, str]:
    """The environment of a child `camtl` process: this camtl first on its path."""
    import camtl

    source = str(Path(camtl.__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}


class Server:
    """One `camtl serve MODEL_DIR` process on a free port, its output in ``log``."""

    def __init__(self, model_dir: Path, log: Path, flags: list[str], budget: Budget) -> None:
        self.model_dir, self.log, self.budget = model_dir, log, budget
        self.port = _free_port()
        self.start_s = 0.0
        started = time.perf_counter()
        with log.open("w") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "camtl.cli", "serve", str(model_dir)]
                + ["--port", str(self.port), *flags],
                env=_child_env(),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the bench reaches it through stop()
            )
        self._wait_ready()
        self.start_s = time.perf_counter() - started

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.budget.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"camtl serve exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if http_get(self.port, "/health", POLL_S * 10)[0] == 200:
                    return
            time.sleep(POLL_S)
        self.stop()
        limit = self.budget.start_timeout_s
        raise RuntimeError(f"camtl serve {self.model_dir}: not ready in {limit}s")

    def metrics(self) -> str:
        status, text = http_get(self.port, "/metrics", self.budget.request_timeout_s)
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}: {text[:BODY_CHARS]}")
        return text

    def input_fields(self) -> dict[str, list[str]]:
        status, text = http_get(self.port, "/v1/tasks", self.budget.request_timeout_s)
        if status != 200:
            raise RuntimeError(f"/v1/tasks answered {status}: {text[:BODY_CHARS]}")
        return {t["name"]: t["inputs"] for t in json.loads(text)["tasks"]}

    def rss(self) -> int:
        return rss_bytes(self.process.pid)

    def stop(self) -> int | None:
        """SIGTERM, then kill after ``stop_timeout_s``; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(self.budget.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_errors(self) -> list[str]:
        """The distinct exception lines of the server's log (its 500s' causes)."""
        found: list[str] = []
        pattern = re.compile(r"^[\w.]*(Error|Exception|Interrupt)\b.*")
        for line in self.log.read_text(errors="replace").splitlines():
            if pattern.match(line) and line not in found:
                found.append(line[:BODY_CHARS])
        return found[:LOG_ERRORS_KEPT]


class Bench:
    """The results of one run: phases by name, servers' logs, the keys."""

    def __init__(self, args: argparse.Namespace, budget: Budget, workdir: Path) -> None:
        self.args, self.budget, self.workdir = args, budget, workdir
        self.phases: dict[str, Phase] = {}
        self.log_errors: dict[str, list[str]] = {}
        self.exit_codes: dict[str, int | None] = {}
        self._servers = itertools.count()

    @contextlib.contextmanager
    def serving(self, model_dir: Path, label: str) -> Iterator[Server]:
        log = self.workdir / f"serve-{next(self._servers)}-{label}.log"
        server = Server(model_dir, log, self.args.serve_flag, self.budget)
        try:
            yield server
        finally:
            self.exit_codes[label] = server.stop()
            errors = server.log_errors()
            if errors:
                self.log_errors[label] = errors

    def loop(self, server: Server, name: str, items: list[Item], concurrency: int) -> Phase:
        phase = closed_loop(server.port, name, items, concurrency, self.budget)
        self._keep(phase)
        print(f"{name}: {json.dumps(summarize(phase))}", flush=True)
        return phase

    def flood(self, server: Server, name: str, items: list[Item]) -> Phase:
        phase = flood(server.port, name, items, self.budget)
        self._keep(phase)
        print(f"{name}: {json.dumps(summarize(phase))}", flush=True)
        return phase

    def _keep(self, phase: Phase) -> None:
        if phase.name in self.phases:  # the same workload on several servers: one entry
            old = self.phases[phase.name]
            old.outcomes += phase.outcomes
            old.unfinished += phase.unfinished
            old.planned += phase.planned
            old.wall_s += phase.wall_s
        else:
            self.phases[phase.name] = phase


# ----------------------------------------------------------------------------- phases


def predict_throughput(model_dir: Path, items: list[Item], batch_size: int) -> float:
    """Records/s of the offline predict path on ``items`` (model already loaded)."""
    from transformers import AutoTokenizer

    from camtl.export import load_model
    from camtl.predict import run_precision

    model = load_model(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    precision = run_precision(model_dir)
    specs = {spec.name: spec for spec in model.tasks}
    by_task: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_task.setdefault(item.task, []).append(item.record)
    warm = {task: rows[:1] for task, rows in by_task.items()}
    _predict(model, tokenizer, precision, specs, warm, batch_size)  # untimed warm-up
    started = time.perf_counter()
    _predict(model, tokenizer, precision, specs, by_task, batch_size)
    return len(items) / (time.perf_counter() - started)


def _predict(
    model: Any,
    tokenizer: Any,
    precision: str,
    specs: dict[str, Any],
    by_task: dict[str, list[dict[str, Any]]],
    batch_size: int,
) -> None:
    """What ``camtl.predict.predict_file`` does after loading, per task, without the file."""
    from camtl.data.examples import to_examples
    from camtl.data.tokenize import encode_examples
    from camtl.evaluation.decode import readable_predictions, run_model

    for task, records in by_task.items():
        spec = specs[task]
        examples = to_examples(spec, records, "input", labelled=False)
        encoded = encode_examples(spec, examples, tokenizer, model.task_index[task])
        outputs = run_model(
            model, encoded.features, task, batch_size, tokenizer.pad_token_id, precision=precision
        )
        readable_predictions(
            spec, model.labels.get(task) or [], examples, encoded.features, outputs
        )


def check_fields(server: Server, records: dict[str, list[dict[str, Any]]]) -> None:
    """The records carry each task's input fields exactly as GET /v1/tasks lists them."""
    listed = server.input_fields()
    for task, rows in records.items():
        if task not in listed or sorted(listed[task]) != sorted(rows[0]):
            raise SystemExit(f"task {task}: records have {list(rows[0])}, server lists {listed}")


def torch_phases(
    bench: Bench, workloads: dict[str, list[Item]], records: dict[str, Any]
) -> dict[str, Any]:
    """c1, c32 (with the batch mix from /metrics), mixed lengths and the flood."""
    out: dict[str, Any] = {}
    with bench.serving(bench.args.run_dir, "torch") as server:
        check_fields(server, records)
        out["server_start_s"] = server.start_s
        bench.loop(server, "warmup", workloads["warmup"], LOW)
        bench.loop(server, "c1", workloads["c1"], LOW)
        before = batch_counters(server.metrics())
        bench.loop(server, "c32", workloads["c32"], HIGH)
        after = batch_counters(server.metrics())
        diff = {name: after[name] - before[name] for name in after}
        out["forward_passes_c32"] = diff["passes"]
        out["mixed_batch_fraction_c32"] = ratio(
            diff["passes"] - diff["one_task_passes"], diff["passes"]
        )
        out["mean_inputs_per_pass_c32"] = ratio(diff["inputs"], diff["sized_passes"])
        bench.loop(server, "mixed_c32", workloads["mixed"], HIGH)
        if not bench.args.skip_flood:
            bench.flood(server, "flood", workloads["flood"])
        out["rss_bytes_after_load"] = server.rss()
    return out


def served_throughput(bench: Bench, model_dir: Path, label: str, workloads: dict) -> float:
    """c32 requests/s of another model folder on the same workload (after a warm-up)."""
    with bench.serving(model_dir, label) as server:
        bench.loop(server, "warmup", workloads["warmup"], LOW)
        phase = bench.loop(server, f"c32_{label}", workloads["c32"], HIGH)
    return summarize(phase)["throughput_rps"]


def export(model_dir: Path, output: Path, budget: Budget, *flags: str) -> str | None:
    """`camtl export --format onnx`; None, or why it failed."""
    command = [sys.executable, "-m", "camtl.cli", "export", str(model_dir)]
    command += ["--format", "onnx", "--output", str(output), *flags]
    try:
        done = subprocess.run(
            command,
            env=_child_env(),
            capture_output=True,
            text=True,
            timeout=budget.export_timeout_s,
        )
    except subprocess.TimeoutExpired:
        return f"camtl export {' '.join(flags)} ran past {budget.export_timeout_s}s"
    if done.returncode != 0:
        return f"camtl export {' '.join(flags)} failed: {(done.stderr or done.stdout)[-500:]}"
    return None


def onnx_phases(bench: Bench, workloads: dict, torch_rps: float) -> dict[str, Any]:
    """fp32 ONNX over PyTorch, and int8 over fp32 ONNX when the export can quantize."""
    out: dict[str, Any] = {
        "onnx_over_torch": None,
        "int8_over_fp32_onnx": None,
        "throughput_rps_c32": {"torch": torch_rps},
    }
    fp32 = bench.workdir / "onnx_fp32"
    failed = export(bench.args.run_dir, fp32, bench.budget)
    if failed:
        out["onnx_over_torch_reason"] = failed
        out["int8_over_fp32_onnx_reason"] = "no fp32 ONNX export to compare with"
        return out
    fp32_rps = served_throughput(bench, fp32, "onnx_fp32", workloads)
    out["throughput_rps_c32"]["onnx_fp32"] = fp32_rps
    out["onnx_over_torch"] = ratio(torch_rps, fp32_rps)  # time per request: onnx / torch
    if bench.args.skip_int8:
        out["int8_over_fp32_onnx_reason"] = "skipped: --skip-int8"
        return out
    # --accept-drop: the time is measured whatever the gate says; its dev table is kept
    int8 = bench.workdir / "onnx_int8"
    failed = export(bench.args.run_dir, int8, bench.budget, "--quantize", "int8", "--accept-drop")
    if failed:
        out["int8_over_fp32_onnx_reason"] = failed
        return out
    info = json.loads((int8 / "export.json").read_text(encoding="utf-8"))
    out["int8_dev_parity"] = info.get("parity")
    out["int8_tasks_over_max_drop"] = info.get("over_max_drop")
    int8_rps = served_throughput(bench, int8, "onnx_int8", workloads)
    out["throughput_rps_c32"]["onnx_int8"] = int8_rps
    out["int8_over_fp32_onnx"] = ratio(fp32_rps, int8_rps)
    return out


def warmed_rss(bench: Bench, model_dir: Path, label: str, items: list[Item]) -> int:
    """RSS of a fresh server of ``model_dir`` after serving ``items`` at c32."""
    with bench.serving(model_dir, label) as server:
        bench.loop(server, "rss_warmup", items, HIGH)
        return server.rss()


def rss_phase(
    bench: Bench, records: dict[str, list[dict[str, Any]]], long: dict[str, Any]
) -> dict[str, Any]:
    """One server of every task over N one-task servers, each fresh and warmed alike."""
    count = bench.budget.rss_warmup_requests
    tasks = list(records)
    singles = bench.args.single_task_runs
    runs = singles or [bench.args.run_dir] * len(tasks)
    all_tasks = warmed_rss(bench, bench.args.run_dir, "rss_all", mixed_items(records, long, count))
    one_task = []
    for i, run in enumerate(runs):
        task = task_specs(run)[0].name if singles else tasks[i]
        items = mixed_items({task: records[task]}, {task: long[task]}, count)
        one_task.append(warmed_rss(bench, run, f"rss_one_{task}", items))
    method = (
        f"{len(runs)} single-task runs given with --single-task-runs, one process each"
        if singles
        else f"{len(runs)} processes of this same run, each sent only its own task's requests "
        "(a proxy for one single-task model per task: same encoder, so about the same "
        "memory; it overstates each by the other tasks' heads and CA-MTL's modules)"
    )
    method += (
        f"; every server a fresh process, its RSS (children included) read after {count} "
        "requests of its own tasks' records, short and long, at c32"
    )
    return {
        "rss_over_seven_processes": ratio(all_tasks, sum(one_task)),
        "rss_processes": len(runs),
        "rss_method": method,
        "rss_bytes": {"all_tasks": all_tasks, "one_task": one_task, "one_task_sum": sum(one_task)},
    }


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="where the JSON results go")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few requests")
    for name in Budget.__dataclass_fields__:
        parser.add_argument(
            f"--{name.replace('_', '-').removesuffix('-s')}",
            dest=name,
            type=type(getattr(Budget(), name)),
            help=f"default {getattr(Budget(), name)} ({getattr(QUICK, name)} with --quick)",
        )
    parser.add_argument("--long-chars", type=int, default=LONG_CHARS)
    parser.add_argument(
        "--serve-flag",
        action="append",
        default=[],
        help="a flag for every `camtl serve` (e.g. --serve-flag=--max-wait-ms=5)",
    )
    parser.add_argument(
        "--single-task-runs",
        type=Path,
        nargs="+",
        help="real single-task runs for the RSS comparison (default: this run once per task)",
    )
    for phase in ("predict", "flood", "rss", "onnx", "int8"):
        parser.add_argument(f"--skip-{phase}", action="store_true")
    return parser.parse_args(argv)


def budget_of(args: argparse.Namespace) -> Budget:
    base = QUICK if args.quick else Budget()
    given = {
        k: getattr(args, k) for k in Budget.__dataclass_fields__ if getattr(args, k) is not None
    }
    return replace(base, **given)


def build_workloads(
    records: dict[str, list[dict[str, Any]]], long: dict[str, Any], budget: Budget
) -> dict[str, list[Item]]:
    return {
        "warmup": short_items(records, budget.warmup_requests),
        "c1": short_items(records, budget.c1_requests),
        "c32": short_items(records, budget.c32_requests),
        "mixed": mixed_items(records, long, budget.mixed_requests),
        "flood": mixed_items(records, long, budget.flood_requests),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    budget = budget_of(args)
    specs = task_specs(args.run_dir)
    records = {spec.name: task_records(spec, budget.records_per_task) for spec in specs}
    long = {task: lengthen(rows, args.long_chars) for task, rows in records.items()}
    workloads = build_workloads(records, long, budget)
    result: dict[str, Any] = {}
    if not args.skip_predict:  # before any server, alone on the machine
        result["predict_records_per_s"] = predict_throughput(
            args.run_dir, workloads["c32"], budget.predict_batch_size
        )
    with tempfile.TemporaryDirectory(prefix="serve_load-") as folder:
        bench = Bench(args, budget, Path(folder))
        result.update(torch_phases(bench, workloads, records))
        torch_rps = summarize(bench.phases["c32"])["throughput_rps"]
        if args.skip_onnx:
            result.update(
                onnx_over_torch=None,
                onnx_over_torch_reason="skipped: --skip-onnx",
                int8_over_fp32_onnx=None,
                int8_over_fp32_onnx_reason="skipped: --skip-onnx",
            )
        else:
            result.update(onnx_phases(bench, workloads, torch_rps))
        if args.skip_rss:
            result.update(rss_over_seven_processes=None, rss_method="skipped: --skip-rss")
        else:
            result.update(rss_phase(bench, records, long))
    return report(args, budget, bench, result, specs)


def report(
    args: argparse.Namespace,
    budget: Budget,
    bench: Bench,
    result: dict[str, Any],
    specs: list[Any],
) -> dict[str, Any]:
    summaries = {name: summarize(phase) for name, phase in bench.phases.items()}
    c1, c32 = summaries["c1"], summaries["c32"]
    predict = result.get("predict_records_per_s")
    return {
        "throughput_c1_rps": c1["throughput_rps"],
        "throughput_c32_rps": c32["throughput_rps"],
        "latency_ms_c1": c1["latency_ms"],
        "latency_ms_c32": c32["latency_ms"],
        "throughput_c32_over_c1": ratio(c32["throughput_rps"], c1["throughput_rps"]),
        "throughput_c32_over_predict": ratio(c32["throughput_rps"], predict),
        "predict_records_per_s": predict,
        "predict_method": None
        if predict is None
        else "in-process: predict_file's calls per task on the c32 records, batch "
        f"{budget.predict_batch_size}; model load and file I/O excluded",
        "mixed_length_c32": summaries["mixed_c32"],
        "flood": summaries.get("flood"),
        **result,
        "onnx_over_torch_measure": RATIO_MEASURE,
        "int8_over_fp32_onnx_measure": RATIO_MEASURE,
        "errors": sum(count_errors(phase) for phase in bench.phases.values()),
        "errors_by_workload": {n: error_breakdown(p) for n, p in bench.phases.items()},
        "server_log_errors": bench.log_errors,
        "server_exit_codes": bench.exit_codes,
        "workloads": summaries,
        "setup": {
            "run_dir": str(args.run_dir),
            "tasks": [spec.name for spec in specs],
            "max_length": {spec.name: spec.max_length for spec in specs},
            "long_chars": args.long_chars,
            "budget": asdict(budget),
            "serve_flags": args.serve_flag,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "command": args.command,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.command = " ".join(["python", sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # a SIGTERM of the bench unwinds like Ctrl-C, so that every server it started is stopped
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    keys = ("throughput_c32_over_c1", "throughput_c32_over_predict", "mixed_batch_fraction_c32")
    keys += ("rss_over_seven_processes", "onnx_over_torch", "int8_over_fp32_onnx", "errors")
    print(json.dumps({k: result.get(k) for k in keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
