"""Every encoder family camtl knows, driven by one table of tiny random models: identity at
initialisation against the Hugging Face model (CA-MTL and plain, both attention kernels),
mixed batches, parameter accounting, refusals with their reason, and per family a CA-MTL
run trained by `camtl train`, reloaded, exported to ONNX and served over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoConfig, AutoModel

from camtl.cli import main
from camtl.errors import ConfigError
from camtl.model_config import ModelConfig
from camtl.modeling import MultiTaskModel
from camtl.modeling.conditional_encoder import CamtlOptions, ConditionalEncoder
from camtl.modeling.families import camtl_model_types
from camtl.modeling.shared_encoder import PlainEncoder
from camtl.testing import make_tiny_encoder
from camtl.testing.models import LABELS, TASKS, mixed_batch, padded_inputs, randomize_conditional
from camtl.testing.runs import train_kinds_run
from camtl.testing.server import ServerProcess
from camtl.testing.tiny import TINY_MODEL_TYPES

FAMILIES = list(TINY_MODEL_TYPES)
RUN_KINDS = ["classification", "token_tagging", "span_qa"]


@pytest.fixture(scope="module", params=FAMILIES)
def family_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp(request.param), request.param)


def hf_output(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The Hugging Face model's own forward pass, given the inputs it takes."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    return model(**{k: v for k, v in inputs.items() if k in accepted}).last_hidden_state


def test_the_table_covers_every_family_with_a_camtl_layer() -> None:
    assert set(camtl_model_types()) <= set(FAMILIES)
    wanted = {"bert", "roberta", "xlm-roberta", "electra", "distilbert", "mpnet", "deberta-v2"}
    assert wanted | {"modernbert"} <= set(camtl_model_types())


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_identity_at_initialisation(family_dir: Path, attention: str) -> None:
    inputs = padded_inputs()
    mask = inputs["attention_mask"].bool()
    with torch.no_grad():
        expected = hf_output(AutoModel.from_pretrained(family_dir).eval(), inputs)
        for encoder in (
            ConditionalEncoder(
                AutoModel.from_pretrained(family_dir), 3, CamtlOptions(max_length=16)
            ),
            PlainEncoder(AutoModel.from_pretrained(family_dir)),
        ):
            encoder.eval().set_attention(attention)
            got = encoder(**inputs, task_ids=torch.tensor([0, 1, 2]))
            difference = (got[mask] - expected[mask]).abs().max().item()
            assert difference <= 1e-5, (type(encoder).__name__, difference)


def test_identity_holds_for_every_camtl_variant(family_dir: Path) -> None:
    inputs = padded_inputs()
    mask = inputs["attention_mask"].bool()
    variants = [
        CamtlOptions(max_length=16, bottleneck="large", generators="per_layer"),
        CamtlOptions(max_length=16, attention_form="authors", alignment_form="elementwise"),
    ]
    with torch.no_grad():
        expected = hf_output(AutoModel.from_pretrained(family_dir).eval(), inputs)
        for cam in variants:
            encoder = ConditionalEncoder(AutoModel.from_pretrained(family_dir), 3, cam).eval()
            got = encoder(**inputs, task_ids=torch.tensor([2, 0, 1]))
            assert (got[mask] - expected[mask]).abs().max().item() <= 1e-5


def test_mixed_tasks_match_each_task_alone_and_padding_changes_nothing(family_dir: Path) -> None:
    config = ModelConfig(
        encoder=str(family_dir),
        architecture="camtl",
        options={"camtl": CamtlOptions(max_length=16)},
    )
    model = MultiTaskModel(AutoModel.from_pretrained(family_dir), TASKS, LABELS, config)
    randomize_conditional(model.encoder)  # type: ignore[arg-type]
    model.eval()
    batch = mixed_batch()
    with torch.no_grad():
        mixed = model(**batch)
        for index, name in enumerate(["cls", "reg", "tag", "qa"]):
            rows = (batch["task_ids"] == index).nonzero(as_tuple=True)[0]
            alone = model(**{k: v[rows] for k, v in batch.items()})
            assert torch.allclose(alone.logits[name], mixed.logits[name], atol=1e-5)
        # row 1 is padded from position 6: alone and unpadded it gives the same hidden states
        full = model.encoder(
            batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch["task_ids"]
        )
        short = model.encoder(
            batch["input_ids"][1:2, :6],
            batch["attention_mask"][1:2, :6],
            batch["token_type_ids"][1:2, :6],
            batch["task_ids"][1:2],
        )
        assert torch.allclose(full[1, :6], short[0], atol=1e-5)


def test_parameter_accounting(family_dir: Path) -> None:
    hf = AutoModel.from_pretrained(family_dir)
    pretrained = sum(
        p.numel() for name, p in hf.named_parameters() if not name.startswith("pooler.")
    )
    plain = PlainEncoder(AutoModel.from_pretrained(family_dir))
    camtl = ConditionalEncoder(AutoModel.from_pretrained(family_dir), 3, CamtlOptions())
    assert plain.pretrained_parameter_count() == pretrained
    assert camtl.pretrained_parameter_count() == pretrained
    # every pretrained parameter is the encoder's, saved once; the rest is conditional
    own = sum(p.numel() for p in camtl.parameters())
    conditional = sum(p.numel() for m in camtl.conditional_modules() for p in m.parameters())
    assert own == pretrained + conditional


def test_freezing_reaches_every_position_table(family_dir: Path) -> None:
    config = ModelConfig(  # the paper's freezing
        encoder=str(family_dir), architecture="camtl", freeze_embeddings=True, freeze_layers="half"
    )
    model = MultiTaskModel(AutoModel.from_pretrained(family_dir), TASKS, LABELS, config)
    encoder = model.encoder
    for module in [encoder.embeddings, *encoder.position_modules()]:
        assert not any(p.requires_grad for p in module.parameters())
    layers = encoder.pretrained_layers()
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[-1].parameters())


# the published configurations (no weights): CA-MTL with 9 tasks within 1.15x the encoder
PUBLISHED = {
    "deberta-v3-base": {
        "model_type": "deberta-v2",
        "vocab_size": 128100,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 512,
        "relative_attention": True,
        "position_buckets": 256,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "pos_att_type": ["p2c", "c2p"],
        "position_biased_input": False,
        "max_relative_positions": -1,
        "type_vocab_size": 0,
        "layer_norm_eps": 1e-7,
        "hidden_act": "gelu",
    },
    "ModernBERT-base": {
        "model_type": "modernbert",
        "vocab_size": 50368,
        "hidden_size": 768,
        "intermediate_size": 1152,
        "num_hidden_layers": 22,
        "num_attention_heads": 12,
        "max_position_embeddings": 8192,
        "local_attention": 128,
        "global_attn_every_n_layers": 3,
        "norm_bias": False,
        "mlp_bias": False,
        "attention_bias": False,
        "pad_token_id": 50283,
        "cls_token_id": 50281,
        "sep_token_id": 50282,
        "bos_token_id": 50281,
        "eos_token_id": 50282,
        "hidden_activation": "gelu",
    },
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_configs_meet_the_parameter_budget(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.json").write_text(json.dumps(PUBLISHED[name]))
    assert main(["params", "--model", str(tmp_path), "--tasks", "9", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["ratio"] <= 1.15, counts


def _config(model_type: str, **fields: Any) -> Any:
    return AutoConfig.for_model(model_type, **fields)


REFUSALS = {
    "decoder-only": (
        lambda: _config("gpt2", n_layer=1, n_embd=16, n_head=2, vocab_size=50),
        "plain",
        "decoder-only model",
    ),
    "encoder-decoder": (
        lambda: _config("t5", d_model=16, num_layers=1, num_heads=2, d_ff=32, vocab_size=50),
        "plain",
        "encoder-decoder model",
    ),
    "no camtl layer": (
        lambda: _config(
            "albert",
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            embedding_size=16,
            vocab_size=50,
        ),
        "camtl",
        "CA-MTL has no layer for",
    ),
    "deberta convolution": (
        lambda: _config(
            "deberta-v2",
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            vocab_size=50,
            conv_kernel_size=3,
        ),
        "camtl",
        "convolution",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_models_that_cannot_work_are_refused_with_the_reason(case: str) -> None:
    make_config, architecture, reason = REFUSALS[case]
    encoder = AutoModel.from_config(make_config())
    config = ModelConfig(encoder="tiny", architecture=architecture)
    with pytest.raises(ConfigError, match=reason) as info:
        MultiTaskModel(encoder, TASKS, LABELS, config)
    assert str(info.value).startswith("key 'model.encoder'")
    if architecture == "camtl" and case == "no camtl layer":
        assert "model.architecture: plain" in str(info.value)


def test_a_family_without_a_camtl_layer_runs_plain(tmp_path: Path) -> None:
    encoder = AutoModel.from_config(
        _config(
            "albert",
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            embedding_size=16,
            vocab_size=60,
        )
    )
    model = MultiTaskModel(encoder, TASKS, LABELS, ModelConfig(encoder="tiny-albert"))
    out = model(**mixed_batch())
    assert out.loss is not None and torch.isfinite(out.loss)
    out.loss.backward()


# one row per layer module beside BERT's (whose run, reload, export and serving
# tests/test_export.py and tests/test_serve.py hold; roberta, xlm-roberta, camembert and
# electra run its layer)
RUN_FAMILIES = ["distilbert", "mpnet", "deberta-v2", "modernbert"]


@pytest.fixture(scope="module", params=RUN_FAMILIES)
def family_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`camtl train` of a CA-MTL config naming a folder of the family (fp32, for parity)."""
    family_dir = make_tiny_encoder(tmp_path_factory.mktemp(request.param), request.param)
    root = tmp_path_factory.mktemp(f"run_{family_dir.name}")
    return train_kinds_run(
        root, family_dir, RUN_KINDS, "camtl", max_length=32, max_steps=2, mixed_precision="no"
    )


