"""`camtl evaluate`: score a finished run directory on dev or test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from camtl.config import load_saved_config
from camtl.constants import SPLITS
from camtl.data.prepare import prepare_tasks
from camtl.device import resolve_device
from camtl.errors import CamtlError
from camtl.evaluation.evaluate import evaluate_tasks
from camtl.evaluation.report import check_report_folder, format_table, write_report
from camtl.modeling.model import MultiTaskModel
from camtl.runfiles import CONFIG_FILE
from camtl.validation import count, flag, require


def load_run(run_dir: Path, device: str = "cpu") -> tuple[Any, MultiTaskModel, Any]:
    """(resolved config, best model on ``device``, tokenizer) of a run directory."""
    from camtl.modeling.encoder import load_saved_tokenizer

    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise CamtlError(f"{run_dir}: not a camtl run directory (config.yaml missing)")
    config = load_saved_config(run_dir)
    model = MultiTaskModel.from_pretrained(run_dir, device)
    tokenizer = load_saved_tokenizer(run_dir)
    return config, model, tokenizer


def evaluate_run(
    run_dir: str | Path,
    split: str = "dev",
    batch_size: int = 64,
    device: str = "cpu",
    output_dir: str | Path | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Evaluate the saved model of ``run_dir`` and write ``eval_<split>.{json,md}`` into
    ``output_dir`` (default: ``run_dir``). ``device``: a ``--device`` value (camtl.device);
    ``name``: what the report calls the model (default: ``run_dir``)."""
    from camtl.training.rundir import EVALUATE_ELSEWHERE, check_finished_for_reports

    run_dir = Path(run_dir)
    output_dir = None if output_dir is None else Path(output_dir)
    require(split in SPLITS, flag("--split", split), f"one of {', '.join(SPLITS)}")
    count(flag("--batch-size", batch_size), batch_size)
    check_report_folder(output_dir)
    check_finished_for_reports(run_dir, EVALUATE_ELSEWHERE, output_dir)
    device = resolve_device(device)
    config, model, tokenizer = load_run(run_dir, device)
    tasks = prepare_tasks(
        model.tasks, tokenizer, ("train", split), labels=model.labels, encode=(split,)
    )
    if not any(t.examples.get(split) for t in tasks):
        raise CamtlError(f"{run_dir}: no task of this run has a {split!r} split")
    # the precision the run was configured with ("auto" resolves for this device)
    precision = config.precision(device)
    results = evaluate_tasks(
        model, tasks, split, batch_size, tokenizer.pad_token_id, device, precision=precision
    )
    info = {
        "encoder": config.model.encoder,
        "architecture": config.model.architecture,
        "parameters": model.parameter_counts(),
        "precision": precision,
        "device": device,
        "command": f"camtl evaluate {name or run_dir}",
    }
    write_report(output_dir or run_dir, results, [], info, name=f"eval_{split}")
    print(format_table(results))
    return results
