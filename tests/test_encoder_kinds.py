"""A new encoder kind is one module (tests/scaled_encoder.py): once it is registered, config
validation, the CLI, ``camtl params``, ``camtl compare`` and model cards take it."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml

from camtl.cli import build_parser, main
from camtl.config import config_from_dict, save_config
from camtl.errors import ConfigError
from camtl.structured import to_dict

SCALED = "tests.scaled_encoder"


@pytest.fixture()
def scaled() -> Iterator[ModuleType]:
    """The stand-in kind registered for one test (other tests see the built-in kinds)."""
    from camtl.modeling.shared_encoder import ENCODERS

    sys.modules.pop(SCALED, None)
    module = importlib.import_module(SCALED)
    yield module
    ENCODERS.unregister("scaled")
    sys.modules.pop(SCALED, None)


def _config(**model: object) -> dict:
    return {"tasks": ["vader"], "model": {"architecture": "scaled", **model}}


def test_config_validates_the_kind_and_its_own_options(scaled: ModuleType) -> None:
    config = config_from_dict(_config(scaled={"scale": 2.5}))
    assert config.model.options["scaled"] == scaled.ScaledOptions(scale=2.5)
    # written back under the kind's own key, and read again the same
    data = to_dict(config)
    assert data["model"]["scaled"] == {"scale": 2.5} and "camtl" not in data["model"]
    assert to_dict(config_from_dict(yaml.safe_load(yaml.safe_dump(data)))) == data
    # without its section, the kind's defaults are recorded in full
    assert to_dict(config_from_dict(_config()))["model"]["scaled"] == {"scale": 1.0}
    cases = {
        "key 'model.scaled.scale': must be > 0": _config(scaled={"scale": 0}),
        "unknown key 'model.scaled.shift' (known keys: scale)": _config(scaled={"shift": 1}),
        "key 'model.architecture': 'scaledd' is not allowed "
        "(allowed: 'camtl', 'plain', 'scaled')": _config(architecture="scaledd"),
    }
    for message, data in cases.items():
        with pytest.raises(ConfigError) as info:
            config_from_dict(data)
        assert str(info.value) == message


def test_cli_choices_and_params_take_the_kind(
    scaled: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "bert",
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "vocab_size": 100,
            }
        )
    )
    parser = build_parser()
    assert parser.parse_args(["params", "--architecture", "scaled"]).architecture == "scaled"
    args = parser.parse_args(["baseline", "single-task", "c.yaml", "--architecture", "scaled"])
    assert args.architecture == "scaled"
    params = ["params", "--model", str(tmp_path), "--tasks", "2", "--architecture", "scaled"]
    assert main([*params, "--option", "scale=3", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["architecture"] == "scaled" and counts["scale"] == 3.0
    assert counts["summary"] == "hidden states x 3"
    assert main(params) == 0
    assert "architecture: scaled, 2 tasks (hidden states x 1)" in capsys.readouterr().out
    # an option the kind does not have: one line naming the key and the kind's keys
    assert main([*params, "--generators", "shared"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: params: unknown key 'model.scaled.generators' (known keys: scale)"]
    for labels in ("0", "-1"):  # a head of no classes: refused, not counted as one
        with pytest.raises(SystemExit):
            main([*params, "--labels", labels])
        assert f"--labels: must be a positive integer, got {labels}" in capsys.readouterr().err


def _run_dir(root: Path, name: str, seed: int, encoder_dir: Path, **model: object) -> Path:
    """A run directory of a model of the scaled kind: its saved model, config and report."""
    from camtl.modeling import MultiTaskModel

    config = config_from_dict(
        {
            "seed": seed,
            "output_dir": str(root / name),
            "tasks": [{"name": "vader", "max_length": 16}],
            "model": {"encoder": str(encoder_dir), "architecture": "scaled", **model},
        }
    )
    model_, tokenizer = MultiTaskModel.from_encoder(config.model, config.tasks, {"vader": []})
    run = root / name
    model_.save_pretrained(run, tokenizer)
    save_config(config, run / "config.yaml")
    entry = {"primary_metric": "pearson", "scores": {"pearson": 50.0 + seed}}
    report = {"results": {"tasks": {"vader": entry}}, "run_info": {"architecture": "scaled"}}
    (run / "report.json").write_text(json.dumps(report))
    return run


def test_models_cards_and_compare_take_the_kind(
    scaled: ModuleType,
    tiny_encoder_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from camtl.evaluation.compare import compare_rows
    from camtl.model_card import render_model_card
    from camtl.modeling import MultiTaskModel

    runs = [
        _run_dir(tmp_path, "scaled_s1", 1, tiny_encoder_dir, scaled={"scale": 2.0}),
        # another kind's options, unused by this model, do not split the seeds
        _run_dir(tmp_path, "scaled_s2", 2, tiny_encoder_dir, scaled={"scale": 2.0}, camtl={}),
        _run_dir(tmp_path, "other", 3, tiny_encoder_dir, scaled={"scale": 0.5}),
    ]
    model = MultiTaskModel.from_pretrained(runs[0])
    assert model.encoder.scale == 2.0 and model.config.options["scaled"].scale == 2.0
    embeddings = model.encoder.embeddings.word_embeddings.weight
    bottom, top = model.encoder.pretrained_layers()[0], model.encoder.pretrained_layers()[-1]
    assert not embeddings.requires_grad  # the kind's default freezing
    assert not any(p.requires_grad for p in bottom.parameters())
    assert all(p.requires_grad for p in top.parameters())
    ids = torch.tensor([[2, 10, 11, 3]])
    plain = MultiTaskModel.from_pretrained(runs[2])
    with torch.no_grad():
        twice = model.encode(ids, torch.ones_like(ids), None, torch.tensor([0]))
        half = plain.encode(ids, torch.ones_like(ids), None, torch.tensor([0]))
    assert torch.allclose(twice, half * 4, atol=1e-5)
    card = render_model_card(runs[0])
    assert "One scaled-plain model with 1 tasks" in card and "- scaled-encoder" in card
    _, rows = compare_rows(runs, by_seed=True)
    assert [r["run"] for r in rows] == ["scaled (2 seeds)", "other"]


def test_resuming_ignores_options_of_other_kinds(tmp_path: Path) -> None:
    """A plain run saved with CA-MTL's options (as every run did before the kinds owned
    their options) resumes under a config without them, and with other values for them."""
    from camtl.training.rundir import check_same_model

    saved = {"tasks": ["vader"], "model": {"architecture": "plain", "camtl": {"max_length": 64}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    check_same_model(tmp_path, config_from_dict({"tasks": ["vader"]}))
    check_same_model(tmp_path, config_from_dict({**saved, "model": {"camtl": {"max_length": 8}}}))
    with pytest.raises(ConfigError, match="key 'model.architecture': 'camtl' here"):
        check_same_model(tmp_path, config_from_dict({**saved, "model": {"architecture": "camtl"}}))
