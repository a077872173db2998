"""Kill a run mid-training, resume it, and get exactly the uninterrupted run.

The trainings run in their own processes (``python -m camtl.cli train``), as a user's
would: the kill is a real hard exit (``CAMTL_KILL_AFTER_STEP`` -> ``os._exit(137)``, no
cleanup) and the resumed process knows nothing but what the checkpoint holds.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from camtl.cli import main
from camtl.distillation.config import DistillationConfig
from camtl.errors import CamtlError, ConfigError
from camtl.testing.runs import camtl_train_process, wait_for, write_config, write_task_files

MAX_STEPS, CHECKPOINT_EVERY, EVAL_EVERY, KILL_AFTER = 8, 3, 4, 5


def main_stderr(argv: list[str]) -> tuple[int, list[str]]:
    """Run the CLI in this process; its exit code and the lines it wrote to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue().splitlines()


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("elapsed_s", "train_s")} for r in records]


@pytest.fixture(scope="module", params=["no", "bf16"])
def config(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path
) -> Path:
    """Four tasks (classification, regression, tagging, span QA), dropout on (the default
    0.1), 8 steps, a checkpoint every 3 steps, a dev evaluation every 4, a log every step;
    in fp32 and in bf16 autocast (resume is exact in both)."""
    root = tmp_path_factory.mktemp("resume")
    write_task_files(root)
    return write_config(
        root,
        tiny_encoder_dir,
        max_steps=MAX_STEPS,
        checkpoint_every=CHECKPOINT_EVERY,
        eval_every=EVAL_EVERY,
        log_every=1,
        mixed_precision=request.param,
    )


@pytest.fixture(scope="module")
def runs(config: Path) -> dict[str, Path]:
    """The config run twice: killed after step 5 then resumed from its step-3 checkpoint,
    and uninterrupted (the two start side by side)."""
    run, straight = config.parent / "killed", config.parent / "straight"
    killed_proc = camtl_train_process(str(config), "--output-dir", str(run), kill_after=KILL_AFTER)
    straight_proc = camtl_train_process(str(config), "--output-dir", str(straight))
    try:
        code, err = wait_for(killed_proc)
        assert code == 137, err[-3000:]
        assert (run / "checkpoint").is_dir()
        assert not (run / "checkpoint.tmp").exists()
        assert json.loads((run / "status.json").read_text())["status"] == "running"
        state = json.loads((run / "checkpoint" / "trainer_state.json").read_text())
        assert state["step"] == CHECKPOINT_EVERY  # the last checkpoint before the kill
        assert state["precision"] in ("no", "bf16")  # as resolved; a resume must match it
        # The killed run got past its checkpoint; what it logged after must be undone.
        assert [r["step"] for r in jsonl(run / "metrics.jsonl")] == [4]
        assert [r["step"] for r in jsonl(run / "train_log.jsonl")] == [1, 2, 3, 4, 5]

        # Training again into the unfinished run without --resume: refused, nothing touched.
        before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
        code, lines = main_stderr(["train", str(config), "--output-dir", str(run)])
        assert code == 2
        assert lines == [
            f"error: {run}: holds an unfinished run; pass --resume to continue "
            "it or --overwrite to start again"
        ]
        assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before

        code, err = wait_for(camtl_train_process(str(config), "--output-dir", str(run), "--resume"))
        assert code == 0, err[-3000:]
        code, err = wait_for(straight_proc)
        assert code == 0, err[-3000:]
    finally:
        for proc in (killed_proc, straight_proc):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return {"resumed": run, "straight": straight}


def test_resume_refuses_a_changed_model_in_one_line(config: Path, tmp_path: Path) -> None:
    # A CA-MTL run started with per-layer generators, resumed with a config that does not
    # name them (the default is "shared").
    run = tmp_path / "old-run"
    (run / "checkpoint").mkdir(parents=True)
    data = yaml.safe_load(config.read_text())
    data["model"].update(architecture="camtl", camtl={"max_length": 32})
    camtl_config = config.with_name("camtl_unnamed_generators.yaml")  # beside its data
    camtl_config.write_text(yaml.safe_dump(data))
    started = {**data, "output_dir": str(run)}
    started["model"] = {**data["model"], "camtl": {"max_length": 32, "generators": "per_layer"}}
    (run / "config.yaml").write_text(yaml.safe_dump(started))
    before = sorted(p.name for p in run.iterdir())
    code, lines = main_stderr(["train", str(camtl_config), "--output-dir", str(run), "--resume"])
    assert code == 2
    assert lines == [
        f"error: key 'model.camtl.generators': 'shared' here, but the run in "
        f"{run} started with 'per_layer'; its checkpoint holds that model (set "
        "it back to resume)"
    ]
    assert sorted(p.name for p in run.iterdir()) == before  # nothing touched


