"""Smaller CLI surfaces: data list, compare, gradient accumulation and bf16 switches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from camtl.cli import main
from tests.test_train_e2e import write_config, write_task_files


def test_data_list_names_every_registered_task(capsys: pytest.CaptureFixture[str]) -> None:
    from camtl.tasks import task_names

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in task_names():
        assert f"\n{name} " in out
    assert "licence notes" in out


@pytest.mark.parametrize("training", [
    {"gradient_accumulation_steps": 2},
    {"mixed_precision": "bf16", "batch_mode": "single_task",
     "sampler": {"name": "proportional"}},
])
def test_training_switches_run_end_to_end(tmp_path: Path, tiny_encoder_dir: Path,
                                          training: dict) -> None:
    write_task_files(tmp_path)
    path = write_config(tmp_path, tiny_encoder_dir, max_steps=3, eval_every=3, **training)
    assert main(["train", str(path)]) == 0
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    drawn = sum(log[-1]["examples_drawn"].values())
    accumulation = training.get("gradient_accumulation_steps", 1)
    assert drawn == 3 * 8 * accumulation  # steps x batch x micro-batches per step


def test_compare_tables_runs(tmp_path: Path, tiny_encoder_dir: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    write_task_files(tmp_path)
    path = write_config(tmp_path, tiny_encoder_dir, max_steps=2, eval_every=2)
    config = yaml.safe_load(path.read_text())
    config["tasks"] = config["tasks"][:2]
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "run"), str(tmp_path / "run"), "--markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| run | pairs | scores | mean | worst")
    assert len(lines) == 4
    assert main(["compare", str(tmp_path)]) == 2
