"""training.sam: each task's gradient taken at its own perturbation, held to a hand
computation on a tiny model; with rho = 0 it is the plain step; config errors and refusals."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from camtl.balancing import build_balancer
from camtl.balancing.base import BalanceContext
from camtl.cli import main
from camtl.config import SamConfig
from camtl.testing.models import build_camtl, mixed_batch
from camtl.testing.runs import write_config, write_task_files
from camtl.training import step as step_module
from camtl.training.sam import sam_train_step
from camtl.training.step import SingleProcess, StepParts, train_step

NAMES = ["cls", "reg", "tag", "qa"]


class FixedLR:
    def get_last_lr(self) -> list[float]:
        return [1.0]

    def step(self) -> None:
        pass


def parts_for(model: Any, sam: SamConfig | None, balancer: str = "equal") -> StepParts:
    return StepParts(
        model=model,
        balancer=build_balancer(balancer, {}, NAMES),
        optimizer=torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0),
        lr_scheduler=FixedLR(),
        batch_scheduler=None,  # type: ignore[arg-type]  # micro_batch is replaced
        tasks=[],
        pad_token_id=0,
        clip_parameters=[],
        max_grad_norm=0.0,
        sam=sam,
    )


@pytest.fixture()
def fixed_batch(monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    batch = mixed_batch()
    pairs = [(int(t), r) for r, t in enumerate(batch["task_ids"])]
    monkeypatch.setattr(step_module, "micro_batch", lambda *a: (dict(batch), pairs))
    return batch


def deterministic_model(tiny_encoder_dir: Path) -> Any:
    model = build_camtl(tiny_encoder_dir, dropout=0.0, attention_dropout=0.0, hidden_dropout=0.0)
    return model.train()


def trainable(model: Any) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters() if p.requires_grad]


def test_each_task_steps_along_its_gradient_at_its_own_perturbation(
    tiny_encoder_dir: Path, fixed_batch: dict[str, torch.Tensor]
) -> None:
    rho = 0.5
    model = deterministic_model(tiny_encoder_dir)
    reference = copy.deepcopy(model)
    before = trainable(model)
    sam_train_step(parts_for(model, SamConfig(rho=rho)), SingleProcess("no", "cpu"), 0)
    # by hand: SGD with lr 1 moves the weights by minus the applied gradient
    params = [p for p in reference.parameters() if p.requires_grad]
    expected = [torch.zeros_like(p) for p in params]
    for index, name in enumerate(NAMES):
        rows = (fixed_batch["task_ids"] == index).nonzero(as_tuple=True)[0]
        sub = {k: v[rows] for k, v in fixed_batch.items()}
        grads = torch.autograd.grad(reference(**sub).task_losses[name], params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.add_(g * rho / norm)
        at_shift = torch.autograd.grad(
            reference(**sub).task_losses[name], params, allow_unused=True
        )
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(g * rho / norm)
        for total, g in zip(expected, at_shift):
            if g is not None:
                total.add_(g / len(NAMES))  # the equal balancer: the mean of the tasks
    after = trainable(model)
    for b, a, e in zip(before, after, expected):
        assert torch.allclose(b - a, e, atol=1e-5)
    # a perturbation that matters: the step differs from the plain one
    plain = deterministic_model(tiny_encoder_dir)
    train_step(parts_for(plain, None), SingleProcess("no", "cpu"), 0)
    assert any(not torch.allclose(a, p) for a, p in zip(after, trainable(plain)))


@pytest.mark.parametrize("balancer", ["equal", "uncertainty"])
def test_rho_zero_is_the_plain_step(
    tiny_encoder_dir: Path, fixed_batch: dict[str, torch.Tensor], balancer: str
) -> None:
    sam_model = deterministic_model(tiny_encoder_dir)
    plain_model = copy.deepcopy(sam_model)
    sam_parts = parts_for(sam_model, SamConfig(rho=0.0), balancer)
    plain_parts = parts_for(plain_model, None, balancer)
    for parts in (sam_parts, plain_parts):  # the balancer's own weights train too
        parts.optimizer.add_param_group({"params": list(parts.balancer.parameters())})
    sam_out = sam_train_step(sam_parts, SingleProcess("no", "cpu"), 0)
    plain_out = train_step(plain_parts, SingleProcess("no", "cpu"), 0)
    assert sam_out["loss"] == pytest.approx(plain_out["loss"], rel=1e-5)
    for a, b in zip(trainable(sam_model), trainable(plain_model)):
        assert torch.allclose(a, b, atol=1e-5)
    for a, b in zip(sam_parts.balancer.parameters(), plain_parts.balancer.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_sam_run_trains_and_refuses_gradient_balancers(
    tmp_path: Path, tiny_encoder_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_task_files(tmp_path)
    path = write_config(tmp_path, tiny_encoder_dir, max_steps=3, eval_every=3)
    config = yaml.safe_load(path.read_text())
    config["training"]["sam"] = {"rho": 0.05}
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "completed"
    capsys.readouterr()
    config["training"]["balancer"] = {"name": "pcgrad"}
    config["output_dir"] = str(tmp_path / "refused")
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training.sam" in err[0] and "pcgrad" in err[0]
    assert not (tmp_path / "refused").exists()
    config["training"]["balancer"] = {"name": "equal"}
    config["training"]["sam"] = {"rho": -1}
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 2
    assert "key 'training.sam.rho': must be a number >= 0" in capsys.readouterr().err


def test_a_sam_run_takes_famo_which_weighs_losses(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    """FAMO weighs log-losses and differentiates nothing itself, so SAM may run beside it
    (docs/training.md says so)."""
    write_task_files(tmp_path)
    path = write_config(tmp_path, tiny_encoder_dir, max_steps=3, eval_every=3)
    config = yaml.safe_load(path.read_text())
    config["training"]["sam"] = {"rho": 0.05}
    config["training"]["balancer"] = {"name": "famo"}
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "completed"


def test_sam_config_defaults() -> None:
    assert SamConfig().rho == 0.05
    context = BalanceContext()
    assert context.update
