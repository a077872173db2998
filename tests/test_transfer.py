"""`camtl add-task` and `camtl evaluate --zero-shot` on a tiny CA-MTL run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from camtl.cli import main
from camtl.data.collate import collate_features
from camtl.data.prepare import prepare_tasks
from camtl.evaluation.runs import load_run
from camtl.testing.cli import cli_error
from camtl.testing.runs import write_config, write_task_files


def old_task_logits(run_dir: Path) -> dict[str, torch.Tensor]:
    """Logits of every task of the source run on its own training examples."""
    config, model, tokenizer = load_run(run_dir)
    names = [t.name for t in config.tasks][:3]
    tasks = prepare_tasks(
        [t for t in config.tasks if t.name in names], tokenizer, ("train",), labels=model.labels
    )
    out = {}
    with torch.no_grad():
        for task in tasks:
            batch = collate_features(task.features["train"][:8], tokenizer.pad_token_id)
            out[task.spec.name] = model(
                batch["input_ids"],
                batch["attention_mask"],
                batch["task_ids"],
                batch["token_type_ids"],
            ).logits[task.spec.name]
    return out


def test_add_task_leaves_other_tasks_unchanged(camtl_run: Path, tmp_path: Path) -> None:
    task_file = camtl_run.parent / "new_task.yaml"
    out = tmp_path / "added"
    assert (
        main(
            [
                "add-task",
                str(camtl_run),
                str(task_file),
                "--fraction",
                "0.5",
                "--steps",
                "5",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    before, after = old_task_logits(camtl_run), old_task_logits(out)
    for name in before:
        assert torch.equal(before[name], after[name]), name
    info = json.loads((out / "transfer.json").read_text())
    # auto: the trained task whose row scored best in the probe (the new head fitted alone
    # with each row); the zero-shot table stays as a diagnostic
    rows = ["pairs", "scores", "ner", "random"]
    assert [r["embedding"] for r in info["probe"]] == rows
    assert [r["embedding"] for r in info["zero_shot"]] == rows
    assert info["zero_shot"][0]["head"] == "pairs"  # same type and labels: its head serves
    best = max(info["probe"][:3], key=lambda r: r["score"])["embedding"]
    assert info["init"] == f"copy:{best}"
    # --fraction keeps the seeded subset that train_fraction would: half of 54 train rows
    assert info["train_examples"] == 27 and info["steps"] == 5
    report = json.loads((out / "report.json").read_text())
    assert list(report["results"]["tasks"]) == ["pairs_new"]
    # the new run is a full run directory: evaluate scores every task, old and new
    assert main(["evaluate", str(out)]) == 0
    evaluated = json.loads((out / "eval_dev.json").read_text())["results"]["tasks"]
    assert list(evaluated) == ["pairs", "scores", "ner", "pairs_new"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["tasks"][-1]["train_fraction"] == 0.5
    assert not (camtl_run / "transfer.json").exists()  # the source run is left alone


def test_add_task_random_init_trains_only_the_new_row_and_head(
    camtl_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "random"
    assert (
        main(
            [
                "add-task",
                str(camtl_run),
                str(camtl_run.parent / "new_task.yaml"),
                "--init",
                "random",
                "--steps",
                "3",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    _, source, _ = load_run(camtl_run)
    _, added, _ = load_run(out)
    old_rows = source.encoder.task_embedding.table.weight
    new_rows = added.encoder.task_embedding.table.weight
    assert new_rows.shape[0] == old_rows.shape[0] + 1
    assert torch.equal(new_rows[:-1], old_rows)
    for name, param in source.state_dict().items():
        if "task_embedding.table" not in name:
            assert torch.equal(param, added.state_dict()[name]), name
    assert json.loads((out / "transfer.json").read_text())["zero_shot"] is None


def test_joint_adaptation_changes_the_shared_parameters(camtl_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "joint"
    assert (
        main(
            [
                "add-task",
                str(camtl_run),
                str(camtl_run.parent / "new_task.yaml"),
                "--init",
                "copy:pairs",
                "--steps",
                "2",
                "--joint",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    before, after = old_task_logits(camtl_run), old_task_logits(out)
    assert not torch.equal(before["pairs"], after["pairs"])


def test_zero_shot_command(camtl_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["evaluate", str(camtl_run), "--zero-shot", str(camtl_run.parent / "new_task.yaml")])
        == 0
    )
    out = capsys.readouterr().out
    assert "| random |" in out and "| pairs |" in out
    rows = json.loads((camtl_run / "zero_shot_pairs_new.json").read_text())
    assert len(rows) == 4 and all(0.0 <= r["score"] <= 100.0 for r in rows)


def test_add_task_errors(
    camtl_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = camtl_run.parent
    (tmp_path / "dup.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "pairs",
                "type": "classification",
                "text_columns": ["premise", "hypothesis"],
                "label_column": "label",
                "source": {"paths": {"train": str(root / "pairs.jsonl")}},
            }
        )
    )
    out = tmp_path / "never"
    cli_error(
        capsys,
        "add-task",
        str(camtl_run),
        str(tmp_path / "dup.yaml"),
        "--output",
        str(out),
        parts=("dup.yaml", "'pairs' is already in the model"),
    )
    cli_error(
        capsys,
        "add-task",
        str(camtl_run),
        str(root / "new_task.yaml"),
        "--init",
        "copy:nope",
        "--output",
        str(out),
        parts=("--init", "copy:pairs"),
    )
    cli_error(
        capsys,
        "add-task",
        str(camtl_run),
        str(root / "new_task.yaml"),
        "--fraction",
        "1.5",
        "--output",
        str(out),
        parts=("--fraction",),
    )
    cli_error(
        capsys,
        "add-task",
        str(camtl_run),
        str(root / "new_task.yaml"),
        "--output",
        str(root),
        parts=("holds the source run",),  # --overwrite would delete the source
    )
    (out / "notes.txt").parent.mkdir()
    (out / "notes.txt").write_text("mine")
    cli_error(
        capsys,
        "add-task",
        str(camtl_run),
        str(root / "new_task.yaml"),
        "--output",
        str(out),
        parts=("folder is not empty",),
    )
    assert (out / "notes.txt").read_text() == "mine"


def test_plain_model_gets_a_linear_probe(
    tmp_path: Path, tiny_encoder_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No task embedding on a plain model: only the head trains; row inits are refused."""
    root = tmp_path / "plain"
    write_task_files(root)
    path = write_config(root, tiny_encoder_dir, max_steps=2, eval_every=2)
    config = yaml.safe_load(path.read_text())
    config["tasks"] = config["tasks"][:1]
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    new = {
        "name": "scores_new",
        "type": "regression",
        "text_columns": ["text"],
        "label_column": "score",
        "source": {"paths": {"train": "scores.csv"}},
    }
    (root / "new.yaml").write_text(yaml.safe_dump(new))
    cli_error(
        capsys,
        "add-task",
        str(root / "run"),
        str(root / "new.yaml"),
        "--output",
        str(tmp_path / "x"),
        parts=("--init auto", "plain", "--init random"),
    )
    cli_error(
        capsys,
        "evaluate",
        str(root / "run"),
        "--zero-shot",
        str(root / "new.yaml"),
        parts=("plain",),
    )
    out = tmp_path / "probe"
    assert (
        main(
            [
                "add-task",
                str(root / "run"),
                str(root / "new.yaml"),
                "--init",
                "random",
                "--steps",
                "2",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    _, source, _ = load_run(root / "run")
    _, added, _ = load_run(out)
    for name, param in source.state_dict().items():
        assert torch.equal(param, added.state_dict()[name]), name
    assert "scores_new" in added.heads
