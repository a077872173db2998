"""CA-MTL's conditional encoder on tiny random models of every supported architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from camtl.errors import ConfigError
from camtl.model_config import ModelConfig
from camtl.modeling import MultiTaskModel
from camtl.modeling.conditional_encoder import CamtlOptions, ConditionalEncoder
from camtl.testing import make_tiny_encoder
from camtl.testing.models import (
    LABELS,
    TASKS,
    build_camtl,
    mixed_batch,
    padded_inputs,
    randomize_conditional,
)
from camtl.training.setup import build_optimizer

ARCHS = ["bert", "roberta", "electra", "xlm-roberta"]
VARIANTS = {
    "paper": CamtlOptions(max_length=16),
    "authors_forms": CamtlOptions(
        max_length=16, attention_form="authors", alignment_form="elementwise"
    ),
    "large_chain": CamtlOptions(max_length=16, bottleneck="large"),
    "z_narrow": CamtlOptions(max_length=16, task_embedding_dim=8, attention_blocks=3),
    "per_layer": CamtlOptions(max_length=16, generators="per_layer"),
    "per_layer_large_chain": CamtlOptions(
        max_length=16, generators="per_layer", bottleneck="large", task_embedding_dim=8
    ),
}


@pytest.fixture(scope="module", params=ARCHS)
def encoder_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp(request.param), request.param)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_identity_at_initialisation(encoder_dir: Path, variant: str, attention: str) -> None:
    hf = AutoModel.from_pretrained(encoder_dir).eval()
    inputs = padded_inputs()
    with torch.no_grad():
        expected = hf(**inputs).last_hidden_state
        cond = ConditionalEncoder(hf, num_tasks=3, cam=VARIANTS[variant]).eval()
        cond.set_attention(attention)
        got = cond(**inputs, task_ids=torch.tensor([0, 1, 2]))
    mask = inputs["attention_mask"].bool()
    assert torch.allclose(got[mask], expected[mask], atol=1e-5)


@pytest.mark.parametrize("variant", ["paper", "large_chain", "per_layer"])
def test_padding_invariance(encoder_dir: Path, variant: str) -> None:
    cond = ConditionalEncoder(AutoModel.from_pretrained(encoder_dir), 3, VARIANTS[variant])
    randomize_conditional(cond)
    cond.eval()
    inputs = padded_inputs()
    task_ids = torch.tensor([2, 1, 0])
    with torch.no_grad():
        batch = cond(**inputs, task_ids=task_ids)
        for row in range(3):
            n = int(inputs["attention_mask"][row].sum())
            alone = cond(
                **{k: v[row : row + 1, :n] for k, v in inputs.items()},
                task_ids=task_ids[row : row + 1],
            )
            assert torch.allclose(alone[0], batch[row, :n], atol=1e-5)


@pytest.mark.parametrize("generators", ["shared", "per_layer"])
def test_mixed_tasks_match_each_task_alone(encoder_dir: Path, generators: str) -> None:
    model = build_camtl(encoder_dir, generators)
    randomize_conditional(model.encoder)
    model.eval()
    batch = mixed_batch()
    with torch.no_grad():
        mixed = model(**batch)
        for index, name in enumerate(["cls", "reg", "tag", "qa"]):
            rows = (batch["task_ids"] == index).nonzero(as_tuple=True)[0]
            alone = model(**{k: v[rows] for k, v in batch.items()})
            assert torch.allclose(alone.logits[name], mixed.logits[name], atol=1e-5)


def test_task_embedding_changes_outputs(encoder_dir: Path) -> None:
    model = build_camtl(encoder_dir)
    randomize_conditional(model.encoder)
    model.eval()
    inputs = padded_inputs()
    with torch.no_grad():
        a = model.encode(**inputs, task_ids=torch.tensor([0, 0, 0]))
        b = model.encode(**inputs, task_ids=torch.tensor([1, 1, 1]))
    assert not torch.allclose(a, b, atol=1e-4)


def test_camtl_freezes_nothing_by_default(encoder_dir: Path) -> None:
    """Issue 38: nothing frozen beat the paper's half at convergence, so it is the default."""
    model = build_camtl(encoder_dir)
    assert all(param.requires_grad for param in model.parameters())
    optimizer = build_optimizer(model, _run_config())
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in model.parameters()}


def test_frozen_parameters_get_no_gradient_and_no_optimizer_state(encoder_dir: Path) -> None:
    # the paper's freezing: embeddings + bottom half (2 of 4 layers)
    model = build_camtl(encoder_dir, freeze_embeddings=True, freeze_layers=2)
    optimizer = build_optimizer(model, _run_config())
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    model(**mixed_batch()).loss.backward()
    optimizer.step()
    conditional = {id(p) for m in model.encoder.conditional_modules() for p in m.parameters()}
    for name, param in model.named_parameters():
        frozen = ".embeddings." in name or ".layers.0.base." in name or ".layers.1.base." in name
        assert param.requires_grad is not frozen, name
        assert (id(param) in in_optimizer) is not frozen, name
        assert (param.grad is None) is frozen or id(param) in conditional, name
        if frozen:
            assert param not in optimizer.state, name
    # conditional attention of a frozen layer still trains (through the shared generator)
    generator = model.encoder.layers[0].cond_attention.film.generator
    assert generator is model.encoder.generators["attention"]
    assert generator.proj.weight.grad is not None and generator.proj.weight.requires_grad


