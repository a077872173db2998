"""End to end on a tiny random encoder: user task files -> train -> report -> evaluate,
predict and reload. Exercises the same code paths as the real demo, in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from camtl.cli import main
from camtl.modeling import MultiTaskModel
from camtl.precision import resolve_precision
from camtl.testing.runs import write_config, write_task_files


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    write_task_files(root)
    assert main(["train", str(write_config(root, tiny_encoder_dir))]) == 0
    return root / "run"


def test_run_directory_holds_everything(trained_run: Path) -> None:
    for name in (
        "config.yaml",
        "camtl_model.json",
        "model.safetensors",
        "report.json",
        "report.md",
        "report_test.json",
        "metrics.jsonl",
        "train_log.jsonl",
        "status.json",
        "tokenizer.json",
        "dev_curves.png",
    ):
        assert (trained_run / name).exists(), name
    assert not (trained_run / "checkpoint").exists()
    status = json.loads((trained_run / "status.json").read_text())
    assert status["status"] == "completed"
    report = json.loads((trained_run / "report.json").read_text())
    assert set(report["results"]["tasks"]) == {"pairs", "scores", "ner", "qa"}
    assert {"mean", "worst", "worst_task", "spread"} <= set(report["results"]["aggregate"])
    assert len(report["history"]) == 2  # evaluations at steps 3 and 6
    # the precision "auto" chose on this machine is recorded, and named in the Markdown
    assert report["run_info"]["precision"] == resolve_precision("auto")
    assert f"**precision**: {resolve_precision('auto')}" in (trained_run / "report.md").read_text()
    log = [json.loads(line) for line in (trained_run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6]


def test_config_keeps_what_was_written_and_the_model_the_inferred_labels(
    trained_run: Path, tmp_path: Path
) -> None:
    """No task of the config lists its labels: the run's config.yaml lists none either,
    while the model's label maps (camtl_model.json) hold those inferred from train, and a
    reloaded model predicts with them."""
    from camtl.config import load_config

    config = load_config(trained_run / "config.yaml")
    assert all(task.labels is None for task in config.tasks)
    assert Path(config.task("pairs").source.paths["train"]).is_absolute()
    saved = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert all(task["labels"] is None for task in saved["tasks"])
    meta = json.loads((trained_run / "camtl_model.json").read_text())
    assert all(task["labels"] is None for task in meta["tasks"])
    assert meta["labels"]["pairs"] == ["different", "same"]
    assert meta["labels"]["ner"] and meta["labels"]["ner"] == sorted(meta["labels"]["ner"])
    assert MultiTaskModel.from_pretrained(trained_run).labels == meta["labels"]
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_text(json.dumps({"premise": "good movie", "hypothesis": "bad food"}) + "\n")
    argv = ["predict", str(trained_run), "--task", "pairs", "--input", str(inputs)]
    assert main([*argv, "--output", str(out)]) == 0
    assert json.loads(out.read_text())["label"] in ("different", "same")


def test_evaluate_and_predict_commands(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(trained_run), "--split", "test"]) == 0
    assert "qa" in capsys.readouterr().out
    assert (trained_run / "eval_test.json").exists()
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(
        json.dumps({"premise": "good movie", "hypothesis": "bad food"})
        + "\n"
        + json.dumps({"premise": "the dog", "hypothesis": "the cat"})
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    assert (
        main(
            [
                "predict",
                str(trained_run),
                "--task",
                "pairs",
                "--input",
                str(inputs),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["label"] in ("same", "different")
    assert abs(sum(rows[0]["probabilities"].values()) - 1) < 1e-4
    ner_in = tmp_path / "ner.jsonl"
    ner_in.write_text(json.dumps({"tokens": ["john", "likes", "paris"]}) + "\n")
    assert (
        main(
            [
                "predict",
                str(trained_run),
                "--task",
                "ner",
                "--input",
                str(ner_in),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert len(json.loads(out.read_text())["tags"]) == 3
    qa_in = tmp_path / "qa.jsonl"
    qa_in.write_text(json.dumps({"question": "who", "context": "the dog saw mary"}) + "\n")
    assert (
        main(
            [
                "predict",
                str(trained_run),
                "--task",
                "qa",
                "--input",
                str(qa_in),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert "answer" in json.loads(out.read_text())


def test_from_pretrained_in_python(trained_run: Path) -> None:
    model = MultiTaskModel.from_pretrained(trained_run)
    assert sorted(model.task_index) == ["ner", "pairs", "qa", "scores"]


def test_finished_run_is_not_overwritten_silently(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (trained_run / "model.safetensors").read_bytes()
    assert main(["train", str(trained_run.parent / "config.yaml")]) == 2
    assert "holds a finished run" in capsys.readouterr().err
    assert (trained_run / "model.safetensors").read_bytes() == before


def test_bad_rows_skipped_are_listed_in_the_run(
    tmp_path: Path, tiny_encoder_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """source.on_bad_rows: skip trains on the good rows, says how many were left out and
    writes each skipped file/row into the run directory."""
    write_task_files(tmp_path)
    with (tmp_path / "scores.csv").open("a") as f:
        f.write(",3\n")  # an empty text: a bad row
        f.write("good film,\n")  # an empty score: another
    path = write_config(tmp_path, tiny_encoder_dir, max_steps=2, eval_every=2)
    config = yaml.safe_load(path.read_text())
    config["tasks"][1]["source"]["on_bad_rows"] = "skip"
    path.write_text(yaml.safe_dump(config))
    with caplog.at_level("WARNING", logger="camtl"):
        assert main(["train", str(path)]) == 0
    assert "task scores: 2 bad rows skipped" in caplog.text
    rows = [
        json.loads(line)
        for line in (tmp_path / "run" / "skipped_rows.jsonl").read_text().splitlines()
    ]
    assert [(r["task"], r["row"]) for r in rows] == [("scores", 62), ("scores", 63)]
    assert rows[0]["file"].endswith("scores.csv") and "empty text" in rows[0]["error"]


def test_final_dev_report_equals_a_fresh_evaluation(trained_run: Path) -> None:
    """The final dev report reuses the results of the evaluation that saved the best
    checkpoint; running the saved model over dev again gives the same scores."""
    assert main(["evaluate", str(trained_run), "--split", "dev"]) == 0
    report = json.loads((trained_run / "report.json").read_text())["results"]
    fresh = json.loads((trained_run / "eval_dev.json").read_text())["results"]
    assert {n: e["scores"] for n, e in report["tasks"].items()} == {
        n: e["scores"] for n, e in fresh["tasks"].items()
    }
    assert report["baseline_aggregate"] == fresh["baseline_aggregate"]


def test_a_regression_task_with_mse_first_selects_the_lowest_mse_checkpoint(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    """A lower-is-better primary metric: selection, the reported mean and its margin over
    the baseline all take the lowest mse as the best."""
    write_task_files(tmp_path)
    config = yaml.safe_load(write_config(tmp_path, tiny_encoder_dir).read_text())
    scores = next(t for t in config["tasks"] if t["name"] == "scores")
    config["tasks"] = [{**scores, "metrics": ["mse", "pearson"]}]
    config["training"].update(max_steps=40, eval_every=5, log_every=5)
    path = tmp_path / "mse.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    run = tmp_path / "run"
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    dev_mse = {r["step"]: r["scores"]["scores"]["mse"] for r in history}
    best = json.loads((run / "status.json").read_text())["best_step"]
    assert len(dev_mse) >= 4 and dev_mse[best] == min(dev_mse.values())
    report = json.loads((run / "report.json").read_text())["results"]
    entry = report["tasks"]["scores"]
    assert report["aggregate"]["mean"] == pytest.approx(-entry["scores"]["mse"])
    mean_margin = report["aggregate"]["mean"] - report["baseline_aggregate"]["mean"]
    task_margin = entry["baseline"]["mse"] - entry["scores"]["mse"]
    assert mean_margin == pytest.approx(task_margin)  # the same sign for the same numbers


def test_early_stopping_rule_counts_evaluations_without_gain() -> None:
    from camtl.config import EarlyStoppingConfig

    rule = EarlyStoppingConfig(patience=2, min_delta=0.5)
    assert rule.evaluations_without_gain([]) == 0
    assert rule.evaluations_without_gain([50.0, 60.0]) == 0
    assert rule.evaluations_without_gain([50.0, 60.0, 60.4, 59.0]) == 2  # +0.4 is no gain
    assert rule.should_stop([50.0, 60.0, 60.4, 59.0])
    assert not rule.should_stop([50.0, 60.0, 60.4, 61.0])


def test_early_stopping_ends_the_run_and_says_so(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    """A patience of 1 with an unreachable min_delta stops at the second evaluation; the
    status and report say why and at which step, and the best checkpoint is reported."""
    write_task_files(tmp_path)
    path = write_config(
        tmp_path,
        tiny_encoder_dir,
        max_steps=30,
        eval_every=2,
        early_stopping={"patience": 1, "min_delta": 1000.0},
    )
    assert main(["train", str(path)]) == 0
    run = tmp_path / "run"
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed" and status["stopped_by"] == "early_stopping"
    assert status["step"] == 4 and status["best_step"] in (2, 4)
    report = json.loads((run / "report.json").read_text())
    assert report["run_info"]["stopped_by"] == "early_stopping"
    assert report["run_info"]["steps_run"] == 4
    assert [r["step"] for r in report["history"]] == [2, 4]
    assert "**stopped_by**: early_stopping" in (run / "report.md").read_text()


def test_baseline_single_task_trains_one_run_per_task_and_compares(
    tmp_path: Path, tiny_encoder_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each task alone with the config's encoder and settings, the bare encoder fine-tuned;
    a second call keeps the finished runs; compare folds them into one single_task row."""
    write_task_files(tmp_path)
    path = write_config(tmp_path, tiny_encoder_dir, max_steps=4, eval_every=2)
    config = yaml.safe_load(path.read_text())
    config["tasks"] = config["tasks"][:2]  # pairs, scores
    config["model"]["architecture"] = "camtl"
    config["model"]["camtl"] = {"max_length": 32}
    path.write_text(yaml.safe_dump(config))
    argv = ["baseline", "single-task", str(path), "--max-steps", "3"]
    assert main(argv) == 0
    root = tmp_path / "run_single_task"
    for name in ("pairs", "scores"):
        status = json.loads((root / name / "status.json").read_text())
        assert status["status"] == "completed" and status["step"] == 3
        saved = yaml.safe_load((root / name / "config.yaml").read_text())
        assert [t["name"] for t in saved["tasks"]] == [name]
        assert saved["model"]["architecture"] == "plain"
        assert saved["model"]["encoder"] == str(tiny_encoder_dir)
    out = capsys.readouterr().out
    assert "single_task" in out
    mtime = (root / "pairs" / "model.safetensors").stat().st_mtime
    assert main(argv) == 0  # finished runs are kept, not trained again
    assert (root / "pairs" / "model.safetensors").stat().st_mtime == mtime
    assert main([*argv[:3], "--tasks", "nope"]) == 2
    capsys.readouterr()
    # kept only if trained as asked: another --max-steps is refused, nothing trained again
    assert main([*argv[:3], "--max-steps", "5", "--set", "training.eval_batch_size=7"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {root / 'pairs'}: key 'training.max_steps': 5 here, but"), err
    assert "started with 3 (a finished run is kept only if trained as asked" in err, err
    assert (root / "pairs" / "model.safetensors").stat().st_mtime == mtime
    assert main([*argv, "--set", "model.hidden_dropout=0.3"]) == 2  # another model too
    err = capsys.readouterr().err.strip()
    assert "key 'model.hidden_dropout': 0.3 here, but the run" in err, err
    # what does not change the training (RESUME_MAY_CHANGE) keeps them
    assert main([*argv, "--set", "training.eval_batch_size=7"]) == 0
    assert (root / "pairs" / "model.safetensors").stat().st_mtime == mtime


def test_replacing_single_task_models_with_one_distilled_model(
    tmp_path: Path, tiny_encoder_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/training.md's path: `camtl baseline single-task`, its folder as the teachers of
    one CA-MTL model, then `camtl compare` with each task beside its teacher."""
    write_task_files(tmp_path)
    path = write_config(tmp_path, tiny_encoder_dir, max_steps=3, eval_every=3)
    config = yaml.safe_load(path.read_text())
    config["model"]["architecture"] = "camtl"
    config["model"]["camtl"] = {"max_length": 32}
    path.write_text(yaml.safe_dump(config))
    assert main(["baseline", "single-task", str(path), "--max-steps", "2"]) == 0
    teachers = tmp_path / "run_single_task"
    config["training"]["distillation"] = {"teachers": str(teachers)}
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    run = tmp_path / "run"
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["training"]["distillation"]["teachers"] == str(teachers)
    capsys.readouterr()
    task_runs = sorted(str(p) for p in teachers.iterdir() if p.is_dir())
    assert main(["compare", str(run), *task_runs]) == 0
    table = capsys.readouterr().out
    header, _, teacher_row, student_row = table.splitlines()[:4]
    assert teacher_row.startswith("single-task (4 models)"), table
    assert student_row.startswith("run "), table
    for name in ("pairs", "scores", "ner", "qa", "tasks >= single-task"):
        assert name in header, table
