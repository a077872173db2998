"""Run folders that are damaged, edited or in the wrong place, as users hand them over:
one ``error:`` line naming the file, exit status 2, never wrong answers at exit 0, and
nothing already saved lost (the source run stays byte for byte)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from camtl.testing.cli import cli_error


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def run(two_task_run: Path, tmp_path: Path) -> Path:
    """A copy of the tiny two-task run (pairs, scores), free to damage."""
    return Path(shutil.copytree(two_task_run, tmp_path / "run"))


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"premise": "a dog runs", "hypothesis": "a cat sleeps"}) + "\n")
    return path


def _edit_meta(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        meta = json.loads((run / "camtl_model.json").read_text())
        changed = edit(meta)
        (run / "camtl_model.json").write_text(json.dumps(meta if changed is None else changed))

    return damage


def _truncate(name: str, size: int) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / name
        path.write_bytes(path.read_bytes()[:size])

    return damage


# (what, how the run is damaged, the error after "error: <run>/")
DAMAGED = [
    (
        "tokenizer.json missing (transformers would make every word [UNK])",
        lambda run: (run / "tokenizer.json").unlink(),
        "tokenizer.json: missing (the run's tokenizer)",
    ),
    ("weights cut short", _truncate("model.safetensors", 100), "model.safetensors: missing or"),
    ("weights empty", _truncate("model.safetensors", 0), "model.safetensors: missing or"),
    ("weights missing", lambda run: (run / "model.safetensors").unlink(), "model.safetensors:"),
    (
        "model description not JSON",
        _truncate("camtl_model.json", 30),
        "camtl_model.json: unreadable",
    ),
    ("model description a list", _edit_meta(lambda meta: []), "camtl_model.json: not a camtl"),
    (
        "no labels",
        _edit_meta(lambda meta: meta.pop("labels") and None),
        "camtl_model.json: key 'labels' missing",
    ),
    (
        "a label named twice",
        _edit_meta(lambda meta: meta["labels"].update(pairs=["same", "same"])),
        "camtl_model.json: key 'labels.pairs' names a label twice",
    ),
    (
        "labels of another size than the weights",
        _edit_meta(lambda meta: meta["labels"].update(pairs=["a", "b", "c", "d", "e"])),
        "model.safetensors: weights do not match camtl_model.json",
    ),
    (
        "a newer format",
        _edit_meta(lambda meta: meta.update(format_version=99)),
        "camtl_model.json: format_version 99",
    ),
    (
        "no encoder config",
        lambda run: shutil.rmtree(run / "encoder_config"),
        "encoder_config: missing or unreadable encoder config",
    ),
]


@pytest.mark.parametrize(
    ("damage", "message"), [c[1:] for c in DAMAGED], ids=[c[0] for c in DAMAGED]
)
def test_predict_on_a_damaged_run_is_one_line_naming_the_file(
    run: Path,
    inputs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[Path], None],
    message: str,
) -> None:
    damage(run)
    out = tmp_path / "out.jsonl"
    argv = ["predict", str(run), "--task", "pairs", "--input", str(inputs), "--output", str(out)]
    cli_error(capsys, *argv, parts=(f"{run}/{message}",))
    assert not out.exists()


def test_evaluate_and_serve_refuse_a_run_without_its_tokenizer(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run / "tokenizer.json").unlink()
    cli_error(capsys, "evaluate", str(run), parts=(f"{run}/tokenizer.json: missing",))
    pytest.importorskip("uvicorn")
    cli_error(capsys, "serve", str(run), "--port", "1", parts=(f"{run}/tokenizer.json: missing",))


def test_a_damaged_report_is_named_by_report_and_compare(
    run: Path, two_task_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for text in ('{"results": ', "[]", "{}"):
        (run / "report.json").write_text(text)
        for command in (["compare"], ["report", "--output", str(tmp_path / "r.html")]):
            cli_error(
                capsys,
                *command,
                str(two_task_run),
                str(run),
                parts=(f"{run}/report.json: damaged evaluation report",),
            )


def test_report_never_writes_over_a_file_that_is_not_a_page(
    two_task_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(two_task_run)
    weights = two_task_run / "model.safetensors"
    cli_error(
        capsys,
        "report",
        str(two_task_run),
        "--output",
        str(weights),
        parts=(f"--output {weights}: exists and is not an HTML page",),
    )
    cli_error(
        capsys,
        "report",
        str(two_task_run),
        "--output",
        str(two_task_run),
        parts=(f"--output {two_task_run}: is a folder",),
    )
    assert snapshot(two_task_run) == before


def test_add_task_and_export_never_write_into_or_over_their_source(
    run: Path, two_task_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = run.parent / "task.yaml"
    data = two_task_run.parent / "pairs.jsonl"
    task.write_text(
        "{name: pairs_new, type: classification, text_columns: [premise, hypothesis], "
        f"label_column: label, source: {{paths: {{train: {data}}}}}}}\n"
    )
    before = snapshot(run)
    for output, what in ((run.parent, "holds the source run"), (run / "sub", "is inside")):
        cli_error(
            capsys,
            "add-task",
            str(run),
            str(task),
            "--output",
            str(output),
            "--overwrite",
            "--init",
            "random",
            "--steps",
            "1",
            parts=(f"--output {output}: {what}",),
        )
    output = run.parent / "new"
    cli_error(
        capsys,
        "add-task",
        str(run),
        str(task),
        "--output",
        str(output),
        "--init",
        "random",
        "--lr",
        "-1",
        parts=("--lr -1.0: must be a positive number",),
    )
    assert not output.exists()
    pytest.importorskip("onnxruntime")
    for output, what in ((run, "is the source run"), (run.parent, "holds the source run")):
        cli_error(
            capsys,
            "export",
            str(run),
            "--output",
            str(output),
            "--overwrite",
            parts=(f"--output {output}: {what}",),
        )
    assert snapshot(run) == before


def test_an_unfinished_run_without_a_checkpoint_says_what_gets_out(
    tmp_path: Path, two_task_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "status.json").write_text('{"status": "running"}')
    cli_error(
        capsys,
        "train",
        str(two_task_run / "config.yaml"),
        "--output-dir",
        str(stopped),
        parts=(f"{stopped}: holds a run that stopped before its first checkpoint", "--overwrite"),
    )


def test_resuming_with_other_tasks_or_another_balancer_is_refused_naming_the_key(
    two_task_run: Path,
) -> None:
    from camtl.config import load_saved_config
    from camtl.errors import ConfigError
    from camtl.training.rundir import check_same_recipe, check_same_tasks

    check_same_tasks(two_task_run, load_saved_config(two_task_run))  # the same: fine
    fewer = load_saved_config(two_task_run)
    fewer.tasks = fewer.tasks[:1]
    with pytest.raises(ConfigError, match=r"key 'tasks': \['pairs'\] here, but the run"):
        check_same_tasks(two_task_run, fewer)
    relabelled = load_saved_config(two_task_run)
    relabelled.tasks[0].labels = ["x", "y"]
    with pytest.raises(ConfigError, match="names, kinds and labels must match to resume"):
        check_same_tasks(two_task_run, relabelled)
    other = load_saved_config(two_task_run)
    other.training.balancer.name = "uncertainty"
    check_same_tasks(two_task_run, other)  # the tasks are the same
    with pytest.raises(ConfigError, match="key 'training.balancer.name': 'uncertainty' here"):
        check_same_recipe(two_task_run, other)


def test_a_run_being_resumed_cannot_be_resumed_twice(tmp_path: Path) -> None:
    """The lock lives as long as its holder's descriptor (the process, for camtl train)."""
    import os

    from camtl.errors import CamtlError
    from camtl.training.rundir import hold_run_lock

    held = hold_run_lock(tmp_path)
    with pytest.raises(CamtlError, match="another camtl process is training this run"):
        hold_run_lock(tmp_path)
    os.close(held)
    os.close(hold_run_lock(tmp_path))  # free again once the holder is gone