def test_shared_generators_are_saved_once_and_read_per_layer(tiny_encoder_dir: Path) -> None:
    cond = ConditionalEncoder(
        AutoModel.from_pretrained(tiny_encoder_dir), 3, CamtlOptions(max_length=16)
    )
    names = list(cond.state_dict())
    assert not [n for n in names if n.startswith("layers.") and ".film" in n]
    assert sum(n.startswith("generators.attention.") for n in names) == 2  # weight, bias
    cln = [layer.cln_output for layer in cond.layers if layer.cln_output is not None]
    assert len(cln) > 1 and all(c.film.generator is cond.generators["cln_output"] for c in cln)
    randomize_conditional(cond)
    z = cond.task_embedding(torch.tensor([0, 1]))
    # the same task reads a different conditioning vector in each layer
    assert not torch.allclose(cond.conditioner(z, 0), cond.conditioner(z, 1))
    per_layer = ConditionalEncoder(
        AutoModel.from_pretrained(tiny_encoder_dir),
        3,
        CamtlOptions(max_length=16, generators="per_layer"),
    )
    count = sum(p.numel() for p in cond.parameters())
    assert count < sum(p.numel() for p in per_layer.parameters())


def _run_config():
    from camtl.config import RunConfig

    return RunConfig()


@pytest.mark.parametrize("generators", ["shared", "per_layer"])
def test_save_and_reload_give_identical_predictions(
    encoder_dir: Path, tmp_path: Path, generators: str
) -> None:
    model = build_camtl(encoder_dir, generators)
    randomize_conditional(model.encoder)
    model.eval()
    model.save_pretrained(tmp_path)
    again = MultiTaskModel.from_pretrained(tmp_path)
    batch = mixed_batch()
    with torch.no_grad():
        a, b = model(**batch), again(**batch)
    for name in a.logits:
        assert torch.equal(a.logits[name], b.logits[name])


@pytest.mark.parametrize(
    "switches",
    [
        {
            "conditional_attention": False,
            "conditional_alignment": False,
            "conditional_layer_norm": False,
            "bottleneck": "none",
        },
        {"conditional_alignment": False, "conditional_layer_norm": False, "bottleneck": "none"},
        {"conditional_alignment": False, "conditional_layer_norm": False},
        {},
    ],
)
def test_ablation_ladder_switches_build_and_train(tiny_encoder_dir: Path, switches: dict) -> None:
    config = ModelConfig(
        encoder=str(tiny_encoder_dir),
        architecture="camtl",
        options={"camtl": CamtlOptions(max_length=16, **switches)},
    )
    model = MultiTaskModel(AutoModel.from_pretrained(tiny_encoder_dir), TASKS, LABELS, config)
    model(**mixed_batch()).loss.backward()
    layer = model.encoder.layers[-1]
    assert (layer.cond_attention is not None) == switches.get("conditional_attention", True)
    assert (model.encoder.alignment is not None) == switches.get("conditional_alignment", True)
    assert (layer.cln_output is not None) == switches.get("conditional_layer_norm", True)
    assert (layer.bottleneck is not None) == (switches.get("bottleneck", "base") == "base")


def test_sequence_longer_than_max_length_gets_no_bias_beyond(tiny_encoder_dir: Path) -> None:
    cond = ConditionalEncoder(
        AutoModel.from_pretrained(tiny_encoder_dir), 2, CamtlOptions(max_length=8)
    )
    randomize_conditional(cond)
    out = cond(**padded_inputs(length=12), task_ids=torch.tensor([0, 1, 0]))
    assert out.shape[:2] == (3, 12) and torch.isfinite(out).all()


def test_relative_position_models_are_refused(tmp_path: Path) -> None:
    from transformers import AutoConfig

    config = AutoConfig.for_model(
        "bert",
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        vocab_size=60,
    )
    config.position_embedding_type = "relative_key"
    with pytest.raises(ConfigError, match="absolute position"):
        ConditionalEncoder(AutoModel.from_config(config), 2, CamtlOptions())


