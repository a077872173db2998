"""`camtl export --quantize int8`: an int8 graph that `camtl predict` runs, and the parity
gate on the run's dev split (a limit of -1000 points makes its refusal deterministic)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camtl.cli import main
from camtl.quantize import check_parity, drop, format_parity, too_large
from camtl.tasks.kinds import get_kind
from camtl.testing.runs import train_kinds_run

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

KINDS = ["classification", "regression", "multiple_choice"]  # choice_ids: an extra input
# a marker for _export: the gate's limit set to -1000 points, so every task "drops" more
# than it and the gate refuses (--max-drop itself must be >= 0)
NEVER = "<gate refuses>"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("quantize")
    return train_kinds_run(root, tiny_encoder_dir, KINDS, max_length=32, mixed_precision="no")


def _export(run: Path, out: Path, *extra: str) -> int:
    from camtl import quantize

    flags = [e for e in extra if e != NEVER]
    with pytest.MonkeyPatch.context() as patch:
        if NEVER in extra:
            patch.setattr(quantize, "MAX_DROP", -1000.0)
        return main(["export", str(run), "--output", str(out), "--quantize", "int8", *flags])


def _no_staging_left(folder: Path) -> bool:
    return not list(folder.glob(".*.partial"))


@pytest.fixture(scope="module")
def accepted(run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An int8 export written past a refusing gate with --accept-drop, and what it printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("accepted") / "int8"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert _export(run, out, NEVER, "--accept-drop") == 0
    return out, printed.getvalue()


def test_an_int8_export_records_its_parity_and_holds_int8_weights(accepted) -> None:
    import onnx

    out, printed = accepted
    info = json.loads((out / "export.json").read_text())
    assert info["quantize"] == "int8" and info["parity_split"] == "dev"
    tasks = {f"{k}_task" for k in KINDS}
    assert set(info["parity"]) == tasks and set(info["over_max_drop"]) == tasks
    for row in info["parity"].values():
        assert set(row) == {"metric", "fp32", "int8", "delta"}
        assert row["delta"] == pytest.approx(row["int8"] - row["fp32"])
    ops = {node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops
    assert all(task in printed for task in tasks) and "delta" in printed
    assert "## int8" in (out / "README.md").read_text()
    assert _no_staging_left(out.parent)


@pytest.mark.parametrize("kind_name", KINDS)
def test_camtl_predict_runs_the_int8_export(accepted, kind_name: str, tmp_path: Path) -> None:
    out, _ = accepted
    sample = get_kind(kind_name).sample()
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps({c: r[c] for c in sample.text_columns}) + "\n" for r in sample.records)
    )
    target = tmp_path / "out.jsonl"
    argv = ["predict", str(out), "--task", f"{kind_name}_task", "--input", str(source)]
    assert main([*argv, "--output", str(target)]) == 0
    assert len(target.read_text().splitlines()) == len(sample.records)


def test_the_gate_refuses_and_leaves_no_export(run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "int8"
    assert _export(run, out, NEVER) == 3
    captured = capsys.readouterr()
    assert "int8 export refused" in captured.err and "--accept-drop" in captured.err
    header = captured.out.splitlines()[0].split()
    assert header == ["task", "metric", "fp32", "int8", "delta"]
    assert all(f"{k}_task" in captured.out for k in KINDS)
    assert not out.exists() and _no_staging_left(tmp_path)


def test_a_refused_overwrite_keeps_the_folder_as_it_was(run: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    assert _export(run, tmp_path, NEVER, "--overwrite") == 3
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert _no_staging_left(tmp_path.parent)


def test_missing_dev_data_is_one_clear_error(run: Path, tmp_path: Path, capsys) -> None:
    """The run's task data moved away: the gate names what it needs and what is missing."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    meta = json.loads((copy / "camtl_model.json").read_text())
    source = meta["tasks"][0]["source"]
    source["paths"] = {split: str(tmp_path / f"gone_{split}.jsonl") for split in source["paths"]}
    (copy / "camtl_model.json").write_text(json.dumps(meta))
    assert _export(copy, tmp_path / "int8") == 2
    err = capsys.readouterr().err
    assert "dev split" in err and "gone_" in err and "file not found" in err
    assert not (tmp_path / "int8").exists() and _no_staging_left(tmp_path)


def test_drop_options_need_int8(run: Path, tmp_path: Path, capsys) -> None:
    assert main(["export", str(run), "--output", str(tmp_path / "x"), "--accept-drop"]) == 2
    assert "--quantize int8" in capsys.readouterr().err


def test_a_drop_is_a_loss_in_the_metrics_direction() -> None:
    table = {
        "a": {"metric": "accuracy", "fp32": 80.0, "int8": 78.5, "delta": -1.5},
        "b": {"metric": "mse", "fp32": 0.10, "int8": 1.30, "delta": 1.2},
        "c": {"metric": "pearson", "fp32": 50.0, "int8": 52.0, "delta": 2.0},
    }
    assert [drop(row) for row in table.values()] == [1.5, 1.2, -2.0]
    assert too_large(table, 1.0) == ["a", "b"] and too_large(table, 2.0) == []
    check_parity(table, 2.0)
    assert "+2.0000" in format_parity(table)


@pytest.fixture(scope="module")
def fp32_export(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fp32") / "onnx"
    assert main(["export", str(run), "--output", str(out)]) == 0
    return out


def test_the_benchmark_times_int8_over_fp32_on_the_same_batches(
    run: Path, fp32_export: Path, tmp_path: Path, bench_script
) -> None:
    from transformers import AutoTokenizer

    from camtl.data.prepare import prepare_tasks
    from camtl.export import load_model

    parity = bench_script("onnx_parity")
    int8 = parity.quantized_copy(fp32_export, tmp_path / "int8")
    assert json.loads((int8 / "export.json").read_text())["quantize"] == "int8"
    fp32_model, int8_model = load_model(fp32_export), load_model(int8)
    tokenizer = AutoTokenizer.from_pretrained(run)
    tasks = prepare_tasks(fp32_model.tasks, tokenizer, ("dev",), labels=fp32_model.labels)
    batches = parity.feature_batches(tasks, "dev", 4)
    assert sum(map(len, batches)) == sum(len(t.features["dev"]) for t in tasks)
    timing = parity.int8_over_fp32_onnx(fp32_model, int8_model, batches, tokenizer.pad_token_id)
    assert timing["fp32_onnx_s"] > 0 and timing["int8_onnx_s"] > 0
    assert timing["int8_over_fp32_onnx"] == timing["int8_onnx_s"] / timing["fp32_onnx_s"]


def test_int8_overwrites_an_fp32_export_whole(run: Path, fp32_export: Path, tmp_path) -> None:
    """No weights of the fp32 graph are left beside the int8 one."""
    import shutil

    out = tmp_path / "onnx"
    shutil.copytree(fp32_export, out)
    assert _export(run, out, "--overwrite", "--accept-drop") == 0
    assert json.loads((out / "export.json").read_text())["quantize"] == "int8"
    assert not (out / "model.onnx.data").exists()
