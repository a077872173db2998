"""`--device` of serve, predict and evaluate: one parser, one error line, the CPU as before.

GPUs are simulated by patching torch.cuda, so every case runs on a CPU-only machine; on a
machine with GPUs the "no GPU" cases patch them away.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from camtl import precision
from camtl.cli import main
from camtl.device import parse_device, resolve_device
from camtl.errors import ConfigError
from camtl.export import CUDA_PROVIDER, onnx_providers
from camtl.precision import resolve_precision
from camtl.predict import run_precision
from camtl.testing.cli import cli_error

MALFORMED = ["gpu", "", "cuda:x", "cuda:", "cuda:-1", "cuda0", "mps", "cpu:0", "cuda:0:1"]


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture(scope="module")
def tiny_run(two_task_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared two-task run, so that what these tests write stays here."""
    return Path(shutil.copytree(two_task_run, tmp_path_factory.mktemp("device") / "run"))


# ------------------------------------------------------------------------ parse and resolve


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("cpu", ("cpu", None)),
        ("CPU", ("cpu", None)),
        ("auto", ("auto", None)),
        ("cuda", ("cuda", 0)),
        ("cuda:0", ("cuda", 0)),
        ("cuda:3", ("cuda", 3)),
        (" cuda:1 ", ("cuda", 1)),
    ],
)
def test_parse_device(value: str, parsed: tuple[str, int | None]) -> None:
    assert parse_device(value) == parsed


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_device_names_the_flag_and_value(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_device(value)
    assert str(caught.value) == f"--device {value!r}: expected cpu, cuda, cuda:N or auto"


@pytest.mark.usefixtures("no_gpu")
@pytest.mark.parametrize(("value", "resolved"), [("cpu", "cpu"), ("auto", "cpu")])
def test_resolve_without_a_gpu(value: str, resolved: str) -> None:
    assert resolve_device(value) == resolved


@pytest.mark.usefixtures("no_gpu")
@pytest.mark.parametrize("value", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_a_gpu_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^--device '{value}': CUDA is not available here"):
        resolve_device(value)


@pytest.mark.usefixtures("two_gpus")
@pytest.mark.parametrize(
    ("value", "resolved"),
    [("cpu", "cpu"), ("auto", "cuda:0"), ("cuda", "cuda:0"), ("cuda:1", "cuda:1")],
)
def test_resolve_with_two_gpus(value: str, resolved: str) -> None:
    assert resolve_device(value) == resolved
    assert resolve_device(resolved) == resolved  # idempotent


@pytest.mark.usefixtures("two_gpus")
def test_gpu_index_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_device("cuda:2")
    assert str(caught.value) == "--device 'cuda:2': no such GPU (2 visible: cuda:0 to cuda:1)"


# ------------------------------------------------------------------------ precision and ONNX


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16"), (False, "no")])
def test_auto_precision_follows_the_gpu(
    monkeypatch: pytest.MonkeyPatch, tiny_run: Path, bf16: bool, expected: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_, **__: bf16)
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: not bf16)  # the CPU differs
    assert resolve_precision("auto", "cuda:1") == expected
    assert run_precision(tiny_run, "cuda:0") == expected
    assert run_precision(tiny_run) == ("no" if bf16 else "bf16")  # the CPU as before


def test_onnx_providers() -> None:
    assert onnx_providers("cpu", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    both = [CUDA_PROVIDER, "CPUExecutionProvider"]
    assert onnx_providers("cuda:1", both) == [(CUDA_PROVIDER, {"device_id": 1})]
    with pytest.raises(ConfigError) as caught:
        onnx_providers("cuda:0", ["CPUExecutionProvider"])
    assert str(caught.value).startswith("--device 'cuda:0': this onnxruntime has no ")
    assert "onnxruntime-gpu" in str(caught.value)


# ------------------------------------------------------------------------ the CLI

COMMANDS = {
    "predict": ["predict", "no-run", "--task", "t", "--input", "in.jsonl", "--output", "o"],
    "evaluate": ["evaluate", "no-run"],
    "serve": ["serve", "no-run"],
}


@pytest.mark.usefixtures("no_gpu")
@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("cuda", "--device 'cuda': CUDA is not available here"),
        ("cuda:1", "--device 'cuda:1': CUDA is not available here"),
        ("gpu", "--device 'gpu': expected cpu, cuda, cuda:N or auto"),
    ],
)
def test_cli_refuses_a_device_in_one_line(
    capsys: pytest.CaptureFixture[str], command: str, value: str, message: str
) -> None:
    if command == "serve":
        pytest.importorskip("uvicorn")
    cli_error(capsys, *COMMANDS[command], "--device", value, parts=(message,))


