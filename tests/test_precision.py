"""Precision: what ``auto`` resolves to, YAML's unquoted ``no``, and bf16 inference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from camtl import precision
from camtl.config import load_config
from camtl.evaluation.decode import run_model
from camtl.precision import autocast, cpu_has_fast_bf16, resolve_precision
from camtl.testing.models import build_camtl, mixed_batch, randomize_conditional


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile", True),
        ("flags\t\t: fpu sse avx2 avx512f amx_bf16", True),
        ("Features\t: fp asimd bf16 i8mm", True),  # Arm
        ("flags\t\t: fpu sse avx2 avx512f avx512bw", False),
    ],
)
def test_cpuinfo_flags(tmp_path: Path, flags: str, expected: bool) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: some cpu\n{flags}\n\nprocessor\t: 1\n")
    assert cpu_has_fast_bf16.__wrapped__(str(path)) is expected


def test_missing_cpuinfo_means_no_bf16(tmp_path: Path) -> None:
    assert cpu_has_fast_bf16.__wrapped__(str(tmp_path / "absent")) is False


@pytest.mark.parametrize(("fast", "expected"), [(True, "bf16"), (False, "no")])
def test_auto_follows_the_cpu(monkeypatch: pytest.MonkeyPatch, fast: bool, expected: str) -> None:
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: fast)
    assert resolve_precision("auto", "cpu") == expected
    for explicit in ("no", "bf16", "fp16"):
        assert resolve_precision(explicit, "cpu") == explicit


@pytest.mark.parametrize(
    ("written", "expected"),
    [("no", "no"), ('"no"', "no"), ("false", "no"), ("bf16", "bf16"), ("auto", "auto")],
)
def test_unquoted_no_in_yaml_means_fp32(tmp_path: Path, written: str, expected: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(f"tasks: [snli]\ntraining:\n  mixed_precision: {written}\n")
    assert load_config(path).training.mixed_precision == expected


def test_default_is_auto(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("tasks: [snli]\n")
    assert load_config(path).training.mixed_precision == "auto"


def test_autocast_no_is_fp32() -> None:
    layer = torch.nn.Linear(4, 4)
    with autocast("no"):
        assert layer(torch.ones(1, 4)).dtype == torch.float32
    with autocast("bf16"):
        assert layer(torch.ones(1, 4)).dtype == torch.bfloat16


# bf16 twins: the same model and inputs in bf16 autocast stay within a stated tolerance of
# fp32. bf16 keeps 8 bits of mantissa (relative error ~4e-3 per rounding); over a few
# tiny layers the logits move by a few hundredths.
BF16_ATOL = 0.05


def test_bf16_logits_close_to_fp32(encoder_dir_bert: Path) -> None:
    model = build_camtl(encoder_dir_bert)
    randomize_conditional(model.encoder)
    model.eval()
    batch = mixed_batch()
    with torch.inference_mode():
        fp32 = model(**batch)
        with autocast("bf16"):
            bf16 = model(**batch)
    for name, logits in fp32.logits.items():
        assert torch.allclose(bf16.logits[name].float(), logits, atol=BF16_ATOL), name
    # ... and bf16 really ran: the logits are not fp32's to the last bit
    assert any(not torch.equal(bf16.logits[n].float(), fp32.logits[n]) for n in fp32.logits)


def test_bf16_mixed_tasks_match_each_task_alone(encoder_dir_bert: Path) -> None:
    model = build_camtl(encoder_dir_bert)
    randomize_conditional(model.encoder)
    model.eval()
    batch = mixed_batch()
    with torch.inference_mode(), autocast("bf16"):
        mixed = model(**batch)
        for index, name in enumerate(["cls", "reg", "tag", "qa"]):
            rows = (batch["task_ids"] == index).nonzero(as_tuple=True)[0]
            alone = model(**{k: v[rows] for k, v in batch.items()})
            assert torch.allclose(
                alone.logits[name].float(), mixed.logits[name].float(), atol=BF16_ATOL
            ), name


def test_run_model_returns_fp32_in_bf16(encoder_dir_bert: Path) -> None:
    model = build_camtl(encoder_dir_bert)
    batch = mixed_batch()
    rows = (batch["task_ids"] == 0).nonzero(as_tuple=True)[0].tolist()
    features = [
        {
            "input_ids": batch["input_ids"][r].tolist(),
            "attention_mask": batch["attention_mask"][r].tolist(),
            "token_type_ids": batch["token_type_ids"][r].tolist(),
            "task_id": 0,
        }
        for r in rows
    ]
    fp32 = run_model(model, features, "cls", 2, 0)
    bf16 = run_model(model, features, "cls", 2, 0, precision="bf16")
    for a, b in zip(fp32, bf16):
        assert b.dtype == a.dtype and abs(a - b).max() < BF16_ATOL
    assert any((a != b).any() for a, b in zip(fp32, bf16))  # the precision was applied


@pytest.fixture(scope="module")
def encoder_dir_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from camtl.testing import make_tiny_encoder

    path = make_tiny_encoder(tmp_path_factory.mktemp("bert"), "bert")
    AutoModel.from_pretrained(path)  # fails early if the tiny encoder is unusable
    return path
