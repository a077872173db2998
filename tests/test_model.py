"""MultiTaskModel on tiny random encoders: mixed batches, losses, freezing, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from camtl.errors import CamtlError, ConfigError
from camtl.model_config import ModelConfig
from camtl.modeling import MultiTaskModel
from camtl.testing import make_tiny_encoder
from camtl.testing.models import LABELS, TASKS, mixed_batch


def build(encoder_dir: Path, **cfg) -> MultiTaskModel:
    config = ModelConfig(encoder=str(encoder_dir), **cfg)
    return MultiTaskModel(AutoModel.from_pretrained(encoder_dir), TASKS, LABELS, config)


def test_mixed_batch_has_every_task_loss_and_mean(tiny_encoder_dir: Path) -> None:
    model = build(tiny_encoder_dir)
    out = model(**mixed_batch())
    assert set(out.task_losses) == {"cls", "reg", "tag", "qa"}
    expected = torch.stack(list(out.task_losses.values())).mean()
    assert torch.allclose(out.loss, expected)
    assert out.logits["cls"].shape == (2, 3)
    assert out.logits["reg"].shape == (2,)
    assert out.logits["tag"].shape == (2, 9, 3)
    assert out.logits["qa"].shape == (2, 9, 2)
    out.loss.backward()
    for name in ("cls", "reg", "tag", "qa"):
        assert model.heads[name].out.weight.grad is not None


def test_mixed_batch_equals_each_task_alone(tiny_encoder_dir: Path) -> None:
    model = build(tiny_encoder_dir).eval()
    batch = mixed_batch()
    mixed = model(**batch)
    for index, name in enumerate(["cls", "reg", "tag", "qa"]):
        rows = (batch["task_ids"] == index).nonzero(as_tuple=True)[0]
        alone = model(**{k: v[rows] for k, v in batch.items()})
        assert torch.allclose(alone.logits[name], mixed.logits[name], atol=1e-5)


def test_freezing_leaves_no_gradient_on_frozen_layers(tiny_encoder_dir: Path) -> None:
    model = build(tiny_encoder_dir, freeze_embeddings=True, freeze_layers=2)
    model(**mixed_batch()).loss.backward()
    for name, param in model.named_parameters():
        frozen = (
            name.startswith("encoder.embeddings")
            or "encoder.layer.0." in name
            or "encoder.layer.1." in name
            or "pooler" in name
        )
        assert param.requires_grad is not frozen, name
        assert (param.grad is None) is frozen, name
    with pytest.raises(ConfigError, match="freeze_layers"):
        build(tiny_encoder_dir, freeze_layers=9)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "electra", "xlm-roberta"])
def test_save_and_reload_give_identical_outputs(tmp_path: Path, model_type: str) -> None:
    encoder_dir = make_tiny_encoder(tmp_path / "enc", model_type)
    model = build(encoder_dir).eval()
    model.save_pretrained(tmp_path / "run")
    again = MultiTaskModel.from_pretrained(tmp_path / "run")
    batch = mixed_batch()
    a, b = model(**batch), again(**batch)
    for name in a.logits:
        assert torch.equal(a.logits[name], b.logits[name])
    assert again.labels == LABELS
    assert [t.name for t in again.tasks] == ["cls", "reg", "tag", "qa"]


@pytest.mark.parametrize("attention", ["sdpa", "eager", "auto"])
@pytest.mark.parametrize("model_type", ["bert", "roberta", "electra", "xlm-roberta"])
def test_plain_encoder_is_the_pretrained_model_for_every_attention(
    tmp_path: Path, model_type: str, attention: str
) -> None:
    """Identity at init: the plain encoder's hidden states are Hugging Face's own (its
    default kernel) whatever ``model.attention`` says, padding included."""
    encoder_dir = make_tiny_encoder(tmp_path / "enc", model_type)
    hf = AutoModel.from_pretrained(encoder_dir).eval()
    model = build(encoder_dir, attention=attention).eval()
    batch = mixed_batch()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        expected = hf(**inputs).last_hidden_state
        got = model.encode(**inputs, task_ids=batch["task_ids"])
    mask = inputs["attention_mask"].bool()
    assert torch.allclose(got[mask], expected[mask], atol=1e-5)


def test_from_pretrained_on_a_wrong_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CamtlError, match="no saved model"):
        MultiTaskModel.from_pretrained(tmp_path)


def test_unsupported_architecture_is_refused(tmp_path: Path) -> None:
    from transformers import AutoConfig

    config = AutoConfig.for_model("gpt2", n_layer=1, n_embd=16, n_head=2, vocab_size=50)
    encoder = AutoModel.from_config(config)
    with pytest.raises(ConfigError, match="decoder-only"):
        MultiTaskModel(encoder, TASKS, LABELS, ModelConfig(encoder="gpt2-tiny"))