@pytest.mark.usefixtures("two_gpus")
def test_zero_shot_refuses_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    cli_error(
        capsys,
        "evaluate",
        "no-run",
        "--zero-shot",
        "task.yaml",
        "--device",
        "cuda",
        parts=("--device 'cuda': --zero-shot runs on the CPU only",),
    )


def test_cli_device_error_exits_nonzero_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, also on a machine with one
    result = subprocess.run(
        [sys.executable, "-m", "camtl.cli", "evaluate", str(tmp_path), "--device", "cuda"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: --device 'cuda': CUDA is not available here")
    assert result.stderr.count("\n") == 1


def test_predict_and_evaluate_on_cpu_as_before(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "in.jsonl"
    rows = [
        {"premise": "good john", "hypothesis": "bad paris"},
        {"premise": "a", "hypothesis": "b"},
    ]
    inputs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outputs = {}
    for name, flags in (
        ("default", []),
        ("cpu", ["--device", "cpu"]),
        ("auto", ["--device", "auto"]),
    ):
        out = tmp_path / f"{name}.jsonl"
        args = ["predict", str(tiny_run), "--task", "pairs", "--input", str(inputs)]
        assert main([*args, "--output", str(out), *flags]) == 0
        outputs[name] = out.read_text()
    if not torch.cuda.is_available():
        assert outputs["auto"] == outputs["default"]
    assert outputs["cpu"] == outputs["default"]
    assert len(outputs["cpu"].splitlines()) == 2
    assert main(["evaluate", str(tiny_run), "--device", "cpu"]) == 0
    info = json.loads((tiny_run / "eval_dev.json").read_text())["run_info"]
    assert info["device"] == "cpu"
    assert info["precision"] == run_precision(tiny_run)


def test_serve_on_cpu(tiny_run: Path) -> None:
    pytest.importorskip("fastapi")
    from camtl.testing.server import ServerProcess as Server

    server = Server(tiny_run, "--device", "cpu")
    try:
        body = {"task": "pairs", "inputs": [{"premise": "good", "hypothesis": "bad"}]}
        status, answer, _ = server.call("POST", "/v1/predict", body)
        assert status == 200, answer
        assert len(answer["predictions"]) == 1
    finally:
        assert server.stop() == 0


@pytest.mark.usefixtures("no_gpu")
def test_the_library_takes_device_values_and_str_paths_as_the_cli_does(tiny_run: Path) -> None:
    """from_pretrained and InferenceEngine read a --device value (auto included) and a
    str path; a bad value or an unknown task is one error naming it, not a traceback."""
    from camtl.modeling import MultiTaskModel
    from camtl.serving.engine import InferenceEngine, RequestError

    assert next(MultiTaskModel.from_pretrained(tiny_run, device="auto").parameters()).is_cpu
    for bad in ("gpu", "cuda"):
        with pytest.raises(ConfigError, match=f"--device '{bad}'"):
            MultiTaskModel.from_pretrained(tiny_run, device=bad)
    engine = InferenceEngine(str(tiny_run), device="auto")
    with pytest.raises(RequestError, match="task: unknown task 'nope'") as raised:
        engine.check_records("nope", [{"text": "a"}])
    assert raised.value.status == 404