@pytest.mark.parametrize(
    ("key", "started_with", "message"),
    [
        ("batch_size", 7, "key 'training.batch_size': 8 here, but the run in {run} started with 7"),
        ("max_steps", 3, "key 'training.max_steps': 8 here, but the run in {run} started with 3"),
        ("learning_rate", 0.1, "key 'training.learning_rate': 0.001 here, but"),
        ("seed", 99, "key 'seed': 3 here, but the run in {run} started with 99"),
        ("max_length", 16, "key 'tasks[0].max_length': 128 here, but the run in {run} started"),
        ("sampler", {"name": "temperature"}, "key 'training.sampler.name': 'uniform' here"),
    ],
)
def test_resume_refuses_another_recipe_naming_the_key(
    config: Path, tmp_path: Path, key: str, started_with: Any, message: str
) -> None:
    """A resume continues the run's schedule, sampler and RNG exactly; a changed batch size,
    step count, learning rate or seed would train by neither recipe."""
    run = tmp_path / "old-run"
    (run / "checkpoint").mkdir(parents=True)
    data = yaml.safe_load(config.read_text())
    assert (data["training"]["batch_size"], data["training"]["learning_rate"]) == (8, 1e-3)
    started = {**data, "output_dir": str(run), "training": dict(data["training"])}
    if key == "seed":
        started["seed"] = started_with
    elif key == "max_length":
        started["tasks"] = [{**data["tasks"][0], "max_length": started_with}, *data["tasks"][1:]]
    else:
        started["training"][key] = started_with
    (run / "config.yaml").write_text(yaml.safe_dump(started))
    before = sorted(p.name for p in run.iterdir())
    code, lines = main_stderr(["train", str(config), "--output-dir", str(run), "--resume"])
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: " + message.format(run=run)), lines
    assert lines[0].endswith("(set it back to resume, or --overwrite to train again)")
    assert sorted(p.name for p in run.iterdir()) == before  # nothing touched


def test_resume_may_change_what_does_not_change_the_training(config: Path) -> None:
    from camtl.config import load_config
    from camtl.training.rundir import check_same_recipe

    run = config.parent / "recipe-run"
    run.mkdir()
    data = yaml.safe_load(config.read_text())
    data["training"]["sampler"] = {"name": "temperature"}
    (run / "config.yaml").write_text(yaml.safe_dump({**data, "output_dir": str(run)}))
    resumed = load_config(config, ["training.sampler={name: temperature}"])
    resumed.training.num_threads = 1
    resumed.training.eval_batch_size = 3
    resumed.training.log_every = 5
    resumed.training.checkpoint_every = 2
    resumed.training.optimizer_impl = "torch_default"
    resumed.training.mixed_precision = "bf16"  # compared as resolved: check_same_precision
    resumed.tasks[0].description = "pairs of sentences"
    resumed.tasks[0].source.paths = {"train": "/moved/pairs.jsonl"}
    # the sampler's options as validated: its defaults written out are the same options
    resumed.training.sampler.options = {"temperature": 2.0}
    check_same_recipe(run, resumed)  # no error
    resumed.training.distillation = DistillationConfig(teachers="other_teachers")
    with pytest.raises(ConfigError, match=r"key 'training.distillation': \{'teachers': 'other_"):
        check_same_recipe(run, resumed)


def test_resume_refuses_a_run_trained_in_another_precision(tmp_path: Path) -> None:
    """``auto`` resolves by machine: a bf16 run resumed where bf16 is slow would go on in fp32."""
    from camtl.training.rundir import check_same_precision

    state = tmp_path / "checkpoint" / "trainer_state.json"
    state.parent.mkdir()
    state.write_text(json.dumps({"step": 3, "precision": "bf16"}))
    check_same_precision(tmp_path, "bf16")
    with pytest.raises(ConfigError) as info:
        check_same_precision(tmp_path, "no")
    assert str(info.value) == (
        f"key 'training.mixed_precision': resolves to 'no' here, but the run in {tmp_path} "
        "trained in 'bf16' (write mixed_precision: bf16 to resume it as it was, or --overwrite "
        "to train again)"
    )
    state.write_text(json.dumps({"step": 3}))  # a checkpoint from before the record: not known
    check_same_precision(tmp_path, "no")


def test_resume_with_nothing_to_resume_fails_in_one_line(config: Path, tmp_path: Path) -> None:
    run = tmp_path / "never-trained"
    code, lines = main_stderr(["train", str(config), "--output-dir", str(run), "--resume"])
    assert code == 2
    assert lines == [f"error: {run}: nothing to resume (no checkpoint/ folder)"]
    assert not run.exists()


