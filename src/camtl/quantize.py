"""`camtl export --quantize int8`: onnxruntime dynamic quantisation of an export, and the
parity gate that holds the int8 graph to the fp32 PyTorch model on the run's dev split.

Dynamic quantisation stores the weights of the graph's MatMul/Gemm nodes as int8 (one scale
per output channel) and quantises their activations on the fly; the rest stays fp32.
The gate scores both models with the project's evaluation (each task's primary dev metric)
and refuses the export when a task loses more than ``max_drop`` points.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camtl.data.prepare import TaskData
from camtl.errors import CamtlError
from camtl.fileio import atomic_write_text

QUANTIZE_CHOICES = ("none", "int8")
MAX_DROP = 1.0  # points of a task's primary dev score the int8 graph may lose
PARITY_SPLIT = "dev"

Parity = dict[str, dict[str, Any]]


class ParityError(CamtlError):
    """The int8 graph lost more than the allowed points on a task; ``table`` says where.

    Its own exit status (3), so that a script can tell a refused export from a usage error.
    """

    exit_code = 3

    def __init__(self, message: str, table: Parity) -> None:
        super().__init__(message)
        self.table = table


class _QuantizerChatter(logging.Filter):
    """Drops what onnxruntime's quantiser logs on the root logger below WARNING (a line per
    tensor) and its advice to pre-process the graph, which fails on torch.onnx's graph
    (incomplete symbolic shape inference), so that the advice misleads."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "pre-processing before quantization" in record.getMessage():
            return False
        return record.levelno >= logging.WARNING or "onnxruntime" not in Path(record.pathname).parts


def quantize_graph(source: Path, target: Path) -> None:
    """Write ``source``'s graph with int8 weights (dynamic quantisation) to ``target``.

    One scale per output channel: on a short demo run one scale per tensor lost more dev
    score on two tasks (docs/serving.md)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    chatter = _QuantizerChatter()
    logging.getLogger().addFilter(chatter)
    try:
        quantize_dynamic(source, target, per_channel=True, weight_type=QuantType.QInt8)
    finally:
        logging.getLogger().removeFilter(chatter)


def quantize_export(folder: Path) -> None:
    """Replace an export's ``model.onnx`` by its int8 form; ``export.json`` records it."""
    from camtl.export import EXPORT_FILE, ONNX_DATA_FILE, ONNX_FILE

    fp32 = folder / f"fp32-{ONNX_FILE}"  # its weights stay in ONNX_DATA_FILE, if there
    (folder / ONNX_FILE).rename(fp32)
    quantize_graph(fp32, folder / ONNX_FILE)  # weights inside the graph
    fp32.unlink()
    (folder / ONNX_DATA_FILE).unlink(missing_ok=True)
    info = json.loads((folder / EXPORT_FILE).read_text(encoding="utf-8"))
    info["quantize"] = "int8"
    atomic_write_text(folder / EXPORT_FILE, json.dumps(info, indent=2))


def _dev_tasks(run_dir: Path, model: Any, tokenizer: Any) -> list[TaskData]:
    """Every task of the run with its dev split tokenized; one clear error when a task's
    data cannot be loaded or has no dev examples."""
    from camtl.data.prepare import prepare_tasks

    needs = (
        f"the int8 parity gate scores every task of {run_dir} on its {PARITY_SPLIT} split, "
        "read from the task sources the run recorded (camtl_model.json)"
    )
    try:
        tasks = prepare_tasks(
            model.tasks,
            tokenizer,
            (PARITY_SPLIT,),
            labels=model.labels,
            encode=(PARITY_SPLIT,),
        )
    except (CamtlError, OSError) as exc:
        raise CamtlError(f"{needs}, and that data could not be loaded: {exc}") from None
    empty = [t.spec.name for t in tasks if not t.examples.get(PARITY_SPLIT)]
    if empty:
        raise CamtlError(f"{needs}; task(s) {', '.join(empty)} have no {PARITY_SPLIT} examples")
    return tasks


