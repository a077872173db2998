"""`camtl predict`: run one task of a trained model over a file of inputs."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from camtl.data.examples import to_examples
from camtl.data.sources import read_records
from camtl.data.tokenize import encode_examples
from camtl.device import resolve_device
from camtl.errors import DataError
from camtl.evaluation.decode import readable_predictions, run_model
from camtl.export import is_export, load_model
from camtl.fileio import atomic_write_text
from camtl.precision import resolve_precision
from camtl.runfiles import CONFIG_FILE
from camtl.validation import count, flag, invalid, require

log = logging.getLogger("camtl")
BAD_ROW_POLICIES = ("error", "skip")


def run_precision(run_dir: Path, device: str = "cpu") -> str:
    """The precision a saved run was configured with, resolved for ``device`` (``auto``:
    bf16 where that CPU or GPU runs it fast, else fp32)."""
    from camtl.config import load_saved_config

    if is_export(run_dir):
        return "no"  # onnxruntime runs the graph as exported, in fp32
    if not (run_dir / CONFIG_FILE).is_file():
        return resolve_precision("auto", device)
    return load_saved_config(run_dir).precision(device)


STDOUT = "-"  # --output -: the predictions on standard output


def is_stdout(output: str | Path) -> bool:
    """``-`` and /dev/stdout: the predictions go to standard output (and nothing else)."""
    return str(output) in (STDOUT, "/dev/stdout")


def check_output(output: Path, input_path: Path, run_dir: Path) -> None:
    """Refuse an output that would replace the inputs, a folder, or a file of the model, and
    one that cannot be written (before the model loads and every record is predicted)."""
    what = flag("--output", str(output))
    require(not output.is_dir(), what, "is a folder, not a file")
    try:
        target = output.resolve()
    except (OSError, RuntimeError):  # a loop of symbolic links
        raise invalid(what, "a symbolic link that leads nowhere (a loop)") from None
    if not is_descriptor(output):
        folder = next(p for p in target.parents if p.exists())  # "/" exists
        require(folder.is_dir(), what, f"cannot be made: {folder} is a file, not a folder")
        require(
            os.access(target if target.exists() else folder, os.W_OK),
            what,
            f"cannot be written: no permission to write in {folder}",
        )
    require(
        not (output.exists() and target == input_path.resolve()),
        what,
        "is the --input file; the predictions would replace the inputs",
    )
    require(
        run_dir.resolve() not in target.parents,
        what,
        f"is inside the model's folder {run_dir}; write predictions elsewhere",
    )


# an open file descriptor by name (/dev/stderr, /dev/fd/3, /proc/self/fd/3): written to at
# its end, as the shell opened it (`2>> log`), whatever file it leads to
DESCRIPTOR = re.compile(r"/dev/(stdin|stdout|stderr|fd/\d+)|/proc/[^/]+/fd/\d+")


def is_descriptor(output: Path) -> bool:
    return DESCRIPTOR.fullmatch(str(output.absolute())) is not None


def write_output(output: str | Path, text: str) -> None:
    """``-`` and /dev/stdout: standard output. A pipe, a device or a descriptor is written
    to, at its end, not replaced; a symbolic link's target is replaced, not the link; a
    file (one under /dev/shm too) appears whole or not at all (written next to it, then
    renamed). A write that fails is one error naming --output."""
    if is_stdout(output):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    output = Path(output)
    try:
        if is_descriptor(output) or (output.exists() and not output.is_file()):
            with output.open("a", encoding="utf-8") as handle:
                handle.write(text)
            return
        atomic_write_text(output.resolve() if output.is_symlink() else output, text)
    except OSError as exc:  # a full disk, a folder made read-only meanwhile
        raise invalid(flag("--output", str(output)), f"could not be written ({exc})") from None


@dataclass
class PredictSummary:
    """What ``predict_file`` wrote: predictions, and records skipped as unreadable."""

    predicted: int
    skipped: int


def predict_file(
    run_dir: str | Path,
    task_name: str,
    input_path: str | Path,
    output_path: str | Path,
    batch_size: int = 64,
    on_bad_rows: str = "error",
    device: str = "cpu",
) -> PredictSummary:
    """Write one JSON line per input record, in input order; output appears only whole
    (``-``: standard output).

    ``on_bad_rows``: ``error`` stops at the first record the task cannot read, naming its
    row, and writes nothing; ``skip`` writes ``{"row": N, "error": ...}`` in its place and
    goes on. ``device``: a ``--device`` value (camtl.device).
    """
    from camtl.modeling.encoder import load_saved_tokenizer

    run_dir, input_path = Path(run_dir), Path(input_path)
    require(
        on_bad_rows in BAD_ROW_POLICIES,
        flag("--on-bad-rows", on_bad_rows),
        f"one of {', '.join(BAD_ROW_POLICIES)}",
    )
    count(flag("--batch-size", batch_size), batch_size)
    if not is_stdout(output_path):
        check_output(Path(output_path), input_path, run_dir)
    device = resolve_device(device)
    model = load_model(run_dir, device)
    require(
        task_name in model.task_index,
        "--task",
        f"unknown task {task_name!r} for {run_dir} (tasks: {', '.join(model.task_index)})",
    )
    spec = next(t for t in model.tasks if t.name == task_name)
    labels = model.labels.get(task_name) or []
    tokenizer = load_saved_tokenizer(run_dir)
    skipped: list[dict] | None = [] if on_bad_rows == "skip" else None
    # a row of empty cells is a record too: every input row gets its answer or its error
    records = read_records(input_path, skipped=skipped, keep_empty_rows=True)
    if not records and not skipped:
        raise DataError(
            f"{input_path}: no records to predict (empty, or a header or blank lines only)"
        )
    # with --on-bad-rows skip every row may be bad: then the output holds their errors only
    examples = (
        to_examples(spec, records, "input", labelled=False, skipped=skipped) if records else []
    )
    encoded = encode_examples(spec, examples, tokenizer, model.task_index[task_name])
    lines: list[tuple[int, dict]] = []
    if examples:
        outputs = run_model(
            model,
            encoded.features,
            task_name,
            batch_size,
            tokenizer.pad_token_id,
            device,
            precision=run_precision(run_dir, device),
        )
        predictions = readable_predictions(spec, labels, examples, encoded.features, outputs)
        lines = [
            (example["_row"], {"row": example["_row"], **prediction})
            for example, prediction in zip(examples, predictions)
        ]
    lines += [(bad["row"], {"row": bad["row"], "error": bad["error"]}) for bad in skipped or []]
    lines.sort(key=lambda line: line[0])
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for _, line in lines)
    write_output(output_path, text)
    if encoded.truncated:
        log.warning(
            "%d of %d inputs were longer than max_length=%d tokens and were truncated",
            encoded.truncated,
            len(examples),
            spec.max_length,
        )
    return PredictSummary(len(examples), len(skipped or []))