def test_what_a_kill_leaves_never_blocks_the_next_checkpoint_or_resume(tmp_path: Path) -> None:
    """A checkpoint.old a kill left mid-delete is cleared before the next swap; a torn last
    line of train_log.jsonl is dropped when resuming; a finished run whose checkpoint a kill
    left behind is not resumed."""
    from camtl.training.checkpoint import Progress, save, truncate_logs
    from camtl.training.rundir import check_run_dir, write_status

    class OneProcess:  # what save needs of accelerate
        is_main_process = True

        def wait_for_everyone(self) -> None:
            pass

        def save_state(self, folder: str, safe_serialization: bool = True) -> None:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "model.safetensors").write_text("weights")

    run = tmp_path / "run"
    save(OneProcess(), run, Progress(step=5))
    (run / "checkpoint.old").mkdir()
    (run / "checkpoint.old" / "half-deleted").write_text("x")
    save(OneProcess(), run, Progress(step=10))
    assert json.loads((run / "checkpoint" / "trainer_state.json").read_text())["step"] == 10
    assert not (run / "checkpoint.old").exists()
    log = run / "train_log.jsonl"
    log.write_text(json.dumps({"step": 5}) + "\n" + json.dumps({"step": 12}) + "\n" + '{"st')
    truncate_logs(run, Progress(step=10))
    assert jsonl(log) == [{"step": 5}]
    write_status(run, "completed", step=20)
    with pytest.raises(CamtlError, match="holds a finished run; nothing to resume"):
        check_run_dir(run, resume=True, overwrite=False)


def test_the_selected_step_skips_scores_that_are_not_finite() -> None:
    """Selection never saves a NaN or infinite score, so the reports' best step is the best
    finite one; with none, one clear error instead of 'no saved model here'."""
    from camtl.training.final_report import selected_step

    history = [{"step": 200, "mean": float("nan")}, {"step": 400, "mean": 50.0}]
    assert selected_step([*history, {"step": 600, "mean": 60.0}], "mean") == 600
    assert selected_step([*history, {"step": 600, "mean": 50.0}], "mean") == 400  # first
    with pytest.raises(CamtlError, match="every dev evaluation scored mean NaN or infinite"):
        selected_step(
            [{"step": 200, "mean": float("nan")}, {"step": 400, "mean": -math.inf}], "mean"
        )


@pytest.mark.slow
def test_resumed_run_finishes_cleanly(runs: dict[str, Path]) -> None:
    run = runs["resumed"]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed" and status["step"] == MAX_STEPS
    for name in ("checkpoint", "checkpoint.tmp", "checkpoint.old"):
        assert not (run / name).exists(), name
    for name in ("report.json", "report_test.json", "model.safetensors"):
        assert (run / name).is_file(), name


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run_exactly(runs: dict[str, Path]) -> None:
    """Bit for bit: same losses and LR at every step, same dev scores, same saved weights."""
    resumed, straight = runs["resumed"], runs["straight"]
    assert yaml.safe_load((resumed / "config.yaml").read_text())["model"]["dropout"] == 0.1
    # Every step's task losses, learning rate and examples drawn (4..8 ran after resume) ...
    log_resumed = without_timing(jsonl(resumed / "train_log.jsonl"))
    assert [r["step"] for r in log_resumed] == list(range(1, MAX_STEPS + 1))
    assert log_resumed == without_timing(jsonl(straight / "train_log.jsonl"))
    # ... every dev evaluation (steps 4 and 8, both after the checkpoint) ...
    history = without_timing(jsonl(resumed / "metrics.jsonl"))
    assert [r["step"] for r in history] == [4, 8]
    assert history == without_timing(jsonl(straight / "metrics.jsonl"))
    # ... the same selected model, trained past the resume point ...
    best_resumed = json.loads((resumed / "status.json").read_text())["best_step"]
    best_straight = json.loads((straight / "status.json").read_text())["best_step"]
    assert best_resumed == best_straight > CHECKPOINT_EVERY
    # ... with identical weights: torch.equal, exact on CPU, no tolerance needed ...
    weights_resumed = load_file(str(resumed / "model.safetensors"))
    weights_straight = load_file(str(straight / "model.safetensors"))
    assert weights_resumed.keys() == weights_straight.keys()
    differ = [
        k for k in weights_resumed if not torch.equal(weights_resumed[k], weights_straight[k])
    ]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
    # ... and the same final reports.
    for name in ("report.json", "report_test.json"):
        results: list[Any] = [
            json.loads((r / name).read_text())["results"] for r in (resumed, straight)
        ]
        assert results[0] == results[1], name
