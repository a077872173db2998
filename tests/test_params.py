"""`camtl params`: counts from a folder holding only config.json, on the meta device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camtl.cli import main

BERT_BASE = {
    "model_type": "bert",
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
}


@pytest.fixture()
def bert_base_dir(tmp_path: Path) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(BERT_BASE))
    return tmp_path


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["params", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_bert_base_nine_tasks_meets_the_paper_budget(
    bert_base_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    counts = run_json(capsys, "--model", str(bert_base_dir), "--tasks", "9")
    assert {"total", "trainable", "encoder", "ratio"} <= set(counts)
    assert counts["encoder"] == 108_891_648  # BERT-base without its pooler
    assert counts["ratio"] <= 1.15
    assert counts["trainable"] == counts["total"]  # nothing frozen by default


def test_plain_model_ratio_is_heads_only(
    bert_base_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = run_json(capsys, "--model", str(bert_base_dir), "--tasks", "1", "--architecture", "plain")
    two = run_json(capsys, "--model", str(bert_base_dir), "--tasks", "2", "--architecture", "plain")
    assert two["total"] - one["total"] == one["per_task"]


def test_missing_config_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["params", "--model", str(tmp_path / "nothing"), "--tasks", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --model")


def test_per_layer_generators_with_a_wide_z_exceed_the_budget(
    bert_base_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = run_json(capsys, "--model", str(bert_base_dir), "--tasks", "9")
    per_layer = run_json(
        capsys, "--model", str(bert_base_dir), "--tasks", "9", "--generators", "per_layer"
    )
    narrow = run_json(
        capsys,
        "--model",
        str(bert_base_dir),
        "--tasks",
        "9",
        "--generators",
        "per_layer",
        "--task-embedding-dim",
        "256",
    )
    assert shared["generators"] == "shared" and shared["task_embedding_dim"] == 768
    assert per_layer["ratio"] > 1.25 > 1.15 >= narrow["ratio"] > shared["ratio"]
    assert (
        main(["params", "--model", str(bert_base_dir), "--tasks", "9", "--generators", "per_layer"])
        == 0
    )
    assert "(per_layer FiLM generators, task embedding 768)" in capsys.readouterr().out


def test_options_of_another_encoder_kind_are_refused_in_one_line(
    bert_base_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["params", "--model", str(bert_base_dir), "--architecture", "plain"]
    assert main([*args, "--generators", "shared"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: params: encoder kind 'plain' has no options (given: generators)"]
    assert main([*args[:3], "--option", "bottleneck=large", "--option", "bottleneck_layers=2"]) == 0
    assert main([*args[:3], "--option", "bottleneck=huge"]) == 2
    assert "key 'model.camtl.bottleneck': 'huge' is not allowed" in capsys.readouterr().err
