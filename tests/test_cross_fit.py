"""Cross-fitted teachers: folds of train by content, `camtl baseline single-task --folds`,
and distillation that teaches each training window from the run that held it out."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from camtl.cli import main
from camtl.config import load_config
from camtl.data.examples import load_task_examples
from camtl.data.folds import example_fold
from camtl.distillation import DistillationConfig
from camtl.distillation import teachers as teachers_module
from camtl.errors import ConfigError, DataError
from camtl.tasks.kinds import get_kind
from camtl.tasks.spec import CrossFit

WORDS = "a the man woman dog cat runs sleeps plays music park city sings reads".split()
TAGS = ["O", "B-PER", "I-PER", "B-LOC"]


def write_data(folder: Path, rows: int = 40) -> dict[str, Path]:
    """A pair-classification file and a token-tagging file of distinct, seeded rows."""
    rng = random.Random(7)
    pairs, tagged = [], []
    for i in range(rows):
        premise = " ".join(rng.choices(WORDS, k=5)) + f" {i}"
        pairs.append({"premise": premise, "hypothesis": " ".join(rng.choices(WORDS, k=4)),
                      "label": rng.choice(["yes", "no"])})  # fmt: skip
        tokens = [*rng.choices(WORDS, k=rng.randint(3, 7)), str(i)]
        tagged.append({"tokens": tokens, "tags": [rng.choice(TAGS) for _ in tokens]})
    paths = {"pairs": folder / "pairs.jsonl", "tags": folder / "tags.jsonl"}
    for name, data in (("pairs", pairs), ("tags", tagged)):
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    return paths


def tasks_of(paths: dict[str, Path]) -> list[dict[str, Any]]:
    def source(path: Path) -> dict[str, Any]:
        return {"paths": {"train": str(path), "dev": str(path), "test": str(path)}}

    return [
        {"name": "pairs", "type": "classification", "text_columns": ["premise", "hypothesis"],
         "label_column": "label", "max_length": 32, "source": source(paths["pairs"])},
        {"name": "tags", "type": "token_tagging", "text_columns": ["tokens"],
         "label_column": "tags", "labels": TAGS, "max_length": 32, "source": source(paths["tags"])},
    ]  # fmt: skip


def run_config(root: Path, encoder: Path, name: str, **training: Any) -> Path:
    config = {
        "output_dir": str(root / name),
        "seed": 3,
        "model": {"encoder": str(encoder), "architecture": "camtl", "camtl": {"max_length": 32}},
        "tasks": tasks_of(write_data(root)),
        "training": {"max_steps": 2, "batch_size": 8, "eval_every": 2, "log_every": 1,
                     "learning_rate": 1e-3, **training},
    }  # fmt: skip
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_an_examples_fold_is_its_text_not_its_label_or_where_it_came_from() -> None:
    pairs = get_kind("classification")
    examples = [{"text_a": f"sentence {i}", "text_b": None, "label": i % 2} for i in range(300)]
    folds = [example_fold(pairs, e, 3) for e in examples]
    assert set(folds) == {0, 1, 2}
    assert all(60 <= n <= 140 for n in Counter(folds).values())  # near a third each
    moved = [{**e, "_file": "elsewhere.csv", "_row": 99, "label": 1 - e["label"]} for e in examples]
    assert [example_fold(pairs, e, 3) for e in moved] == folds  # nor file, row or label
    # span QA: every question on one passage in one fold, whatever its id
    qa = get_kind("span_qa")
    questions = [
        {"id": f"train-{i}", "question": f"question {i}", "context": "one passage", "answers": []}
        for i in range(20)
    ]
    assert len({example_fold(qa, q, 3) for q in questions}) == 1


def test_a_cross_fitted_run_trains_without_its_held_out_fold(tmp_path: Path) -> None:
    spec = load_config(run_config(tmp_path, tmp_path, "r")).tasks[0]
    full, _ = load_task_examples(spec, ("train", "dev"))
    spec.cross_fit = CrossFit(folds=2, held_out=1)
    fitted, _ = load_task_examples(spec, ("train", "dev"))
    kind = spec.kind
    assert {example_fold(kind, e, 2) for e in fitted["train"]} == {0}
    assert len(fitted["train"]) == sum(example_fold(kind, e, 2) == 0 for e in full["train"])
    assert 0 < len(fitted["train"]) < len(full["train"])
    assert fitted["dev"] == full["dev"]  # dev and test are every run's
    # a fold that holds every example leaves nothing to train on: one clear error
    one_row = tmp_path / "one.jsonl"
    one_row.write_text((tmp_path / "pairs.jsonl").read_text().splitlines()[0] + "\n")
    spec.source.paths = {"train": str(one_row), "dev": str(one_row)}
    spec.cross_fit = CrossFit(folds=2, held_out=example_fold(kind, full["train"][0], 2))
    with pytest.raises(DataError, match=r"task 'pairs': key 'cross_fit': every one of the 1 "):
        load_task_examples(spec, ("train",))


def test_cross_fit_keys_are_checked(tmp_path: Path) -> None:
    for cross_fit, key, message in (
        ({"folds": 1, "held_out": 0}, "cross_fit.folds", "at least 2"),
        ({"folds": 3}, "cross_fit.held_out", "missing required key"),
        ({"folds": 3, "held_out": 3}, "cross_fit.held_out", "must be 0 to 2"),
    ):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({"tasks": [{"name": "vader", "cross_fit": cross_fit}]}))
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert key in str(info.value) and message in str(info.value), str(info.value)
    assert main(["baseline", "single-task", str(run_config(tmp_path, tmp_path, "r")),
                 "--folds", "1"]) == 2  # fmt: skip


@pytest.fixture(scope="module")
def fold_teachers(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    """`camtl baseline single-task --folds 2` on both tasks: four tiny runs."""
    root = tmp_path_factory.mktemp("cross_fit")
    config = run_config(root, tiny_encoder_dir, "mtl")
    assert main(["baseline", "single-task", str(config), "--folds", "2", "--max-steps", "2"]) == 0
    return root / "mtl_cross_fit"


def test_baseline_folds_writes_one_run_per_held_out_fold(
    fold_teachers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for task in ("pairs", "tags"):
        for held_out in (0, 1):
            run = fold_teachers / task / f"fold_{held_out}"
            meta = json.loads((run / "camtl_model.json").read_text())
            assert [t["name"] for t in meta["tasks"]] == [task]
            assert meta["tasks"][0]["cross_fit"] == {"folds": 2, "held_out": held_out}
            assert json.loads((run / "status.json").read_text())["status"] == "completed"
            # what it trained on, by digest: none of its held-out fold
            trained_on = json.loads((run / "cross_fit.json").read_text())[task]["trained_on"]
            assert trained_on and {int(d, 16) % 2 for d in trained_on} == {1 - held_out}
    # the same folder asked for another number of folds: refused before anything trains
    config = fold_teachers.parent / "mtl.yaml"
    capsys.readouterr()
    again = ["baseline", "single-task", str(config), "--folds", "3", "--max-steps", "2"]
    assert main(again) == 2
    err = capsys.readouterr().err.strip()
    assert "pairs/fold_0: key 'tasks[0].cross_fit': fold 0 of 3 held out here, but" in err
    assert "started with fold 0 of 2 held out" in err and "another --output-root" in err
    assert not (fold_teachers / "pairs" / "fold_2").exists()
    # and no fold runs inside a plain run's folder
    plain = fold_teachers.parent / "plain_root"
    (plain / "pairs").mkdir(parents=True)
    shutil.copy(fold_teachers / "pairs" / "fold_0" / "config.yaml", plain / "pairs")
    inside = ["baseline", "single-task", str(config), "--folds", "2", "--tasks", "pairs"]
    assert main([*inside, "--output-root", str(plain)]) == 2
    assert f"--folds: {plain / 'pairs'} holds a run" in capsys.readouterr().err
    assert not (plain / "pairs" / "fold_0").exists()


def test_baseline_checks_an_interrupted_runs_recipe_before_any_run_trains(
    fold_teachers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(shutil.copytree(fold_teachers, tmp_path / "mtl_cross_fit"))
    shutil.copy(fold_teachers.parent / "mtl.yaml", tmp_path / "mtl.yaml")  # absolute data paths
    interrupted = root / "tags" / "fold_1"
    (interrupted / "checkpoint").mkdir()
    (interrupted / "status.json").write_text('{"status": "running"}')
    saved = yaml.safe_load((interrupted / "config.yaml").read_text())
    saved["training"]["max_steps"] = 5  # it started by another recipe than the others
    (interrupted / "config.yaml").write_text(yaml.safe_dump(saved))
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    capsys.readouterr()
    again = ["baseline", "single-task", str(tmp_path / "mtl.yaml"), "--folds", "2"]
    assert main([*again, "--max-steps", "2", "--output-root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {interrupted}: key 'training.max_steps': 2 here, but the run")
    assert err.endswith(
        "started with 5 (set it back to resume, or --overwrite to train again) "
        "(or choose another --output-root)"
    )
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before  # nothing trained


def test_a_resumed_run_keeps_its_fold(
    fold_teachers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "interrupted"
    shutil.copytree(fold_teachers / "pairs" / "fold_1", run)
    (run / "checkpoint").mkdir()  # an interrupted run, as far as --resume looks first
    (run / "status.json").write_text(json.dumps({"status": "running"}))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["tasks"][0]["cross_fit"] = None
    path = tmp_path / "no_fold.yaml"
    path.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["train", str(path), "--output-dir", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "key 'tasks[0].cross_fit': every training example here, but the run in" in err, err
    assert "started with fold 1 of 2 held out" in err, err


def test_every_kind_names_its_text_and_a_kind_that_does_not_is_not_cross_fitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from camtl.tasks.kinds import kind_names

    assert all(get_kind(name).fold_fields for name in kind_names())
    monkeypatch.setattr(type(get_kind("regression")), "fold_fields", None)
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump({"tasks": [{"name": "vader", "cross_fit": {"folds": 2, "held_out": 0}}]})
    )
    with pytest.raises(ConfigError, match="cross_fit': a regression task cannot be cross-fitted"):
        load_config(path)


def test_each_window_is_taught_by_the_run_that_held_its_example_out(
    fold_teachers: Path,
    tiny_encoder_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from transformers import AutoTokenizer

    from camtl.data.prepare import prepare_tasks

    config = load_config(run_config(tmp_path, tiny_encoder_dir, "student"))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_encoder_dir))
    tasks = prepare_tasks(config.tasks, tokenizer, ("train",))
    distillation = DistillationConfig(teachers=str(fold_teachers))
    teachers = teachers_module.teacher_runs(distillation, ["pairs", "tags"], "t")
    assert [(t.task, t.run_dir.name) for t in teachers] == [
        ("pairs", "fold_0"), ("pairs", "fold_1"), ("tags", "fold_0"), ("tags", "fold_1")
    ]  # fmt: skip
    inference = teachers_module.Inference(tokenizer, "no", 4, torch.device("cpu"))
    real = {}
    for task in tasks:
        mine = [t for t in teachers if t.task == task.spec.name]
        real[task.spec.name] = teachers_module.task_teacher_outputs(mine, task, inference, "t")
    # which run answered each window: a stand-in teacher that answers with its held-out fold
    monkeypatch.setattr(teachers_module, "load_teacher", lambda teacher: teacher)
    monkeypatch.setattr(
        teachers_module,
        "compute_outputs",
        lambda teacher, index, task, windows, *rest: [
            torch.tensor(float(teacher.cross_fit.held_out)) for _ in windows
        ],
    )
    monkeypatch.setenv("CAMTL_FEATURE_CACHE", "0")
    for task in tasks:
        mine = [t for t in teachers if t.task == task.spec.name]
        answered = teachers_module.task_teacher_outputs(mine, task, inference, "t")
        examples = task.examples["train"]
        kind = task.spec.kind
        folds = [
            example_fold(kind, examples[w["example_index"]], 2) for w in task.features["train"]
        ]
        assert [int(a) for a in answered] == folds
        assert set(folds) == {0, 1}
        # and the real outputs line up with the windows: per token for tagging
        assert len(real[task.spec.name]) == len(task.features["train"])
        for value, window in zip(real[task.spec.name], task.features["train"], strict=True):
            if task.spec.name == "tags":
                assert value.shape[0] == len(window["input_ids"])
    # score DRO's targets: the mean of the runs' dev scores
    scores = teachers_module.teacher_dev_scores(distillation, tasks, "t")
    folds_of_pairs = [
        json.loads((fold_teachers / "pairs" / f"fold_{i}" / "report.json").read_text())
        for i in (0, 1)
    ]
    dev = [r["results"]["tasks"]["pairs"]["scores"]["accuracy"] for r in folds_of_pairs]
    assert scores["pairs"] == pytest.approx(sum(dev) / 2)


def test_a_student_trains_from_cross_fitted_teachers_and_a_missing_fold_is_refused(
    fold_teachers: Path,
    tiny_encoder_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # (a task named twice among the distilled ones is distilled once)
    distillation = {"teachers": str(fold_teachers), "tasks": ["tags", "pairs", "tags"]}
    path = run_config(tmp_path, tiny_encoder_dir, "student", distillation=distillation)
    assert main(["train", str(path)]) == 0
    assert json.loads((tmp_path / "student" / "status.json").read_text())["status"] == "completed"
    shutil.rmtree(tmp_path / "student")
    capsys.readouterr()

    def refused(break_it: Callable[[Path], None], message: str) -> None:
        broken = tmp_path / "broken"
        shutil.rmtree(broken, ignore_errors=True)
        shutil.copytree(fold_teachers, broken)
        break_it(broken / "tags")
        config = yaml.safe_load(path.read_text())
        config["training"]["distillation"]["teachers"] = str(broken)
        path.write_text(yaml.safe_dump(config))
        assert main(["train", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert "task 'tags'" in err[0] and message in err[0], err[0]
        assert not (tmp_path / "student").exists()

    refused(lambda tags: shutil.rmtree(tags / "fold_1"), "no run holds out fold(s) [1]")
    refused(
        lambda tags: (tags / "fold_0" / "camtl_model.json").write_text("{not json"),
        "camtl_model.json is unreadable (JSONDecodeError",
    )

    def without_cross_fit(tags: Path) -> None:
        model = tags / "fold_0" / "camtl_model.json"
        meta = json.loads(model.read_text())
        meta["tasks"][0]["cross_fit"] = None
        model.write_text(json.dumps(meta))

    refused(without_cross_fit, "holds no fold out of the task")
    refused(
        lambda tags: shutil.copy(tags / "fold_0" / "camtl_model.json", tags),
        "holds a run and fold_<i> runs",
    )

    def folded_another_way(tags: Path) -> None:  # a camtl that made digests otherwise
        record = tags / "fold_0" / "cross_fit.json"
        data = json.loads(record.read_text())
        data["tags"]["scheme"] = 0
        record.write_text(json.dumps(data))

    refused(folded_another_way, "split train by (scheme, fields, folds, held out) (0, ['tokens']")
    refused(lambda tags: (tags / "fold_1" / "cross_fit.json").unlink(), "missing or unreadable")

    # a run that trained on other data than the student's: named in a warning, not refused
    other = tmp_path / "other_data"
    shutil.copytree(fold_teachers, other)
    record = other / "tags" / "fold_1" / "cross_fit.json"
    data = json.loads(record.read_text())
    data["tags"]["trained_on"] = []
    record.write_text(json.dumps(data))
    config = yaml.safe_load(path.read_text())
    config["training"]["distillation"]["teachers"] = str(other)
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    assert "fold_1 trained on 0 of the" in caplog.text


def test_a_task_added_to_a_fold_run_keeps_the_record_of_what_it_trained_on(
    fold_teachers: Path, tmp_path: Path
) -> None:
    run = fold_teachers / "pairs" / "fold_0"
    task = yaml.safe_load((run / "config.yaml").read_text())["tasks"][0]
    task.pop("cross_fit")
    task_file = tmp_path / "more.yaml"
    task_file.write_text(yaml.safe_dump({**task, "name": "more_pairs"}))
    for joint, out in ((False, tmp_path / "added"), (True, tmp_path / "joint")):
        extra = ["--joint"] if joint else []
        command = ["add-task", str(run), str(task_file), "--steps", "1", "--init", "random"]
        command += ["--output", str(out)]
        assert main([*command, *extra]) == 0
        record = json.loads((out / "cross_fit.json").read_text())
        assert list(record) == ["pairs"], record  # the added task has no fold
        assert record == json.loads((run / "cross_fit.json").read_text())


def test_a_held_out_fold_without_examples_is_refused() -> None:
    """More folds than examples (``--folds 100000``): a run whose fold is empty would train
    on everything and teach nothing it did not see."""
    from camtl.data.folds import leave_out_fold
    from camtl.tasks.spec import TaskSpec

    kind = get_kind("classification")
    examples = [{"text_a": f"sentence {i}", "text_b": None, "label": 0} for i in range(5)]
    used = {example_fold(kind, e, 1000) for e in examples}
    empty = next(fold for fold in range(1000) if fold not in used)
    spec = TaskSpec(
        name="t",
        type="classification",
        text_columns=["text"],
        label_column="label",
        cross_fit=CrossFit(folds=1000, held_out=empty),
    )
    with pytest.raises(DataError, match=f"fold {empty} of 1000 holds none of the 5 training"):
        leave_out_fold(spec, examples)
