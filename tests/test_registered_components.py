"""Every registered sampler, balancer and shared encoder, by name, on a tiny problem: a new
one is tested by being registered (its own file then tests what it promises)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from camtl.balancing import BalanceContext, build_balancer
from camtl.balancing.base import balancer_names
from camtl.modeling.shared_encoder import encoder_names
from camtl.sampling import BatchScheduler, build_sampler
from camtl.sampling.base import sampler_names

POOLS = [5, 40, 12]
TASKS = ["small", "large", "middle"]


def random_scorer(candidates: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Uncertainty scores for samplers that select examples (MT-Uncertainty)."""
    rng = np.random.default_rng(len(candidates))
    raw = rng.random(len(candidates))
    return raw, raw


@pytest.mark.parametrize("name", sampler_names())
@pytest.mark.parametrize("mode", ["mixed", "single_task"])
def test_every_sampler_builds_valid_batches(name: str, mode: str) -> None:
    sampler = build_sampler(name, {}, POOLS, total_steps=20)
    probs = sampler.probabilities(0)
    assert probs.shape == (3,) and math.isclose(float(probs.sum()), 1.0, rel_tol=1e-6)
    if mode == "single_task" and getattr(sampler, "selects_examples", False):
        with pytest.raises(ValueError, match="cannot build single-task batches"):
            BatchScheduler(sampler, POOLS, 8, mode, seed=3, scorer=random_scorer)
        return  # refused: it would silently mix tasks (the config refuses it too)
    scheduler = BatchScheduler(sampler, POOLS, 8, mode, seed=3, scorer=random_scorer)
    for step in range(20):
        batch = scheduler.next_batch(step)
        assert len(batch) == 8
        assert all(0 <= task < 3 and 0 <= index < POOLS[task] for task, index in batch)
        if mode == "single_task":
            assert len({task for task, _ in batch}) == 1
    assert sum(scheduler.drawn) == 20 * 8


@pytest.mark.parametrize("name", balancer_names())
def test_every_balancer_combines_and_backpropagates(name: str) -> None:
    torch.manual_seed(0)
    shared = torch.nn.Linear(4, 4)
    balancer = build_balancer(name, {}, TASKS)
    x = torch.randn(6, 4)
    context = BalanceContext(learning_rate=0.1, shared_parameters=list(shared.parameters()))
    for step in range(3):
        context.step = step
        out = shared(x)
        losses = {t: (out[:, i] - i).pow(2).mean() for i, t in enumerate(TASKS)}
        total = balancer.combine(losses, context)
        assert total.ndim == 0 and torch.isfinite(total)
        shared.zero_grad()
        total.backward()
        assert shared.weight.grad is not None and torch.isfinite(shared.weight.grad).all()
    weights = balancer.weights()
    assert not weights or set(weights) == set(TASKS)
    assert all(math.isfinite(w) for w in weights.values())


# ----------------------------------------------------------------------------- encoders


@pytest.mark.parametrize("architecture", encoder_names())
def test_every_shared_encoder_keeps_the_contract(architecture: str, tiny_encoder_dir) -> None:
    """Each registered encoder class: hidden states for any task ids, its pretrained layers,
    a first layer whose input hooks see [B, L, d], a task added, frozen parts frozen and the
    conditional modules trainable."""
    from camtl.model_config import ModelConfig
    from camtl.modeling import MultiTaskModel
    from camtl.modeling.conditional_encoder import CamtlOptions
    from camtl.tasks.spec import TaskSpec

    specs = [
        TaskSpec(name=n, type="classification", text_columns=["t"], label_column="l")
        for n in ("a", "b")
    ]
    config = ModelConfig(
        encoder=str(tiny_encoder_dir),
        architecture=architecture,
        options={"camtl": CamtlOptions(max_length=16)},
        freeze_layers=2,
    )
    model, _ = MultiTaskModel.from_encoder(config, specs, {"a": ["x", "y"], "b": ["x", "y"]})
    encoder = model.encoder
    d, layers = encoder.config.hidden_size, encoder.config.num_hidden_layers
    ids = torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]])
    mask = (ids != 0).long()
    seen = []
    hook = encoder.first_layer().register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append(args[0] if args else kwargs["hidden_states"]),
        with_kwargs=True,
    )
    hidden = encoder(ids, mask, None, torch.tensor([0, 1]))
    hook.remove()
    assert hidden.shape == (2, 4, d) and seen and seen[0].shape == (2, 4, d)
    assert len(encoder.pretrained_layers()) == layers
    for layer in encoder.pretrained_layers()[:2]:
        assert not any(p.requires_grad for p in layer.parameters())
    for module in encoder.conditional_modules():
        assert all(p.requires_grad for p in module.parameters())
    assert 0 < encoder.pretrained_parameter_count() < sum(p.numel() for p in model.parameters())
    table = encoder.task_embeddings()
    rows_before = None if table is None else table.shape[0]
    model.add_task(
        TaskSpec(name="c", type="classification", text_columns=["t"], label_column="l"), ["x", "y"]
    )
    table = encoder.task_embeddings()
    if table is not None:
        assert table.shape[0] == rows_before + 1 == 3
        assert encoder.per_task_parameter_count() == table.shape[1]
    else:
        assert encoder.per_task_parameter_count() == 0
    assert encoder(ids, mask, None, torch.tensor([2, 0])).shape == (2, 4, d)