def _primary_scores(
    model: Any, tasks: list[TaskData], pad_token_id: int, batch_size: int
) -> dict[str, float]:
    """Each task's primary dev score, as ``camtl evaluate`` computes it (fp32)."""
    from camtl.evaluation.evaluate import evaluate_tasks

    results = evaluate_tasks(
        model, tasks, PARITY_SPLIT, batch_size, pad_token_id, with_baselines=False
    )
    return {n: e["scores"][e["primary_metric"]] for n, e in results["tasks"].items()}


@dataclass
class Reference:
    """The run's dev split, tokenized, and the fp32 PyTorch model's primary score on it."""

    tasks: list[TaskData]
    pad_token_id: int
    batch_size: int
    scores: dict[str, float]


def fp32_reference(run_dir: Path, batch_size: int = 64) -> Reference:
    """Load the dev split of every task of ``run_dir`` and score its fp32 PyTorch model
    (before the export, so that missing data stops it early)."""
    from camtl.modeling.encoder import load_saved_tokenizer
    from camtl.modeling.model import MultiTaskModel

    model = MultiTaskModel.from_pretrained(run_dir).float().eval()
    tokenizer = load_saved_tokenizer(run_dir)
    tasks = _dev_tasks(run_dir, model, tokenizer)
    pad = tokenizer.pad_token_id
    return Reference(tasks, pad, batch_size, _primary_scores(model, tasks, pad, batch_size))


def parity_table(reference: Reference, export_dir: Path) -> Parity:
    """Per task: the primary metric, the fp32 PyTorch model's dev score, the export's and
    their difference (export minus fp32)."""
    from camtl.export import load_model

    model = load_model(export_dir)
    scores = _primary_scores(model, reference.tasks, reference.pad_token_id, reference.batch_size)
    table = {}
    for task in reference.tasks:
        name = task.spec.name
        fp32, int8 = reference.scores[name], scores[name]
        table[name] = {
            "metric": task.spec.primary_metric,
            "fp32": fp32,
            "int8": int8,
            "delta": int8 - fp32,
        }
    return table


def drop(row: dict[str, Any]) -> float:
    """How many points a row's int8 score is worse than fp32 (negative: better)."""
    from camtl.tasks.kinds import higher_is_better

    return -row["delta"] if higher_is_better(row["metric"]) else row["delta"]


def too_large(table: Parity, max_drop: float) -> list[str]:
    """The tasks whose int8 score is more than ``max_drop`` points worse than fp32."""
    return [task for task, row in table.items() if drop(row) > max_drop]


def format_parity(table: Parity) -> str:
    """The table as text: task, metric, fp32, int8, delta (int8 minus fp32)."""
    width = max([len("task"), *map(len, table)])
    lines = [f"{'task':<{width}}  {'metric':<14} {'fp32':>9} {'int8':>9} {'delta':>8}"]
    for task, row in table.items():
        lines.append(
            f"{task:<{width}}  {row['metric']:<14} {row['fp32']:>9.4f} "
            f"{row['int8']:>9.4f} {row['delta']:>+8.4f}"
        )
    return "\n".join(lines)


def check_parity(table: Parity, max_drop: float = MAX_DROP) -> None:
    """Raise ParityError when a task's int8 dev score is more than ``max_drop`` points
    worse than the fp32 PyTorch model's."""
    failing = too_large(table, max_drop)
    if failing:
        worst = ", ".join(f"{t} {-drop(table[t]):+.2f}" for t in failing)
        raise ParityError(
            f"int8 export refused: {worst} points of {PARITY_SPLIT} score against the fp32 "
            f"model (more than {max_drop:g} lost); nothing was written "
            "(--accept-drop writes it anyway)",
            table,
        )


def card_section(table: Parity) -> str:
    """The model card's note on an int8 export: its dev parity with the fp32 model."""
    lines = [
        "",
        "## int8",
        "",
        "`model.onnx` holds int8 weights (onnxruntime dynamic quantisation). Primary "
        f"{PARITY_SPLIT} scores at export, fp32 PyTorch model against this graph:",
        "",
        "| task | metric | fp32 | int8 | delta |",
        "|---|---|---:|---:|---:|",
    ]
    for task, row in table.items():
        lines.append(
            f"| {task} | {row['metric']} | {row['fp32']:.2f} | {row['int8']:.2f} | "
            f"{row['delta']:+.2f} |"
        )
    return "\n".join(lines) + "\n"
