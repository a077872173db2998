"""experiments/sam_perturbation.py: the probe of SAM's perturbation on a tiny model, against
what a first-order expansion says for a small radius and against the weights it must leave
as they were."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

from camtl.testing.models import TASKS, build_camtl, mixed_batch


def test_probe_follows_the_gradient_and_puts_the_weights_back(
    experiment_script: Callable[[str], ModuleType], tiny_encoder_dir: Path
) -> None:
    probe = experiment_script("sam_perturbation")
    torch.manual_seed(0)
    model = build_camtl(tiny_encoder_dir, dropout=0.0, attention_dropout=0.0, hidden_dropout=0.0)
    model.train()
    batch = mixed_batch()
    rows = (batch["task_ids"] == 0).nonzero(as_tuple=True)[0]
    sub = {k: v[rows] for k, v in batch.items()}
    before = [p.detach().clone() for p in model.parameters()]
    out = probe.task_probe(model, sub, TASKS[0].name, [1e-3, 0.5])
    # the weights are as they were, to float rounding
    for b, p in zip(before, model.parameters()):
        assert torch.allclose(b, p, atol=1e-6)
    # a small step along g/||g|| raises the loss by about rho * ||g||, and the gradient
    # there is the plain one
    small = out["rho_0.001"]
    assert small["loss_rise_fp32"] == pytest.approx(1e-3 * out["grad_norm"], rel=0.05, abs=1e-5)
    assert small["cosine_sam_grad_vs_plain"] == pytest.approx(1.0, abs=1e-3)
    assert out["rho_0.5"]["loss_rise_fp32"] > small["loss_rise_fp32"]
    assert set(out["largest_grad_shares"]) <= {n for n, _ in model.named_parameters()}
