"""`camtl export --format onnx`: one graph of the whole model (a task of every kind) whose
onnxruntime predictions equal PyTorch's; `camtl predict` and `camtl serve` run the export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camtl.cli import main
from camtl.tasks.kinds import get_kind, kind_names
from camtl.testing.runs import train_kinds_run

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

KINDS = kind_names()


def _run(root: Path, encoder: Path, architecture: str, kinds: list[str] = KINDS) -> Path:
    return train_kinds_run(root, encoder, kinds, architecture, max_length=32, mixed_precision="no")


@pytest.fixture(scope="module", params=["camtl", "plain"])
def exported(request, tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path):
    root = tmp_path_factory.mktemp(f"export_{request.param}")
    run = _run(root, tiny_encoder_dir, request.param)
    out = root / "onnx"
    assert main(["export", str(run), "--format", "onnx", "--output", str(out)]) == 0
    return run, out


def test_the_export_folder_holds_graph_tokenizer_labels_and_card(exported) -> None:
    _, out = exported
    for name in ("model.onnx", "export.json", "camtl_model.json", "tokenizer.json", "README.md"):
        assert (out / name).is_file(), name
    info = json.loads((out / "export.json").read_text())
    assert info["inputs"][:4] == ["input_ids", "attention_mask", "token_type_ids", "task_ids"]
    assert "choice_ids" in info["inputs"]
    assert set(info["outputs"]) == {f"{k}_task" for k in KINDS}


@pytest.mark.parametrize("kind_name", KINDS)
def test_onnxruntime_predictions_equal_pytorch(exported, kind_name: str, tmp_path: Path) -> None:
    run, out = exported
    sample = get_kind(kind_name).sample()
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps({c: r[c] for c in sample.text_columns}) + "\n" for r in sample.records)
    )
    results = []
    for folder in (run, out):
        target = tmp_path / f"{folder.name}.jsonl"
        argv = ["predict", str(folder), "--task", f"{kind_name}_task"]
        assert main([*argv, "--input", str(source), "--output", str(target)]) == 0
        results.append([json.loads(line) for line in target.read_text().splitlines()])
    torch_rows, onnx_rows = results
    for a, b in zip(torch_rows, onnx_rows):
        assert set(a) == set(b)
        for key, value in a.items():
            if key == "probabilities":
                pairs = (
                    zip(value.values(), b[key].values())
                    if isinstance(value, dict)
                    else zip(value, b[key])
                )
                assert all(abs(x - y) < 1e-3 for x, y in pairs)
            elif key == "score":
                assert abs(value - b[key]) < 1e-3
            else:
                assert value == b[key], key


def test_serve_runs_an_export(exported) -> None:
    from camtl.testing.server import ServerProcess as Server

    _, out = exported
    server = Server(out)
    try:
        status, body, _ = server.call(
            "POST",
            "/v1/predict",
            {
                "task": "multiple_choice_task",
                "inputs": [
                    {c: r[c] for c in get_kind("multiple_choice").sample().text_columns}
                    for r in get_kind("multiple_choice").sample().records
                ],
            },
        )
        assert status == 200 and len(body["predictions"]) == 4
    finally:
        assert server.stop() == 0


def test_export_refuses_a_non_empty_folder(exported, tmp_path: Path) -> None:
    run, _ = exported
    (tmp_path / "x").write_text("keep me")
    assert main(["export", str(run), "--format", "onnx", "--output", str(tmp_path)]) == 2
    assert (tmp_path / "x").read_text() == "keep me"


def test_a_model_without_input_fields_exports(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    """No multiple-choice task: the graph has the four base inputs only."""
    run = _run(tmp_path, tiny_encoder_dir, "camtl", ["classification", "token_tagging"])
    out = tmp_path / "onnx"
    assert main(["export", str(run), "--output", str(out)]) == 0
    info = json.loads((out / "export.json").read_text())
    assert info["inputs"] == ["input_ids", "attention_mask", "token_type_ids", "task_ids"]
