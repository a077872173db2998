"""bench/serve_load.py --quick against a real `camtl serve` of the tiny every-kind run: the
JSON has every key with a sane type (no timings are asserted; errors are counted, not
required to be zero)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("fastapi")

RATIOS = (
    "throughput_c32_over_c1",
    "throughput_c32_over_predict",
    "rss_over_seven_processes",
    "throughput_c1_rps",
    "throughput_c32_rps",
    "predict_records_per_s",
)
WORKLOADS = ("warmup", "c1", "c32", "mixed_c32", "flood", "rss_warmup")


def test_quick_mode_writes_every_key(
    bench_script: Callable[[str], ModuleType], tmp_path: Path, served_run: Path
) -> None:
    run = served_run
    out = tmp_path / "serve_load.json"
    argv = [str(run), "--out", str(out), "--quick", "--skip-onnx", "--single-task-runs", str(run)]
    assert bench_script("serve_load").main(argv) == 0
    result = json.loads(out.read_text())

    for key in RATIOS:
        assert isinstance(result[key], float) and result[key] > 0, key
    assert 0.0 <= result["mixed_batch_fraction_c32"] <= 1.0
    for key in ("latency_ms_c1", "latency_ms_c32"):
        assert set(result[key]) == {"p50", "p99", "mean"}
        assert all(isinstance(v, float) for v in result[key].values())
    assert result["rss_processes"] == 1 and "--single-task-runs" in result["rss_method"]
    assert result["onnx_over_torch"] is None and "--skip-onnx" in result["onnx_over_torch_reason"]
    assert result["int8_over_fp32_onnx"] is None and result["int8_over_fp32_onnx_reason"]

    for key in ("mixed_length_c32", "flood"):  # every request is counted as one outcome
        summary = result[key]
        counted = summary["ok"] + summary["rejected_503"] + summary["errors"]
        assert 0 < counted <= summary["requests_planned"]
    assert result["mixed_length_c32"]["truncated_responses"] <= result["mixed_length_c32"]["ok"]

    assert result["errors"] == 0, result["errors_by_workload"]  # floods of mixed lengths too
    by_workload = result["errors_by_workload"]
    assert set(by_workload) == set(WORKLOADS)
    assert sum(w["errors"] for w in by_workload.values()) == result["errors"]
    for workload in by_workload.values():
        assert isinstance(workload["status_counts"], dict)
        assert all(isinstance(body, str) for body in workload["examples"])
    assert isinstance(result["server_log_errors"], dict)
    assert result["setup"]["tasks"] and result["command"].startswith("python")


def test_a_503_with_retry_after_is_a_rejection_and_the_rest_are_errors(
    bench_script: Callable[[str], ModuleType],
) -> None:
    load = bench_script("serve_load")
    outcome = load.Outcome
    phase = load.Phase("flood", planned=7, concurrency=7, unfinished=1)
    phase.outcomes = [
        outcome("200", 0.1),
        outcome("503", 0.1, retry_after=True),
        outcome("503", 0.1, body="no Retry-After"),
        outcome("500", 0.1, body="internal error"),
        outcome("timeout", 0.1, body="TimeoutError()"),
        outcome("connection", 0.1, body="ConnectionRefusedError()"),
    ]
    summary = load.summarize(phase)
    assert (summary["ok"], summary["rejected_503"], summary["errors"]) == (1, 1, 5)
    breakdown = load.error_breakdown(phase)
    assert breakdown["errors"] == 5 and breakdown["status_counts"]["unfinished"] == 1
    assert breakdown["examples"] == ["no Retry-After", "internal error", "TimeoutError()"]