@pytest.mark.parametrize("lookalike", ["checkpoint", "status.json"])
def test_overwrite_refuses_a_folder_that_only_looks_like_a_run(
    tmp_path: Path, two_task_run: Path, capsys: pytest.CaptureFixture[str], lookalike: str
) -> None:
    """A folder named checkpoint/, or a status.json camtl did not write, is not a run."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    if lookalike == "checkpoint":
        (mine / "checkpoint").mkdir()
    else:
        (mine / "status.json").write_text("[1, 2]")
    cli_error(
        capsys,
        "train",
        str(two_task_run / "config.yaml"),
        "--output-dir",
        str(mine),
        "--overwrite",
        parts=(f"{mine}: not a camtl run directory; refusing to overwrite it",),
    )
    assert (mine / "notes.txt").read_text() == "precious"


def test_reports_are_not_written_into_an_unfinished_run(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its model changes when it resumes; reports written into it would then go stale."""
    from camtl.cli import main
    from camtl.errors import CamtlError
    from camtl.evaluation.runs import evaluate_run

    (run / "status.json").write_text('{"status": "running"}')
    (run / "checkpoint").mkdir()
    before = snapshot(run)
    stale = "the run is unfinished (status 'running'); its model changes when it resumes"
    elsewhere = "give another output folder (--output-dir), or evaluate it once it finishes"
    cli_error(capsys, "evaluate", str(run), parts=(str(run), stale, elsewhere))
    cli_error(capsys, "analyze", "covsim", str(run), parts=(stale, "analyse it once it finishes"))
    with pytest.raises(CamtlError, match="the run is unfinished"):
        evaluate_run(run)  # the library, too
    assert snapshot(run) == before
    peek = tmp_path / "peek"
    assert main(["evaluate", str(run), "--output-dir", str(peek)]) == 0
    assert (peek / "eval_dev.json").is_file()
    assert snapshot(run) == before
    (run / "checkpoint").rmdir()  # stopped before its first checkpoint: nothing to resume
    nothing = "it stopped with nothing to resume (camtl train --overwrite trains it again)"
    cli_error(capsys, "evaluate", str(run), parts=(nothing, elsewhere))


