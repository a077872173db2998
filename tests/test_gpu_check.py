"""bench/gpu_check's CPU-checkable parts: the script parses, the packed cache unpacks into
a cache camtl accepts (task files byte for byte), the burst's bodies and the step times.
The whole script runs on the CPU with `bash bench/gpu_check.sh --dry-run` (minutes)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors.torch import load_file, save_file

from camtl.data.assets import encoder_ready

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def gpu_check(bench_script: Callable[[str], ModuleType]) -> ModuleType:
    return bench_script("gpu_check")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fake_cache(root: Path) -> Path:
    """An encoder (weights, a tokenizer file, meta.json) and one task, as fetched."""
    encoder = root / "encoders" / "all-MiniLM-L6-v2"
    encoder.mkdir(parents=True)
    torch.manual_seed(0)
    save_file({"w": torch.randn(16, 8), "ids": torch.arange(4)}, str(encoder / "model.safetensors"))
    (encoder / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    files = {
        name: {"size": (encoder / name).stat().st_size, "sha256": _sha(encoder / name)}
        for name in ("model.safetensors", "vocab.txt")
    }
    (encoder / "meta.json").write_text(json.dumps({"name": "all-MiniLM-L6-v2", "files": files}))
    task = root / "tasks" / "snli"
    task.mkdir(parents=True)
    rows = [{"text": f"a {i}", "text_pair": f"b {i}", "label": "neutral"} for i in range(5)]
    (task / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    checksums = {"dev.jsonl": _sha(task / "dev.jsonl")}
    (task / "meta.json").write_text(json.dumps({"name": "snli", "checksums": checksums}))
    return root


def test_the_script_parses_and_refuses_unknown_arguments() -> None:
    script = ROOT / "bench" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    result = subprocess.run(
        ["bash", str(script), "--bogus"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "usage: bash bench/gpu_check.sh [pack | --dry-run]" in result.stderr


def test_pack_then_unpack_gives_a_cache_camtl_accepts(
    gpu_check: ModuleType, tmp_path: Path
) -> None:
    cache = _fake_cache(tmp_path / "cache")
    packed = tmp_path / "packed"
    gpu_check.pack(cache, packed, ["snli"])
    assert not list(packed.rglob("*.jsonl"))  # gzipped
    assert not list(packed.rglob("model.safetensors"))  # stored in fp16
    out = gpu_check.unpack(packed, tmp_path / "unpacked")
    task = "tasks/snli/dev.jsonl"
    assert (out / task).read_bytes() == (cache / task).read_bytes()
    encoder = out / "encoders" / "all-MiniLM-L6-v2"
    assert encoder_ready(encoder, deep=True)
    original = load_file(str(cache / "encoders" / "all-MiniLM-L6-v2" / "model.safetensors"))
    restored = load_file(str(encoder / "model.safetensors"))
    assert restored["w"].dtype == torch.float32
    torch.testing.assert_close(restored["w"], original["w"], rtol=2**-10, atol=1e-7)
    assert torch.equal(restored["ids"], original["ids"])


def test_pack_names_a_task_that_is_not_fetched(gpu_check: ModuleType, tmp_path: Path) -> None:
    cache = _fake_cache(tmp_path / "cache")
    with pytest.raises(SystemExit, match="task pos not fetched"):
        gpu_check.pack(cache, tmp_path / "packed", ["snli", "pos"])


def test_demo_tasks_are_read_from_the_config(gpu_check: ModuleType) -> None:
    assert gpu_check.config_tasks(ROOT / "configs" / "demo.yaml") == [
        "snli",
        "vader",
        "rt_polarity",
        "bbc_topic",
        "wnut16",
        "wnut16_qa",
        "pos",
    ]


def test_request_bodies_round_robin_with_the_fields_a_task_reads(
    gpu_check: ModuleType, tmp_path: Path
) -> None:
    cache = _fake_cache(tmp_path / "cache")
    tasks = [
        {"name": "snli", "inputs": ["text", "text_pair"]},
        {"name": "not_cached", "inputs": ["text"]},
    ]
    bodies = gpu_check.request_bodies(tasks, cache, requests=3, records=4)
    assert [b["task"] for b in bodies] == ["snli"] * 3
    assert all(len(b["inputs"]) == 4 for b in bodies)
    assert bodies[0]["inputs"][0] == {"text": "a 0", "text_pair": "b 0"}
    assert bodies[1]["inputs"][0] == {"text": "a 4", "text_pair": "b 4"}  # cycles the pool


def test_step_times(gpu_check: ModuleType, tmp_path: Path) -> None:
    logs = [{"step": 25, "elapsed_s": 3.0}, {"step": 100, "elapsed_s": 4.5}]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logs))
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 100, "train_s": 5.0}) + "\n")
    assert gpu_check.step_times(tmp_path) == {
        "train_s": 5.0,
        "step_s_mean": 0.05,
        "step_s_steady": 0.02,
        "steady_from_to": [25, 100],
    }


def test_batch_counters(gpu_check: ModuleType) -> None:
    text = "# HELP x\ncamtl_batch_size_sum 120.0\ncamtl_batch_size_count 4.0\nother 1\n"
    assert gpu_check._batch_counters(text) == (120.0, 4.0)
    assert gpu_check._batch_counters("") == (0.0, 0.0)
