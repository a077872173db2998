"""Freezing: nothing by default, ``half`` for the paper's choice, the values a run applied
recorded in what it saves, and runs saved before issue 38 (freezing unset, CA-MTL then
frozen by half) reloaded and resumed as they trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModel

from camtl.config import RunConfig, load_config, load_saved_config
from camtl.errors import ConfigError
from camtl.model_config import ModelConfig
from camtl.modeling import MultiTaskModel
from camtl.runfiles import CONFIG_FILE, MODEL_FILE
from camtl.testing.models import LABELS, TASKS, build_camtl
from camtl.testing.runs import camtl_train_process, wait_for, write_config, write_task_files
from camtl.training.rundir import adopt_run_freezing


def _frozen_layers(model: MultiTaskModel) -> list[int]:
    return [
        i
        for i, layer in enumerate(model.encoder.layers)
        if not any(p.requires_grad for n, p in layer.named_parameters() if ".base." in f".{n}")
    ]


def _embeddings_frozen(model: MultiTaskModel) -> bool:
    return not any(p.requires_grad for p in model.encoder.embeddings.parameters())


@pytest.mark.parametrize(
    ("setting", "embeddings", "layers"),
    [({}, False, []), ({"freeze_embeddings": True, "freeze_layers": "half"}, True, [0, 1])],
)
def test_default_and_half(
    tiny_encoder_dir: Path, setting: dict, embeddings: bool, layers: list[int]
) -> None:
    model = build_camtl(tiny_encoder_dir, **setting)  # 4 layers: half is the bottom 2
    assert _embeddings_frozen(model) is embeddings
    assert _frozen_layers(model) == layers


def test_bad_freeze_layers_names_the_key(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    path = tmp_path / "run.yaml"
    for bad in ("third", -1, 1.5):
        model = {"encoder": str(tiny_encoder_dir), "freeze_layers": bad}
        path.write_text(yaml.safe_dump({"output_dir": "x", "model": model, "tasks": ["snli"]}))
        with pytest.raises(ConfigError, match="freeze_layers"):
            load_config(path)


def test_a_built_model_records_its_freezing(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    model = build_camtl(tiny_encoder_dir)
    assert (model.config.freeze_embeddings, model.config.freeze_layers) == (False, 0)
    model.save_pretrained(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / MODEL_FILE).read_text())["model"]
    assert (saved["freeze_embeddings"], saved["freeze_layers"]) == (False, 0)
    half = build_camtl(tiny_encoder_dir, freeze_layers="half")
    assert half.config.freeze_layers == "half"  # kept as written: it means half of any depth


def test_the_callers_config_is_left_as_it_was(tiny_encoder_dir: Path) -> None:
    config = ModelConfig(encoder=str(tiny_encoder_dir), architecture="camtl")
    MultiTaskModel(AutoModel.from_pretrained(tiny_encoder_dir), TASKS, LABELS, config)
    assert (config.freeze_embeddings, config.freeze_layers) == (None, None)


def _saved_before_issue_38(tmp_path: Path, tiny_encoder_dir: Path) -> Path:
    """A CA-MTL model folder whose camtl_model.json leaves freezing unset, as every model
    saved before issue 38 did."""
    run = tmp_path / "old_run"
    build_camtl(tiny_encoder_dir).save_pretrained(run)
    meta = json.loads((run / MODEL_FILE).read_text())
    meta["model"]["freeze_embeddings"] = meta["model"]["freeze_layers"] = None
    (run / MODEL_FILE).write_text(json.dumps(meta))
    return run


def test_a_model_saved_before_issue_38_reloads_half_frozen(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    model = MultiTaskModel.from_pretrained(_saved_before_issue_38(tmp_path, tiny_encoder_dir))
    assert (model.config.freeze_embeddings, model.config.freeze_layers) == (True, 2)
    assert _embeddings_frozen(model) and _frozen_layers(model) == [0, 1]


def _run_config(run: Path, model: dict) -> None:
    run.mkdir(parents=True, exist_ok=True)
    config = {"output_dir": str(run), "model": model, "tasks": ["snli"]}
    (run / CONFIG_FILE).write_text(yaml.safe_dump(config))


@pytest.mark.parametrize(
    ("saved", "expected"),
    [
        ({"architecture": "camtl"}, (True, 2)),  # saved before issue 38: half of 4 layers
        ({"architecture": "plain"}, (None, None)),  # plain froze nothing then either
        ({"architecture": "camtl", "freeze_embeddings": False, "freeze_layers": 0}, (False, 0)),
    ],
)
def test_resuming_takes_the_runs_freezing(
    tmp_path: Path, tiny_encoder_dir: Path, saved: dict, expected: tuple
) -> None:
    run = tmp_path / "run"
    _run_config(run, {"encoder": str(tiny_encoder_dir), **saved})
    assert (
        load_saved_config(run).model.freeze_embeddings,
        load_saved_config(run).model.freeze_layers,
    ) == expected
    config = load_saved_config(run)
    config.model.freeze_embeddings = config.model.freeze_layers = None  # the user's config
    adopt_run_freezing(run, config)
    assert (config.model.freeze_embeddings, config.model.freeze_layers) == expected


def test_resuming_keeps_freezing_the_config_sets(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    run = tmp_path / "run"
    _run_config(run, {"encoder": str(tiny_encoder_dir), "architecture": "camtl"})
    config: RunConfig = load_saved_config(run)
    config.model.freeze_embeddings, config.model.freeze_layers = False, 1
    adopt_run_freezing(run, config)  # check_same_model then names the difference
    assert (config.model.freeze_embeddings, config.model.freeze_layers) == (False, 1)


def test_a_legacy_run_whose_encoder_cannot_be_read_keeps_half(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _run_config(run, {"encoder": str(tmp_path / "gone"), "architecture": "camtl"})
    model = load_saved_config(run).model
    assert (model.freeze_embeddings, model.freeze_layers) == (True, "half")


def test_a_run_started_before_issue_38_resumes_half_frozen(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    """Killed mid-run, its config.yaml then rewritten as the code before issue 38 wrote it
    (freezing unset); resumed from the same config file, it trains on half frozen."""
    write_task_files(tmp_path)
    path = write_config(tmp_path, tiny_encoder_dir, max_steps=6, eval_every=3)
    config = yaml.safe_load(path.read_text())
    config["model"].update(architecture="camtl", camtl={"max_length": 32})
    config["training"]["checkpoint_every"] = 2
    started = dict(config, model={**config["model"], "freeze_embeddings": True, "freeze_layers": 2})
    path.write_text(yaml.safe_dump(started))
    code, _ = wait_for(camtl_train_process(str(path), kill_after=3))
    assert code == 137
    run = tmp_path / "run"
    saved = yaml.safe_load((run / CONFIG_FILE).read_text())
    saved["model"]["freeze_embeddings"] = saved["model"]["freeze_layers"] = None
    (run / CONFIG_FILE).write_text(yaml.safe_dump(saved))
    path.write_text(yaml.safe_dump(config))  # the user's config leaves freezing unset
    code, err = wait_for(camtl_train_process(str(path), "--resume"))
    assert code == 0, err
    model = MultiTaskModel.from_pretrained(run)
    assert (model.config.freeze_embeddings, model.config.freeze_layers) == (True, 2)
    pretrained = AutoModel.from_pretrained(tiny_encoder_dir)
    embeddings = pretrained.embeddings.word_embeddings.weight
    assert torch.equal(model.encoder.embeddings.word_embeddings.weight, embeddings)