def test_evaluate_checks_its_output_folder_and_arguments_before_any_work(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An --output-dir that is a file is refused before evaluating (it failed after, with a
    traceback); the library takes str paths and names a bad split or batch size."""
    from camtl.errors import ConfigError
    from camtl.evaluation.runs import evaluate_run

    before = snapshot(run)
    weights = run / "model.safetensors"
    for output in (tmp_path / "notes.txt", weights):
        output.touch()
        cli_error(
            capsys,
            "evaluate",
            str(run),
            "--output-dir",
            str(output),
            parts=(f"--output-dir '{output}': is a file, not a folder",),
        )
    assert snapshot(run) == before
    with pytest.raises(ConfigError, match="--split 'bogus': one of train, dev, test"):
        evaluate_run(str(run), "bogus")
    for size in (0, -1, 1.5):
        with pytest.raises(ConfigError, match=f"--batch-size {size}: must be a positive"):
            evaluate_run(str(run), batch_size=size)  # type: ignore[arg-type]
    results = evaluate_run(str(run), output_dir=str(tmp_path / "reports"))
    assert results and (tmp_path / "reports" / "eval_dev.json").is_file()


def test_an_encoder_given_as_a_run_folder_points_at_its_encoder_config(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from camtl.cli import main

    hint = f"(a camtl run: its encoder's config is {run / 'encoder_config'})"
    cli_error(capsys, "params", "--model", str(run), parts=("--model: cannot load", hint))
    assert main(["params", "--model", str(run / "encoder_config")]) == 0


def test_a_saved_max_length_longer_than_the_encoder_takes_is_read_at_its_limit(
    run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model saved before training refused such a max_length (the tiny BERT takes 512)
    predicts a long input instead of failing in the forward pass."""
    from camtl.cli import main
    from camtl.modeling import MultiTaskModel

    meta = json.loads((run / "camtl_model.json").read_text())
    meta["tasks"][0]["max_length"] = 600
    (run / "camtl_model.json").write_text(json.dumps(meta))
    with caplog.at_level("WARNING", logger="camtl"):
        model = MultiTaskModel.from_pretrained(run)
    assert model.tasks[0].max_length == 512
    assert "max_length 600, more than the 512 positions of its encoder" in caplog.text
    source, out = tmp_path / "long.jsonl", tmp_path / "out.jsonl"
    words = " ".join(["a dog runs in the park"] * 200)  # far over 512 tokens
    source.write_text(json.dumps({"premise": words, "hypothesis": words}) + "\n")
    task = meta["tasks"][0]["name"]
    argv = ["predict", str(run), "--task", task, "--input", str(source), "--output", str(out)]
    assert main(argv) == 0
    assert "label" in json.loads(out.read_text())
    # its ONNX export records the limit and reads the same input at it
    onnx = tmp_path / "onnx"
    assert main(["export", str(run), "--format", "onnx", "--output", str(onnx)]) == 0
    assert json.loads((onnx / "export.json").read_text())["max_positions"] == 512
    argv[1], argv[-1] = str(onnx), str(tmp_path / "onnx_out.jsonl")
    assert main(argv) == 0
    assert "label" in json.loads((tmp_path / "onnx_out.jsonl").read_text())
