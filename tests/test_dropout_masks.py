"""``model.dropout_masks``: the 16-bit mask is dropout (rate, scale, expectation, gradient,
determinism), ``bernoulli`` is torch's own dropout bit for bit, and in every encoder family
no mask of a training step is drawn the old way once ``bits`` is on."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModel

from camtl.errors import ConfigError
from camtl.model_config import ModelConfig
from camtl.modeling import MultiTaskModel
from camtl.modeling.conditional_encoder import CamtlOptions
from camtl.modeling.dropout import (
    MaskedDropout,
    bits_dropout,
    bits_threshold,
    set_dropout_masks,
    uses_bits,
)
from camtl.structured import from_dict
from camtl.testing import make_tiny_encoder
from camtl.testing.models import LABELS, TASKS, mixed_batch
from camtl.testing.tiny import TINY_MODEL_TYPES


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_bits_dropout_drops_at_the_rounded_rate_and_keeps_the_expectation(p: float) -> None:
    torch.manual_seed(0)
    n = 2_000_000
    out = bits_dropout(torch.ones(n), p)
    rate = bits_threshold(p) / 65536
    assert abs(rate - p) <= 1 / 65536
    dropped = (out == 0).double().mean().item()
    assert abs(dropped - rate) < 5 * (rate * (1 - rate) / n) ** 0.5  # five standard errors
    kept = out[out != 0]
    assert torch.equal(kept, torch.full_like(kept, 1 / (1 - rate)))
    assert abs(out.double().mean().item() - 1.0) < 0.003


def test_an_element_is_dropped_exactly_when_its_16_bits_fall_below_the_threshold() -> None:
    """The documented rule, pattern for pattern: the element's bits as an unsigned 16-bit
    number u, dropped iff u < round(p * 65536)."""
    torch.manual_seed(4)
    words = torch.empty(50_000, dtype=torch.int32).random_(-(1 << 31), 1 << 31)
    unsigned = words.view(torch.int16).to(torch.int32) + 32768  # the same draw, 0..65535
    torch.manual_seed(4)
    out = bits_dropout(torch.ones(100_000), 0.3)
    assert torch.equal(out == 0, unsigned < bits_threshold(0.3))


def test_a_rate_just_under_one_still_keeps_and_scales() -> None:
    assert bits_threshold(1 - 1e-7) == 65535
    out = bits_dropout(torch.ones(10), 1 - 1e-7)
    assert torch.isfinite(out).all()


def test_each_half_of_a_random_word_is_uniform() -> None:
    """Both 16-bit halves of each 32-bit draw carry random bits (torch's plain random_()
    leaves the top bit at 0, which would halve the rate of every second element)."""
    torch.manual_seed(1)
    out = bits_dropout(torch.ones(1_000_000), 0.5)
    assert abs((out[0::2] == 0).double().mean().item() - 0.5) < 0.005
    assert abs((out[1::2] == 0).double().mean().item() - 0.5) < 0.005


def test_bits_dropout_is_seeded_and_its_gradient_uses_the_same_mask() -> None:
    x = torch.randn(3, 5, 7, requires_grad=True)
    torch.manual_seed(2)
    first = bits_dropout(x, 0.2)
    torch.manual_seed(2)
    again = bits_dropout(x, 0.2)
    assert torch.equal(first, again)
    first.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad != 0, first != 0)
    assert bits_dropout(x, 0.0) is x


def test_the_rule_of_auto() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert uses_bits("auto", cpu) and not uses_bits("auto", cuda)
    assert uses_bits("bits", cuda) and not uses_bits("bernoulli", cpu)


def test_masked_dropout_is_off_in_eval_and_bernoulli_is_torchs_dropout() -> None:
    x = torch.randn(4, 9)
    layer = MaskedDropout(0.25, False, "bits").eval()
    assert layer(x) is x
    layer = MaskedDropout(0.25, False, "bernoulli").train()
    torch.manual_seed(3)
    ours = layer(x)
    torch.manual_seed(3)
    assert torch.equal(ours, nn.Dropout(0.25).train()(x))


def tiny_model(
    folder: Path, masks: str, architecture: str = "camtl", attention_dropout: float = 0.0
) -> MultiTaskModel:
    config = ModelConfig(
        encoder=str(folder),
        architecture=architecture,
        dropout_masks=masks,  # type: ignore[arg-type]
        options={"camtl": CamtlOptions(max_length=16)} if architecture == "camtl" else {},
        attention_dropout=attention_dropout,
        hidden_dropout=0.2,
    )
    torch.manual_seed(0)
    return MultiTaskModel(AutoModel.from_pretrained(folder), TASKS, LABELS, config)


class CountTorchMasks(TorchDispatchMode):
    """Counts the operators torch's dropout draws its masks with."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func.overloadpacket in (torch.ops.aten.bernoulli_, torch.ops.aten.native_dropout):
            self.count += 1
        return func(*args, **(kwargs or {}))