def test_camtl_trains_end_to_end_and_reloads(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    import json

    import yaml

    from camtl.cli import main
    from camtl.testing.runs import write_config, write_task_files

    write_task_files(tmp_path)
    path = write_config(tmp_path, tiny_encoder_dir, max_steps=4, eval_every=2)
    config = yaml.safe_load(path.read_text())
    config["model"].update(architecture="camtl", camtl={"max_length": 32})
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    run = tmp_path / "run"
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    model = MultiTaskModel.from_pretrained(run)
    assert model.config.architecture == "camtl"
    info = json.loads((run / "report.json").read_text())["run_info"]
    assert info["parameters"]["trainable"] == info["parameters"]["total"]  # nothing frozen
    saved = yaml.safe_load((run / "config.yaml").read_text())["model"]  # and it says so
    assert (saved["freeze_embeddings"], saved["freeze_layers"]) == (False, 0)


@pytest.mark.parametrize("form", ["paper", "authors"])
@pytest.mark.parametrize("length", [3, 7, 16, 21])
def test_attention_bias_is_the_direct_sum_per_task(form: str, length: int) -> None:
    """The blockwise bias, built once per task and gathered, equals torch.block_diag of each
    example's own blocks (eq. 3.1), sliced or zero-padded to the batch length, plus the
    example's padding mask."""
    from camtl.modeling.conditional import ConditionalAttentionBias

    bias = ConditionalAttentionBias(z_dim=5, max_length=16, num_blocks=3, form=form)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in bias.parameters():
            param.copy_(torch.randn(param.shape, generator=g))
    from camtl.modeling.conditional import TaskRows

    z = torch.randn(2, 5, generator=g)  # two tasks in the batch
    index = torch.tensor([0, 1, 1])  # three examples, sorted by task
    rows = TaskRows.of(index, 2)
    mask = torch.randn(3, 1, 1, length, generator=g)
    got = bias(z, rows, length, mask)
    assert got.shape == (3, 1, length, length)
    gamma, beta = bias.film(z)
    for example, task in enumerate(index.tolist()):
        if form == "paper":
            blocks = bias.blocks * (1 + gamma[task]) + beta[task]
        else:
            blocks = (bias.blocks[0] * (1 + gamma[task]) + beta[task]).expand(3, -1, -1)
        full = torch.block_diag(*blocks)  # 18 x 18: 3 blocks of ceil(16 / 3) = 6
        full = torch.nn.functional.pad(full, (0, max(0, length - 18), 0, max(0, length - 18)))
        expected = full[:length, :length] + mask[example, 0]
        assert torch.allclose(got[example, 0], expected, atol=1e-6)


def test_modulated_linear_applies_each_tasks_weight_to_its_run() -> None:
    """W' = diag(1+gamma) W + beta 1^T per task, applied to that task's run of examples;
    equal to the definition row by row, with one task or several in the batch."""
    from camtl.modeling.conditional import TaskRows, modulated_linear

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, 6, generator=g)
    weight, bias = torch.randn(3, 6, generator=g), torch.randn(3, generator=g)
    gamma, beta = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    index = torch.tensor([0, 0, 1, 1])
    mixed = modulated_linear(x, weight, bias, gamma, beta, TaskRows.of(index, 2))
    for example, task in enumerate(index.tolist()):
        w_task = weight * (1 + gamma[task]).unsqueeze(1) + beta[task].unsqueeze(1)
        expected = x[example] @ w_task.T + bias
        assert torch.allclose(mixed[example], expected, atol=1e-5)
        alone = modulated_linear(
            x[example : example + 1],
            weight,
            bias,
            gamma[task : task + 1],
            beta[task : task + 1],
            TaskRows.of(torch.zeros(1).long(), 1),
        )
        assert torch.allclose(alone[0], expected, atol=1e-5)


def test_unsorted_mixed_batch_comes_back_in_order(encoder_dir: Path) -> None:
    """The encoder runs a batch sorted by task and returns it in the caller's order: every
    example's output equals the output of that example alone."""
    cond = ConditionalEncoder(AutoModel.from_pretrained(encoder_dir), 3, VARIANTS["paper"])
    randomize_conditional(cond)
    cond.eval()
    inputs = padded_inputs()
    task_ids = torch.tensor([2, 0, 2])  # not sorted, one task twice
    with torch.no_grad():
        batch = cond(**inputs, task_ids=task_ids)
        for row in range(3):
            alone = cond(
                **{k: v[row : row + 1] for k, v in inputs.items()}, task_ids=task_ids[row : row + 1]
            )
            mask = inputs["attention_mask"][row].bool()
            assert torch.allclose(alone[0][mask], batch[row][mask], atol=1e-5)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_export_form_equals_the_per_run_form(encoder_dir: Path, variant: str) -> None:
    """The gather form (graph export) computes what the sorted per-run form computes, on a
    batch whose tasks are interleaved and padded, longer than max_length included."""
    cond = ConditionalEncoder(AutoModel.from_pretrained(encoder_dir), 3, VARIANTS[variant])
    randomize_conditional(cond)
    cond.eval()
    task_ids = torch.tensor([2, 0, 2])
    with torch.no_grad():
        for length in (12, 20):  # max_length is 16
            inputs = padded_inputs(length)
            runs = cond(**inputs, task_ids=task_ids)
            cond.gather_for_export()
            gathered = cond(**inputs, task_ids=task_ids)
            cond.gather_for_export(False)
            mask = inputs["attention_mask"].bool()
            assert torch.allclose(gathered[mask], runs[mask], atol=1e-5)
