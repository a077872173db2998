"""The training-speed options, on tiny random encoders: the encoder's dropout,
the attention kernel, the optimizer kernel and the frozen layers' cast cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import AutoModel

from camtl.config import config_from_dict
from camtl.errors import ConfigError
from camtl.model_config import ModelConfig
from camtl.modeling import MultiTaskModel
from camtl.modeling.conditional_encoder import CamtlOptions
from camtl.testing.models import LABELS, TASKS, mixed_batch

ARCHITECTURES = ["plain", "camtl"]


def build(encoder_dir: Path, architecture: str = "camtl", **options) -> MultiTaskModel:
    config = ModelConfig(
        encoder=str(encoder_dir),
        architecture=architecture,
        options={"camtl": CamtlOptions(max_length=16)},
        **options,
    )
    return MultiTaskModel(AutoModel.from_pretrained(encoder_dir), TASKS, LABELS, config)


def config_error(section: dict) -> str:
    """The one-line error of a run config with ``section``."""
    with pytest.raises(ConfigError) as info:
        config_from_dict({"tasks": ["snli"], **section})
    return str(info.value)


# --------------------------------------------------------------------------------- dropout


def _dropouts(model: MultiTaskModel) -> dict[str, float]:
    return {n: m.p for n, m in model.encoder.named_modules() if isinstance(m, nn.Dropout)}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_dropout_options_set_the_encoders_dropout(
    tiny_encoder_dir: Path, architecture: str
) -> None:
    default = build(tiny_encoder_dir, architecture)
    assert set(_dropouts(default).values()) == {0.1}  # the pretrained config's, unchanged
    model = build(tiny_encoder_dir, architecture, attention_dropout=0.0, hidden_dropout=0.25)
    ps = _dropouts(model)
    attention = {n for n in ps if n.endswith("attention.self.dropout")}
    assert attention and all(ps[n] == 0.0 for n in attention)
    hidden = set(ps) - attention
    assert any("embeddings" in n for n in hidden)
    assert all(ps[n] == 0.25 for n in hidden)  # CA-MTL's bottleneck dropout included
    assert model.encoder.config.attention_probs_dropout_prob == 0.0
    assert model.encoder.config.hidden_dropout_prob == 0.25
    assert model.heads["cls"].dropout.p == 0.1  # model.dropout: the heads' own


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_training_pass_without_dropout_draws_no_random_numbers(
    tiny_encoder_dir: Path, architecture: str
) -> None:
    model = build(
        tiny_encoder_dir, architecture, dropout=0.0, attention_dropout=0.0, hidden_dropout=0.0
    ).train()
    batch = mixed_batch()
    state = torch.get_rng_state()
    model(**batch).loss.backward()
    assert torch.equal(state, torch.get_rng_state())
    # the check can see a draw: hidden dropout alone (the pretrained 0.1) draws
    build(tiny_encoder_dir, architecture, dropout=0.0, attention_dropout=0.0).train()(**batch)
    assert not torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_dropout_options_survive_save_and_reload(
    tiny_encoder_dir: Path, tmp_path: Path, architecture: str
) -> None:
    model = build(tiny_encoder_dir, architecture, attention_dropout=0.0, hidden_dropout=0.2)
    model.save_pretrained(tmp_path)
    again = MultiTaskModel.from_pretrained(tmp_path)
    assert again.config.attention_dropout == 0.0 and again.config.hidden_dropout == 0.2
    assert _dropouts(again) == _dropouts(model)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"model": {"attention_dropout": 1.0}}, "key 'model.attention_dropout': must be in [0, 1)"),
        ({"model": {"hidden_dropout": -0.1}}, "key 'model.hidden_dropout': must be in [0, 1)"),
        (
            {"model": {"hidden_dropout": "none"}},
            "key 'model.hidden_dropout': expected a number, got 'none'",
        ),
    ],
)
def test_bad_dropout_options_are_one_line_naming_the_key(section: dict, message: str) -> None:
    assert config_error(section) == message


def test_attention_and_hidden_dropout_default_to_the_pretrained_values() -> None:
    model = config_from_dict({"tasks": ["snli"]}).model
    assert model.attention_dropout is None and model.hidden_dropout is None
    # 0 is the faster setting (the default of the runs between issues 36 and 38)
    again = config_from_dict({"tasks": ["snli"], "model": {"attention_dropout": 0.0}}).model
    assert again.attention_dropout == 0.0


# ------------------------------------------------------------------------ attention kernel


@pytest.mark.parametrize(
    ("setting", "training", "device", "kernel"),
    [
        ("auto", True, "cpu", "eager"),
        ("auto", False, "cpu", "sdpa"),
        ("auto", True, "cuda", "sdpa"),
        ("auto", False, "cuda", "sdpa"),
        ("sdpa", True, "cpu", "sdpa"),
        ("eager", False, "cuda", "eager"),
    ],
)
def test_auto_is_eager_when_training_on_cpu_only(
    setting: str, training: bool, device: str, kernel: str
) -> None:
    from camtl.modeling.attention import attention_kernel

    assert attention_kernel(setting, training, torch.device(device)) == kernel


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_auto_picks_the_kernel_per_forward_pass(
    tiny_encoder_dir: Path, architecture: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import camtl.modeling.families.base as layer_base

    model = build(tiny_encoder_dir, architecture)
    assert model.encoder.attention_setting == "auto"
    used: list[str] = []
    attend = layer_base.attend

    def spy(kernel, *args):
        used.append(kernel)
        return attend(kernel, *args)

    monkeypatch.setattr(layer_base, "attend", spy)
    for training, kernel in ((True, "eager"), (False, "sdpa")):
        used.clear()
        model.train(training)
        model(**mixed_batch())
        if architecture == "camtl":
            assert set(used) == {kernel}
        else:  # Hugging Face's forward reads its config's kernel
            assert model.encoder.config._attn_implementation == kernel


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_training_passes_agree_across_kernels_without_dropout(
    tiny_encoder_dir: Path, architecture: str
) -> None:
    """In training mode, dropout off: eager and sdpa compute the same loss and gradients."""
    results = []
    for attention in ("sdpa", "eager"):
        torch.manual_seed(0)
        model = build(
            tiny_encoder_dir,
            architecture,
            attention=attention,
            dropout=0.0,
            attention_dropout=0.0,
            hidden_dropout=0.0,
        ).train()
        loss = model(**mixed_batch()).loss
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.allclose(loss_a, loss_b, atol=1e-5)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-5), name


def test_eager_attention_draws_no_random_numbers_without_dropout() -> None:
    from camtl.modeling.attention import eager_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(3))
    bias = torch.zeros(2, 1, 1, 5)
    state = torch.get_rng_state()
    out = eager_attention(q, k, v, bias, 0.0)
    assert torch.equal(state, torch.get_rng_state())
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    assert torch.allclose(out, expected, atol=1e-6)
    eager_attention(q, k, v, bias, 0.1)
    assert not torch.equal(state, torch.get_rng_state())


def test_attention_option_is_checked_and_defaults_to_auto() -> None:
    assert config_error({"model": {"attention": "flash"}}) == (
        "key 'model.attention': 'flash' is not allowed (allowed: 'auto', 'sdpa', 'eager')"
    )
    assert config_from_dict({"tasks": ["snli"]}).model.attention == "auto"


# ---------------------------------------------------------------------------- the optimizer


def _run_config(**training):
    return config_from_dict({"tasks": ["snli"], "training": training})


@pytest.mark.parametrize(
    ("impl", "fused", "foreach"),
    [
        ("auto", True, None),
        ("fused", True, None),
        ("foreach", None, True),
        ("torch_default", None, None),
    ],
)
def test_optimizer_impl_picks_the_adamw_kernel(
    tiny_encoder_dir: Path, impl: str, fused: bool | None, foreach: bool | None
) -> None:
    from camtl.training.setup import build_optimizer, fused_adamw_supported

    model = build(tiny_encoder_dir)
    assert fused_adamw_supported(list(model.parameters()))  # torch >= 2.4 on CPU
    optimizer = build_optimizer(model, _run_config(optimizer_impl=impl))
    assert (optimizer.defaults["fused"], optimizer.defaults["foreach"]) == (fused, foreach)


def test_fused_is_refused_where_torch_has_no_kernel() -> None:
    from camtl.training.setup import optimizer_flags

    params = [torch.zeros(2, dtype=torch.long)]
    assert optimizer_flags("auto", params) == {"fused": None, "foreach": None}
    with pytest.raises(ConfigError, match="key 'training.optimizer_impl': torch has no fused"):
        optimizer_flags("fused", params)


def test_fused_and_unfused_steps_agree_and_a_loaded_state_keeps_the_configured_kernel(
    tiny_encoder_dir: Path,
) -> None:
    """The kernels differ in rounding only; a checkpoint of one kernel loads into the other
    (load_state_dict takes the saved flags: apply_optimizer_flags restores the configured)."""
    from camtl.training.setup import apply_optimizer_flags, build_optimizer

    models, optimizers = [], []
    for impl in ("fused", "torch_default"):
        torch.manual_seed(0)
        model = build(tiny_encoder_dir, freeze_embeddings=True, freeze_layers="half")
        models.append(model)
        optimizers.append(build_optimizer(model, _run_config(optimizer_impl=impl)))
    # both kernels step on the same gradients (the first model's): a gradient near zero
    # taken at weights a rounding apart can flip its sign, and Adam, dividing by its root
    # mean square, turns that into a whole step of difference (seen on an AMD EPYC)
    for _ in range(3):
        models[0](**mixed_batch()).loss.backward()
        for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
            b.grad = None if a.grad is None else a.grad.clone()
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    fused, unfused = optimizers
    flags = {"fused": True, "foreach": None}
    fused.load_state_dict(unfused.state_dict())
    assert fused.param_groups[0]["fused"] is None  # the saved groups' flags
    apply_optimizer_flags(fused, flags)
    assert all(g["fused"] is True for g in fused.param_groups)
    models[0](**mixed_batch()).loss.backward()
    fused.step()  # runs the fused kernel on the loaded state


def test_optimizer_impl_is_checked_and_defaults_to_auto() -> None:
    assert config_error({"training": {"optimizer_impl": "adam"}}) == (
        "key 'training.optimizer_impl': 'adam' is not allowed "
        "(allowed: 'auto', 'fused', 'foreach', 'torch_default')"
    )
    assert config_from_dict({"tasks": ["snli"]}).training.optimizer_impl == "auto"


# ------------------------------------------------------------------ frozen layers' cast cache


def _step(model: MultiTaskModel, precision: str) -> tuple[dict, dict]:
    from camtl.precision import autocast

    torch.manual_seed(0)
    with autocast(precision):
        out = model(**mixed_batch())
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return {k: v.detach().float() for k, v in out.logits.items()}, grads


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("precision", ["bf16", "no"])
def test_cast_cache_changes_no_result(
    tiny_encoder_dir: Path, architecture: str, precision: str
) -> None:
    """The cached copies are what autocast casts at each call: training passes are bit
    for bit the same, in bf16 and (where the cache is idle) in fp32."""
    from camtl.modeling.frozen_cast import CastCachedLinear, cache_frozen_casts

    freeze = {"freeze_embeddings": True, "freeze_layers": 2}
    model = build(tiny_encoder_dir, architecture, **freeze).train()
    before = _step(model, precision)
    count = cache_frozen_casts(model)
    assert count > 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            assert isinstance(module, CastCachedLinear) is (not module.weight.requires_grad)
    for _ in range(2):  # the second pass reads the cached copies
        after = _step(model, precision)
        for name in before[0]:
            assert torch.equal(before[0][name], after[0][name]), name
        assert before[1].keys() == after[1].keys()
        for name in before[1]:
            assert torch.equal(before[1][name], after[1][name]), name


def test_cast_cache_follows_loaded_weights_and_inference_mode(tiny_encoder_dir: Path) -> None:
    from camtl.modeling.frozen_cast import cache_frozen_casts, uncache_frozen_casts

    model = build(tiny_encoder_dir)
    cache_frozen_casts(model)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        model.eval()(**mixed_batch())  # first cast under inference mode (an evaluation)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(**mixed_batch()).loss.backward()  # training may save the copies for backward
    # new frozen weights, loaded in place: the cached copies must follow
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    torch.manual_seed(0)
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cached = model(**mixed_batch()).logits
    uncache_frozen_casts(model)
    assert not any(type(m).__name__ == "CastCachedLinear" for m in model.modules())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = model(**mixed_batch()).logits
    for name in plain:
        assert torch.equal(cached[name], plain[name]), name


def test_cast_cache_leaves_saved_weights_fp32(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    from camtl.modeling.frozen_cast import cache_frozen_casts
    from camtl.runfiles import WEIGHTS_FILE

    model = build(tiny_encoder_dir).eval()
    keys = set(model.state_dict())
    cache_frozen_casts(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(**mixed_batch()).logits
    assert set(model.state_dict()) == keys
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / WEIGHTS_FILE), "pt") as saved:
        names = list(saved.keys())
        assert set(names) == keys
        assert {saved.get_tensor(k).dtype for k in names} == {torch.float32}
    again = MultiTaskModel.from_pretrained(tmp_path)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = again(**mixed_batch()).logits
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


@pytest.mark.parametrize(
    ("setting", "precision", "on"),
    [
        (None, "bf16", True),
        (None, "no", False),
        (None, "fp16", False),
        (True, "no", True),
        (False, "bf16", False),
    ],
)
def test_cast_cache_is_on_by_default_for_bf16_runs(
    setting: bool | None, precision: str, on: bool
) -> None:
    from camtl.modeling.frozen_cast import use_frozen_cast_cache

    assert use_frozen_cast_cache(setting, precision) is on


def test_cast_frozen_once_is_checked_and_defaults_to_null() -> None:
    assert config_error({"training": {"cast_frozen_once": "bf16"}}) == (
        "key 'training.cast_frozen_once': expected true or false, got 'bf16'"
    )
    assert config_from_dict({"tasks": ["snli"]}).training.cast_frozen_once is None
