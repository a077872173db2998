"""`camtl export RUN_DIR --format onnx --output DIR`, and running an export on onnxruntime.

The export is one ONNX graph of the whole model: token ids, attention mask, token types,
task ids (and the input fields some kinds need, such as multiple choice's ``choice_ids``,
each shaped as its ``BatchField`` layout says) in; every task's head output for every row
out (``logits_<task>``), with dynamic batch and length axes. CA-MTL runs in its gather
form there (each example's task weights gathered), so the graph has no data-dependent
shapes. DIR also holds the tokenizer, the label maps, the run's config and reports and a
model card, so ``camtl predict DIR`` and ``camtl serve DIR`` run it as they run a run
directory. ``--quantize int8`` writes the graph with int8 weights, behind a parity gate on
the run's dev split (camtl.quantize).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from camtl.errors import CamtlError, ConfigError
from camtl.fileio import atomic_write_text, check_apart
from camtl.model_card import write_model_card
from camtl.modeling.families import cap_task_lengths, position_limit
from camtl.modeling.model import MultiTaskModel, MultiTaskOutput, read_saved_meta
from camtl.quantize import (
    MAX_DROP,
    PARITY_SPLIT,
    QUANTIZE_CHOICES,
    Parity,
    Reference,
    card_section,
    check_parity,
    fp32_reference,
    parity_table,
    quantize_export,
    too_large,
)
from camtl.runfiles import CONFIG_FILE, EXPORT_FILE, MODEL_FILE
from camtl.tasks.kinds import BatchField

ONNX_FILE = "model.onnx"
ONNX_DATA_FILE = f"{ONNX_FILE}.data"  # the weights, beside the graph (torch.onnx writes them)
CUDA_PROVIDER = "CUDAExecutionProvider"
BASE_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "task_ids")
# files of a run directory an export carries along (the tokenizer's are saved afresh)
CARRIED = (MODEL_FILE, CONFIG_FILE, "report.json", "report.md", "report_test.json")


def input_fields(model: MultiTaskModel) -> list[BatchField]:
    """The kinds' input batch fields the model's heads read, in a stable order."""
    fields: dict[str, BatchField] = {}
    for spec in model.tasks:
        for batch_field in spec.kind.batch_fields:
            if batch_field.role == "input":
                fields.setdefault(batch_field.name, batch_field)
    return list(fields.values())


def field_tensor(batch_field: BatchField, mask: torch.Tensor, width: int) -> torch.Tensor:
    """Made-up values of an input field for a batch whose attention mask is ``mask``
    [B, L], laid out as the field declares: ``scalar`` [B], ``tokens`` [B, L] (the field's
    fill on padding), ``vector`` [B, width]. The values are 0, 1, 0, ... (an index, a
    position or a flag alike: what a head reads of a real batch); padding holds the fill."""
    rows = mask.shape[0]
    if batch_field.layout == "scalar":
        values = torch.arange(rows) % 2
    elif batch_field.layout == "tokens":
        values = (torch.arange(mask.shape[1]) % 2).expand(rows, -1)
        values = torch.where(mask.bool(), values, torch.full_like(values, -1))
    else:
        values = (torch.arange(width) % 2).expand(rows, -1).clone()
        values[-1, width - 1] = -1  # one row shorter than the longest
    tensor = values.to(batch_field.dtype)
    return tensor.masked_fill(values < 0, batch_field.fill)


def field_axes(
    batch_field: BatchField, batch: torch.export.Dim, length: torch.export.Dim
) -> dict[int, torch.export.Dim]:
    """The dynamic axes of an input field by its layout (a vector's width its own)."""
    if batch_field.layout == "scalar":
        return {0: batch}
    if batch_field.layout == "tokens":
        return {0: batch, 1: length}
    return {0: batch, 1: torch.export.Dim(f"{batch_field.name}_width")}


class _Graph(nn.Module):
    """The model as one function of tensors: every head on every row."""

    def __init__(self, model: MultiTaskModel, fields: list[str]) -> None:
        super().__init__()
        self.model = model
        self.fields = fields

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        task_ids: torch.Tensor,
        *extra: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        hidden = self.model.encoder(input_ids, attention_mask, token_type_ids, task_ids)
        inputs = dict(zip(self.fields, extra))
        outputs = []
        for spec in self.model.tasks:
            head = self.model.heads[spec.name]
            wanted = {f.name for f in spec.kind.batch_fields if f.role == "input"}
            outputs.append(
                head(hidden, attention_mask, {k: v for k, v in inputs.items() if k in wanted})
            )
        return tuple(outputs)


def _example_inputs(model: MultiTaskModel, fields: list[BatchField]) -> tuple[torch.Tensor, ...]:
    ids = torch.tensor([[2, 10, 11, 12, 3, 5, 6, 3], [2, 12, 13, 3, 7, 3, 0, 0]])
    mask = (ids != 0).long()
    tasks = torch.tensor([0, len(model.tasks) - 1])
    extra = [field_tensor(f, mask, width=3) for f in fields]
    return (ids, mask, torch.zeros_like(ids), tasks, *extra)


def export_onnx(
    run_dir: Path,
    output: Path,
    overwrite: bool = False,
    quantize: str = "none",
    max_drop: float = MAX_DROP,
    accept_drop: bool = False,
) -> Path:
    """Write the ONNX export of ``run_dir`` into ``output``; checks it against PyTorch.

    ``quantize="int8"`` writes the graph with int8 weights once its dev scores are within
    ``max_drop`` points of the fp32 model's on every task (camtl.quantize), or anyway with
    ``accept_drop``. The export is built in a folder beside ``output`` and moved in only
    when finished, so a failed or refused export leaves ``output`` as it was."""
    _require_onnx_extras()
    if quantize not in QUANTIZE_CHOICES:
        raise CamtlError(f"--quantize {quantize!r}: not one of {', '.join(QUANTIZE_CHOICES)}")
    check_apart(run_dir, output, "--output")
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise CamtlError(f"--output {output}: not empty (--overwrite replaces it)")
    reference = fp32_reference(run_dir) if quantize == "int8" else None
    with _staging(output) as folder:
        _write_export(run_dir, folder)
        if reference is not None:
            _quantize_with_gate(reference, folder, max_drop, accept_drop)
        _publish(folder, output)
    card = write_model_card(output)
    if quantize == "int8":
        atomic_write_text(card, card.read_text(encoding="utf-8") + card_section(parity_of(output)))
    return output / ONNX_FILE


def _require_onnx_extras() -> None:
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401  (torch.onnx's exporter)
    except ImportError as exc:
        raise CamtlError(
            f"camtl export needs the ONNX extras ({exc.name} is missing): pip install 'camtl[onnx]'"
        ) from None


@contextmanager
def _staging(output: Path) -> Iterator[Path]:
    """A new folder beside ``output`` (same file system) for the export, removed at exit."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _publish(staged: Path, output: Path) -> None:
    """Move the finished export's files into ``output``, each replacing its namesake (other
    files stay, but not a previous export's graph); ``export.json`` goes first out and last
    in, so that ``output`` reads as an export only when it holds the whole of this one."""
    output.mkdir(parents=True, exist_ok=True)
    for name in (EXPORT_FILE, ONNX_FILE, ONNX_DATA_FILE):
        (output / name).unlink(missing_ok=True)
    names = sorted(p.name for p in staged.iterdir() if p.name != EXPORT_FILE)
    for name in [*names, EXPORT_FILE]:
        os.replace(staged / name, output / name)


def _write_export(run_dir: Path, output: Path) -> None:
    """The fp32 graph (checked against PyTorch), tokenizer, run files and export.json."""
    from camtl.modeling.encoder import load_saved_tokenizer

    model = MultiTaskModel.from_pretrained(run_dir).float().eval()
    model.encoder.gather_for_export()
    fields = input_fields(model)
    names = [*BASE_INPUTS, *(f.name for f in fields)]
    example = _example_inputs(model, fields)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    rows_and_tokens = {0: batch, 1: length}
    dynamic: dict[str, Any] = {name: rows_and_tokens for name in BASE_INPUTS}
    dynamic["task_ids"] = {0: batch}
    if fields:  # _Graph's *extra, present only when a head reads an input field
        dynamic["extra"] = tuple(field_axes(f, batch, length) for f in fields)
    graph = _Graph(model, [f.name for f in fields]).eval()
    outputs = [f"logits_{spec.name}" for spec in model.tasks]
    with torch.inference_mode():
        torch.onnx.export(
            graph,
            example,
            str(output / ONNX_FILE),
            dynamo=True,
            input_names=names,
            output_names=outputs,
            dynamic_shapes=dynamic,
            verbose=False,
        )
    _check_against_pytorch(graph, output / ONNX_FILE, names, fields)
    load_saved_tokenizer(run_dir).save_pretrained(output)
    for name in CARRIED:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, output / name)
    info = {
        "format": "onnx",
        "source_run": str(run_dir),
        "inputs": names,
        "outputs": dict(zip([t.name for t in model.tasks], outputs)),
        # the longest input the graph's position table takes (None: no limit); a task's
        # max_length in camtl_model.json may be longer in a run trained before it was checked
        "max_positions": position_limit(model.encoder.config),
    }
    atomic_write_text(output / EXPORT_FILE, json.dumps(info, indent=2))


def _quantize_with_gate(
    reference: Reference, folder: Path, max_drop: float, accept_drop: bool
) -> None:
    """Quantise the export in ``folder`` to int8, record its dev parity with the fp32 model
    in export.json, and raise ParityError on a drop over ``max_drop`` unless accepted."""
    quantize_export(folder)
    table = parity_table(reference, folder)
    info = json.loads((folder / EXPORT_FILE).read_text(encoding="utf-8"))
    info.update(
        parity=table,
        parity_split=PARITY_SPLIT,
        max_drop=max_drop,
        over_max_drop=too_large(table, max_drop),
    )
    atomic_write_text(folder / EXPORT_FILE, json.dumps(info, indent=2))
    if not accept_drop:
        check_parity(table, max_drop)


def parity_of(folder: Path) -> Parity:
    """The int8 parity table an export's export.json records (empty for fp32)."""
    info = json.loads((folder / EXPORT_FILE).read_text(encoding="utf-8"))
    return info.get("parity", {})


def _check_against_pytorch(
    graph: _Graph, path: Path, names: list[str], fields: list[BatchField]
) -> None:
    """The graph on onnxruntime gives PyTorch's outputs on a batch of another size and
    length (and vector width) than the one traced (within 1e-4 in fp32), or the export
    stops."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids = torch.tensor([[2, 10, 11, 12, 13, 3, 6, 7, 3, 0, 0], [2, 5, 3, 8, 3] + [0] * 6] * 2)
    mask = (ids != 0).long()
    tasks = torch.arange(4) % len(graph.model.tasks)
    extra = [field_tensor(f, mask, width=5) for f in fields]
    inputs = (ids, mask, torch.zeros_like(ids), tasks, *extra)
    with torch.inference_mode():
        expected = graph(*inputs)
    got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})
    for spec, want, have in zip(graph.model.tasks, expected, got):
        finite = torch.isfinite(want)  # span QA masks padding with the dtype's minimum
        gap = float((want[finite] - torch.from_numpy(have)[finite]).abs().max())
        if gap > 1e-4:
            raise CamtlError(
                f"ONNX export of task {spec.name}: outputs differ from PyTorch by {gap:.2g}"
            )


def is_export(folder: Path) -> bool:
    return (folder / ONNX_FILE).is_file() and (folder / EXPORT_FILE).is_file()


class OnnxMultiTaskModel:
    """An export run on onnxruntime, with the part of MultiTaskModel's interface that
    evaluation, ``predict`` and ``serve`` use (tasks, labels, a forward pass)."""

    training = False

    def __init__(self, folder: Path, device: str = "cpu") -> None:
        import onnxruntime

        meta_path = folder / MODEL_FILE
        loaded = MultiTaskModel.describe_saved(read_saved_meta(meta_path), str(meta_path))
        self.config, self.tasks, self.labels = loaded
        self.task_index = {t.name: i for i, t in enumerate(self.tasks)}
        info_path = folder / EXPORT_FILE
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
            self.outputs = info["outputs"]
            limit = info.get("max_positions")  # exports before it was recorded: none
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CamtlError(f"{info_path}: unreadable export record ({exc!r})") from None
        if limit is not None and not (isinstance(limit, int) and limit > 0):
            raise CamtlError(f"{info_path}: max_positions {limit!r} is not a positive integer")
        cap_task_lengths(limit, self.tasks, str(folder))
        providers = onnx_providers(device, onnxruntime.get_available_providers())
        try:
            self.session = onnxruntime.InferenceSession(
                str(folder / ONNX_FILE), providers=providers
            )
        except Exception as exc:  # onnxruntime's own error types: a damaged graph or weights
            raise CamtlError(
                f"{folder / ONNX_FILE}: the graph or its weights (model.onnx.data) are "
                f"damaged or missing ({str(exc).splitlines()[0][:200]})"
            ) from None
        if device != "cpu" and CUDA_PROVIDER not in self.session.get_providers():
            # onnxruntime falls back to the CPU when the CUDA provider fails to load
            raise ConfigError(
                f"--device {device!r}: onnxruntime could not start its {CUDA_PROVIDER} for "
                f"{folder} (missing CUDA or cuDNN libraries?); use --device cpu"
            )
        # each graph input with the numpy type the graph declares for it
        types = {
            "tensor(int64)": np.int64,
            "tensor(int32)": np.int32,
            "tensor(float)": np.float32,
            "tensor(double)": np.float64,
            "tensor(bool)": np.bool_,
        }
        self.inputs = {i.name: types.get(i.type, np.int64) for i in self.session.get_inputs()}

    def eval(self) -> OnnxMultiTaskModel:
        return self

    def train(self, mode: bool = True) -> OnnxMultiTaskModel:
        if mode:
            raise CamtlError("an ONNX export runs inference only")
        return self

    def __call__(self, task_ids: torch.Tensor, **batch: torch.Tensor) -> MultiTaskOutput:
        batch["task_ids"] = task_ids
        feed: dict[str, np.ndarray] = {
            name: batch[name].cpu().numpy().astype(t) for name, t in self.inputs.items()
        }
        results = dict(zip(self.outputs.values(), self.session.run(None, feed)))
        output = MultiTaskOutput(loss=None)
        for index in torch.unique(task_ids).tolist():
            name = self.tasks[index].name
            rows = (task_ids == index).nonzero(as_tuple=True)[0]
            output.logits[name] = torch.from_numpy(results[self.outputs[name]])[rows.cpu()]
            output.rows[name] = rows
        return output


def onnx_providers(device: str, available: list[str]) -> list[Any]:
    """onnxruntime execution providers for a resolved device (``cpu`` or ``cuda:N``):
    the CUDA provider on GPU N, else a ``ConfigError``: an export asked to run on a GPU
    never runs on the CPU instead."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if CUDA_PROVIDER not in available:
        raise ConfigError(
            f"--device {device!r}: this onnxruntime has no {CUDA_PROVIDER} (providers: "
            f"{', '.join(available)}); install onnxruntime-gpu in its place, or use --device cpu"
        )
    index = int(device.partition(":")[2] or 0)
    return [(CUDA_PROVIDER, {"device_id": index})]


def load_model(folder: Path, device: str = "cpu") -> Any:
    """The model of a run directory (PyTorch, ready for inference only) or of an ONNX
    export (onnxruntime), on a resolved ``device`` (``cpu`` or ``cuda:N``, camtl.device)."""
    from camtl.modeling.frozen_cast import prepare_for_inference

    if is_export(folder):
        return OnnxMultiTaskModel(folder, device)
    return prepare_for_inference(MultiTaskModel.from_pretrained(folder, device))