def _predict(run: Path, kind_name: str, source: Path, out: Path) -> list[dict]:
    argv = ["predict", str(run), "--task", f"{kind_name}_task"]
    assert main([*argv, "--input", str(source), "--output", str(out)]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def _sample_inputs(kind_name: str, folder: Path) -> tuple[Path, list[dict]]:
    from camtl.tasks.kinds import get_kind

    sample = get_kind(kind_name).sample()
    inputs = [{c: r[c] for c in sample.text_columns} for r in sample.records]
    path = folder / f"{kind_name}_in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in inputs))
    return path, inputs


def _close(a: dict, b: dict, tolerance: float) -> None:
    assert set(a) - {"row"} == set(b) - {"row"}
    for key, value in a.items():
        if key == "row":
            continue
        if key == "probabilities":
            values = value.values() if isinstance(value, dict) else value
            other = b[key].values() if isinstance(value, dict) else b[key]
            assert all(abs(x - y) < tolerance for x, y in zip(values, other))
        elif key == "score":
            assert abs(value - b[key]) < tolerance
        else:
            assert value == b[key], key


def test_trained_run_reloads_exports_and_serves(family_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    model = MultiTaskModel.from_pretrained(family_run)
    assert (
        model.encoder.config.model_type
        == json.loads((family_run / "encoder_config" / "config.json").read_text())["model_type"]
    )
    offline = {}
    for kind_name in RUN_KINDS:
        source, _ = _sample_inputs(kind_name, tmp_path)
        offline[kind_name] = _predict(family_run, kind_name, source, tmp_path / f"{kind_name}.out")
    # ONNX: one graph whose onnxruntime predictions equal PyTorch's
    pytest.importorskip("onnxruntime")
    exported = tmp_path / "onnx"
    assert main(["export", str(family_run), "--format", "onnx", "--output", str(exported)]) == 0
    for kind_name in RUN_KINDS:
        source, _ = _sample_inputs(kind_name, tmp_path)
        rows = _predict(exported, kind_name, source, tmp_path / f"{kind_name}.onnx.out")
        for a, b in zip(offline[kind_name], rows, strict=True):
            _close(a, b, 1e-3)
    # served over real HTTP: the same predictions
    server = ServerProcess(family_run)
    try:
        for kind_name in RUN_KINDS:
            _, inputs = _sample_inputs(kind_name, tmp_path)
            status, body, _ = server.call(
                "POST", "/v1/predict", {"task": f"{kind_name}_task", "inputs": inputs}
            )
            assert status == 200, body
            for a, b in zip(offline[kind_name], body["predictions"], strict=True):
                _close(a, b, 1e-4)
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("model_type", "fields", "positions"),
    [
        ("bert", {}, 512),
        ("electra", {}, 512),
        ("distilbert", {}, 512),
        # RoBERTa's and MPNet's tables start after the padding index: 514 rows, 512 positions
        ("roberta", {"max_position_embeddings": 514, "pad_token_id": 1}, 512),
        ("xlm-roberta", {"max_position_embeddings": 514, "pad_token_id": 1}, 512),
        ("camembert", {"max_position_embeddings": 514, "pad_token_id": 1}, 512),
        ("mpnet", {"max_position_embeddings": 514, "pad_token_id": 1}, 512),
        ("deberta-v2", {"position_biased_input": True}, 512),  # DeBERTa-v2's table
        ("deberta-v2", {"position_biased_input": False}, None),  # v3: relative only
        ("modernbert", {}, None),  # rotary
    ],
)
def test_the_longest_input_each_family_takes(
    model_type: str, fields: dict[str, Any], positions: int | None
) -> None:
    from camtl.modeling.families import check_task_lengths, family_for
    from camtl.tasks.spec import TaskSpec

    config = AutoConfig.for_model(model_type, **fields)
    family = family_for(model_type)
    assert family is not None and family.max_positions(config) == positions
    if positions is not None:
        too_long = TaskSpec("t", "classification", ["text"], "label", max_length=positions + 1)
        with pytest.raises(ConfigError, match=f"max_length' \\(task 't'\\): {positions + 1}, mo"):
            check_task_lengths(config, [too_long], "enc")
        fits = TaskSpec("t", "classification", ["text"], "label", max_length=positions)
        check_task_lengths(config, [fits], "enc")
        odd = "runs/{x}/task.yaml: key 'task.max_length'"  # braces in add-task's file path
        with pytest.raises(ConfigError, match=r"^runs/\{x\}/task.yaml: key 'task.max_length' "):
            check_task_lengths(config, [too_long], "enc", odd)
