"""`camtl export --format onnx`: one graph of the whole model (a task of every kind) whose
onnxruntime predictions equal PyTorch's; `camtl predict` and `camtl serve` run the export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from camtl.cli import main
from camtl.tasks.kinds import BatchField, get_kind, kind_names
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


# an input field of each layout, as a kind would declare it
LAID_OUT = [
    BatchField("weights", torch.float, math.nan, layout="scalar", role="input"),
    BatchField("marks", torch.long, -1, layout="tokens", role="input"),
    BatchField("picks", torch.long, -100, layout="vector", role="input"),
]


def test_input_fields_are_made_up_by_their_layout() -> None:
    from camtl.export import field_tensor

    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    scalar, tokens, vector = (field_tensor(f, mask, width=3) for f in LAID_OUT)
    assert scalar.shape == (3,) and scalar.dtype == torch.float and scalar.isfinite().all()
    assert tokens.shape == (3, 4) and tokens.dtype == torch.long
    assert (tokens[mask == 0] == -1).all() and (tokens[mask == 1] >= 0).all()
    assert vector.shape == (3, 3) and vector[-1, -1] == -100 and (vector[:2] >= 0).all()


def test_fields_of_every_layout_keep_dynamic_axes_in_the_graph(tmp_path: Path) -> None:
    """Traced on one batch, the graph runs on another batch size, length and width."""
    import onnxruntime

    from camtl.export import field_axes, field_tensor

    class Head(nn.Module):
        def forward(self, ids, weights, marks, picks):
            tokens = (ids * (marks + 1)).sum(1).float()
            return tokens * weights + picks.clamp(min=0).sum(1).float()

    def inputs(rows: int, length: int, width: int) -> tuple[torch.Tensor, ...]:
        ids = torch.arange(rows * length).view(rows, length) % 7 + 1
        mask = torch.ones_like(ids)
        mask[-1, length // 2 :] = 0
        return (ids, *(field_tensor(f, mask, width) for f in LAID_OUT))

    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    dynamic = {
        "ids": {0: batch, 1: length},
        **{f.name: field_axes(f, batch, length) for f in LAID_OUT},
    }
    path = tmp_path / "head.onnx"
    names = ["ids", *(f.name for f in LAID_OUT)]
    torch.onnx.export(
        Head().eval(),
        inputs(2, 8, 3),
        str(path),
        dynamo=True,
        input_names=names,
        dynamic_shapes=dynamic,
        verbose=False,
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    check = inputs(4, 11, 5)
    (got,) = session.run(None, {n: t.numpy() for n, t in zip(names, check)})
    assert torch.allclose(torch.from_numpy(got), Head()(*check))