# CA-MTL's layers drop the attention probabilities themselves (camtl.modeling.attention);
# a plain encoder's attention dropout is Hugging Face's F.dropout, out of the option's reach
@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
@pytest.mark.parametrize(
    ("architecture", "attention_dropout"), [("camtl", 0.0), ("camtl", 0.1), ("plain", 0.0)]
)
def test_bits_reaches_every_dropout_of_a_training_step(
    tmp_path: Path, model_type: str, architecture: str, attention_dropout: float
) -> None:
    folder = make_tiny_encoder(tmp_path, model_type)
    model = tiny_model(folder, "bits", architecture, attention_dropout).train()
    assert not [n for n, m in model.named_modules() if type(m) is nn.Dropout]
    batch = mixed_batch()
    with CountTorchMasks() as counter:
        model(**batch).loss.backward()  # type: ignore[union-attr]
    assert counter.count == 0
    set_dropout_masks(model, "bernoulli")  # back to torch's masks: they are drawn again
    with CountTorchMasks() as counter:
        model(**batch)
    assert counter.count > 0


@pytest.mark.parametrize("attention_dropout", [0.0, 0.1])
def test_bernoulli_masks_train_as_torchs_modules(tmp_path: Path, attention_dropout: float) -> None:
    """A model switched to ``bernoulli`` computes what one that never had the option does
    (CA-MTL's own attention dropout included)."""
    folder = make_tiny_encoder(tmp_path, "bert")
    switched = tiny_model(folder, "bits", attention_dropout=attention_dropout).train()
    set_dropout_masks(switched, "bernoulli")
    original = tiny_model(folder, "bernoulli", attention_dropout=attention_dropout).train()
    assert not [m for m in original.modules() if isinstance(m, MaskedDropout)]
    batch = mixed_batch()
    torch.manual_seed(5)
    expected = original(**batch).loss
    torch.manual_seed(5)
    assert torch.equal(switched(**batch).loss, expected)  # type: ignore[arg-type]


def test_added_tasks_and_saved_models_follow_the_option(tmp_path: Path) -> None:
    folder = make_tiny_encoder(tmp_path, "bert")
    model = tiny_model(folder, "bits")
    model.add_task(dataclasses.replace(TASKS[0], name="cls2"), ["a", "b"])
    assert not [n for n, m in model.named_modules() if type(m) is nn.Dropout]
    model.save_pretrained(tmp_path / "run")
    reloaded = MultiTaskModel.from_pretrained(tmp_path / "run")
    assert reloaded.config.dropout_masks == "bits"
    assert torch.equal(
        reloaded.state_dict()["heads.cls2.out.weight"], model.state_dict()["heads.cls2.out.weight"]
    )


def test_a_wrong_value_is_refused_with_its_key() -> None:
    with pytest.raises(ConfigError, match="dropout_masks"):
        from_dict(ModelConfig, {"dropout_masks": "fast"}, "model", "run.yaml")
