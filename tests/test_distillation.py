"""Distillation from single-task teachers (training.distillation): each kind's loss against a
teacher held to a hand computation, teacher annealing's schedule at its ends, a distilled run
end to end with its teacher cache, and every teacher that cannot teach refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from camtl.cli import main
from camtl.config import load_config
from camtl.distillation import DistillationConfig
from camtl.distillation import teachers as teachers_module
from camtl.errors import ConfigError
from camtl.tasks.kinds import get_kind, kind_names
from camtl.testing.runs import task_entry, train_kinds_run, write_sample

T = 2.0


def head_of(kind_name: str, outputs: int):
    from camtl.tasks.spec import SourceSpec, TaskSpec

    sample = get_kind(kind_name).sample()
    spec = TaskSpec(
        "t",
        kind_name,
        sample.text_columns,
        sample.label_column,
        source=SourceSpec(kind="files", paths={"train": "x"}),
    )
    return get_kind(kind_name).build_head(spec, 8, outputs, 0.0, "mean")


def mixed_target_cross_entropy(student, target_probs, temperature):
    return -(target_probs * torch.log_softmax(student / temperature, -1)).sum(-1)


def test_classification_and_choice_losses_are_soft_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    gold = torch.tensor([0, 2, 1, 1, 0])
    for kind_name, field in (("classification", "cls_labels"), ("multiple_choice", None)):
        head = head_of(kind_name, 3)
        labels = {field or "choice_labels": gold}
        soft = head.distillation_loss(student, teacher, labels, T)
        by_hand = mixed_target_cross_entropy(student, torch.softmax(teacher / T, -1), T) * T**2
        assert torch.allclose(soft, by_hand.mean())
        # at T = 1, w * gold + (1 - w) * soft is cross-entropy against the mixed target
        w = 0.3
        mix = w * head.loss(student, labels) + (1 - w) * head.distillation_loss(
            student, teacher, labels, 1.0
        )
        target = w * F.one_hot(gold, 3) + (1 - w) * torch.softmax(teacher, -1)
        assert torch.allclose(mix, mixed_target_cross_entropy(student, target, 1.0).mean())


def test_regression_and_multi_label_train_on_the_mixed_target() -> None:
    """Their losses are linear in the target up to a constant: the gradient of the mix is
    the gradient against the mixed target."""
    g = torch.Generator().manual_seed(1)
    w = 0.25
    # regression: MSE against w y + (1 - w) t
    head = head_of("regression", 1)
    student = torch.randn(6, generator=g, requires_grad=True)
    gold, teacher = torch.randn(6, generator=g), torch.randn(6, generator=g)
    labels = {"reg_labels": gold}
    mix = w * head.loss(student, labels) + (1 - w) * head.distillation_loss(
        student, teacher, labels, T
    )
    (grad,) = torch.autograd.grad(mix, student)
    (expected,) = torch.autograd.grad(F.mse_loss(student, w * gold + (1 - w) * teacher), student)
    assert torch.allclose(grad, expected)
    # multi-label: BCE against w y + (1 - w) sigmoid(t) (T = 1)
    head = head_of("multi_label", 4)
    student = torch.randn(3, 4, generator=g, requires_grad=True)
    teacher = torch.randn(3, 4, generator=g)
    indices = torch.tensor([[0, -1], [1, 3], [-1, -1]])
    gold = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0]])
    labels = {"multi_labels": indices}
    mix = w * head.loss(student, labels) + (1 - w) * head.distillation_loss(
        student, teacher, labels, 1.0
    )
    (grad,) = torch.autograd.grad(mix, student)
    target = w * gold + (1 - w) * torch.sigmoid(teacher)
    (expected,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(student, target), student)
    assert torch.allclose(grad, expected, atol=1e-6)
    # and with a temperature, the teacher's probabilities are softened alike
    soft = head.distillation_loss(student, teacher, labels, T)
    by_hand = F.binary_cross_entropy_with_logits(student / T, torch.sigmoid(teacher / T)) * T**2
    assert torch.allclose(soft, by_hand)


def test_tagging_reads_the_teacher_at_the_gold_losses_tokens() -> None:
    g = torch.Generator().manual_seed(2)
    head = head_of("token_tagging", 3)
    student = torch.randn(2, 5, 3, generator=g)
    teacher = torch.randn(2, 5, 3, generator=g)
    tags = torch.tensor([[-100, 1, -100, 2, -100], [-100, 0, 0, -100, -100]])
    soft = head.distillation_loss(student, teacher, {"tag_labels": tags}, T)
    scored = tags != -100
    per_token = mixed_target_cross_entropy(student, torch.softmax(teacher / T, -1), T) * T**2
    assert torch.allclose(soft, per_token[scored].mean())
    # no scored token in these rows: zero, with a graph
    none = torch.full_like(tags, -100)
    assert float(head.distillation_loss(student, teacher, {"tag_labels": none}, T)) == 0.0


def test_span_qa_mixes_start_and_end_distributions_and_ignores_padding() -> None:
    g = torch.Generator().manual_seed(3)
    head = head_of("span_qa", 2)
    hidden = torch.randn(2, 6, 8, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    student = head(hidden, mask)  # padding masked out
    teacher = torch.randn(2, 6, 2, generator=g)
    teacher[1, 4:] = head.teacher_fill  # a teacher's cache pads with its fill
    labels = {"start_positions": torch.tensor([1, 0]), "end_positions": torch.tensor([2, 0])}
    soft = head.distillation_loss(student, teacher, labels, 1.0)
    parts = []
    for row, length in ((0, 6), (1, 4)):
        for side in (0, 1):
            s, t = student[row, :length, side], teacher[row, :length, side]
            parts.append(-(torch.softmax(t, -1) * torch.log_softmax(s, -1)).sum() / 2)
    by_hand = (parts[0] + parts[1] + parts[2] + parts[3]) / 2
    assert torch.isfinite(soft) and torch.allclose(soft, by_hand, atol=1e-5)


def test_the_gold_weight_anneals_from_start_to_end() -> None:
    linear = DistillationConfig(teachers="x")
    assert linear.gold_weight(0, 101) == 0.0
    assert linear.gold_weight(100, 101) == 1.0
    assert linear.gold_weight(50, 101) == pytest.approx(0.5)
    shifted = DistillationConfig(teachers="x", start_gold_weight=0.2, end_gold_weight=0.8)
    assert shifted.gold_weight(0, 11) == pytest.approx(0.2)
    assert shifted.gold_weight(10, 11) == pytest.approx(0.8)
    constant = DistillationConfig(teachers="x", schedule="constant", start_gold_weight=0.4)
    assert constant.gold_weight(0, 10) == constant.gold_weight(9, 10) == 0.4


def test_anneal_steps_reaches_the_gold_labels_before_max_steps_and_holds_them() -> None:
    short = DistillationConfig(teachers="x", anneal_steps=11)
    assert short.gold_weight(0, 101) == 0.0
    assert short.gold_weight(5, 101) == pytest.approx(0.5)
    assert short.gold_weight(10, 101) == short.gold_weight(100, 101) == 1.0


KINDS = kind_names()


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    """One finished plain run with a task of every kind: it teaches each of them."""
    root = tmp_path_factory.mktemp("teacher")
    return train_kinds_run(root, tiny_encoder_dir, KINDS, "plain", max_steps=2, eval_every=2)


def student_config(
    root: Path, encoder: Path, teachers: object, name: str = "student", **distill: object
) -> Path:
    tasks = [task_entry(k, write_sample(k, root)) for k in KINDS]
    config = {
        "output_dir": str(root / name),
        "seed": 4,
        "model": {"encoder": str(encoder), "architecture": "camtl", "camtl": {"max_length": 48}},
        "tasks": tasks,
        "training": {
            "max_steps": 3,
            "batch_size": 8,
            "eval_every": 3,
            "log_every": 1,
            "learning_rate": 1e-3,
            "distillation": {"teachers": teachers, **distill},
        },
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def test_a_distilled_run_trains_and_its_teacher_outputs_are_cached(
    teacher_run: Path,
    tiny_encoder_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    teachers = {f"{k}_task": str(teacher_run) for k in KINDS}
    path = student_config(tmp_path, tiny_encoder_dir, teachers)
    assert main(["train", str(path)]) == 0
    assert json.loads((tmp_path / "student" / "status.json").read_text())["status"] == "completed"
    # a second run reads every teacher's outputs back, computing none
    monkeypatch.setattr(
        teachers_module, "compute_outputs", lambda *a: pytest.fail("teacher outputs recomputed")
    )
    again = student_config(tmp_path, tiny_encoder_dir, teachers, name="again")
    assert main(["train", str(again)]) == 0
    assert losses(tmp_path / "student") == losses(tmp_path / "again")


def test_gold_weight_one_trains_exactly_as_without_teachers(
    teacher_run: Path, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    teachers = {f"{k}_task": str(teacher_run) for k in KINDS}
    gold = student_config(
        tmp_path, tiny_encoder_dir, teachers, "gold", schedule="constant", start_gold_weight=1.0
    )
    plain = student_config(tmp_path, tiny_encoder_dir, teachers, "plain")
    config = yaml.safe_load(plain.read_text())
    del config["training"]["distillation"]
    plain.write_text(yaml.safe_dump(config))
    assert main(["train", str(gold)]) == 0 and main(["train", str(plain)]) == 0
    assert losses(tmp_path / "gold") == losses(tmp_path / "plain")
    # and teachers do change the losses when they weigh in
    mixed = student_config(tmp_path, tiny_encoder_dir, teachers, "mixed")
    assert main(["train", str(mixed)]) == 0
    assert losses(tmp_path / "mixed") != losses(tmp_path / "plain")


def _refused(path: Path, capsys: pytest.CaptureFixture[str], *parts: str) -> str:
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for part in parts:
        assert part in err[0], err[0]
    assert not (path.parent / "student").exists()  # nothing written
    return err[0]


def test_teachers_that_cannot_teach_are_refused_in_one_line(
    teacher_run: Path,
    tiny_encoder_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    task = "classification_task"
    every = {f"{k}_task": str(teacher_run) for k in KINDS}
    # a folder of per-task runs without this task's
    path = student_config(tmp_path, tiny_encoder_dir, str(tmp_path / "none"))
    _refused(path, capsys, "training.distillation.teachers", "no finished camtl run")
    # a map missing a task
    partial = {k: v for k, v in every.items() if k != task}
    _refused(
        student_config(tmp_path, tiny_encoder_dir, partial), capsys, f"no teacher for task {task!r}"
    )
    # other labels
    wrong_labels = tmp_path / "wrong_labels"
    shutil.copytree(teacher_run, wrong_labels)
    meta = json.loads((wrong_labels / "camtl_model.json").read_text())
    meta["labels"][task] = list(reversed(meta["labels"][task]))
    (wrong_labels / "camtl_model.json").write_text(json.dumps(meta))
    path = student_config(tmp_path, tiny_encoder_dir, {**every, task: str(wrong_labels)})
    _refused(path, capsys, f"task {task!r}", "labels")
    # other windows
    config = yaml.safe_load(path.read_text())
    config["training"]["distillation"]["teachers"] = every
    config["tasks"][0]["max_length"] = 40
    path.write_text(yaml.safe_dump(config))
    _refused(path, capsys, f"task {task!r}", "max_length is 48, the student's 40")
    # another tokenizer
    other_tok = tmp_path / "other_tokenizer"
    shutil.copytree(teacher_run, other_tok)
    tokenizer = json.loads((other_tok / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"]["zzzz"] = len(tokenizer["model"]["vocab"])
    (other_tok / "tokenizer.json").write_text(json.dumps(tokenizer))
    path = student_config(tmp_path, tiny_encoder_dir, {**every, task: str(other_tok)})
    _refused(path, capsys, f"task {task!r}", "tokenizer")


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    base = {"tasks": ["vader"], "training": {"distillation": {"teachers": "t"}}}
    cases = {
        "start_gold_weight": ({"start_gold_weight": 1.5}, "must be in [0, 1]"),
        "temperature": ({"temperature": 0}, "must be a positive number"),
        "schedule": ({"schedule": "cosine"}, "'cosine' is not allowed"),
        "anneal_steps": ({"anneal_steps": 0}, "a whole number of steps >= 1"),
    }
    for key, (extra, message) in cases.items():
        data = json.loads(json.dumps(base))
        data["training"]["distillation"].update(extra)
        path = tmp_path / f"{key}.yaml"
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert f"training.distillation.{key}" in str(info.value) and message in str(info.value)


def test_score_dro_aims_at_the_teachers_dev_scores(
    teacher_run: Path,
    tiny_encoder_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from types import SimpleNamespace

    from camtl.balancing import build_balancer
    from camtl.training.setup import give_teacher_scores

    every = {f"{k}_task": str(teacher_run) for k in KINDS}
    report = json.loads((teacher_run / "report.json").read_text())["results"]["tasks"]
    scores = {t: e["scores"][e["primary_metric"]] for t, e in report.items()}
    # the tiny teacher scores above 0 on these (0 on multi-label, below 0 on regression)
    kept = [t for t, s in scores.items() if s > 0]
    assert len(kept) >= 3
    tasks = [
        SimpleNamespace(spec=SimpleNamespace(name=t, primary_metric=report[t]["primary_metric"]))
        for t in kept
    ]
    balancer = build_balancer("score_dro", {"targets": "teachers", "floor": 0.0}, kept)
    give_teacher_scores(balancer, DistillationConfig(teachers=every), tasks)  # type: ignore[arg-type]
    assert balancer.targets == {t: scores[t] for t in kept}
    # each task's gap is measured against its teacher: a task at its teacher's score has none
    gaps = balancer.gaps({t: scores[t] / 2 if t == kept[0] else scores[t] for t in kept})
    assert gaps.tolist() == [0.5] + [0.0] * (len(kept) - 1)
    # a teacher measured by another primary metric than the student's task
    tasks[0].spec.primary_metric = "macro_f1"
    with pytest.raises(ConfigError, match=f"task {kept[0]!r}: the teacher's primary dev metric"):
        give_teacher_scores(balancer, DistillationConfig(teachers=every), tasks)  # type: ignore[arg-type]

    # end to end: a distilled run trains with it
    path = student_config(tmp_path, tiny_encoder_dir, every)
    config = yaml.safe_load(path.read_text())
    every_kind = config["tasks"]
    config["training"]["balancer"] = {"name": "score_dro", "options": {"targets": "teachers"}}
    config["tasks"] = [t for t in every_kind if t["name"] in kept]
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    shutil.rmtree(tmp_path / "student")
    capsys.readouterr()
    # a teacher whose score cannot be a target, or without a dev report, is refused
    config["tasks"] = [t for t in every_kind if t["name"] in [*kept, "multi_label_task"]]
    path.write_text(yaml.safe_dump(config))
    _refused(path, capsys, "task 'multi_label_task'", "micro_f1 is 0", "needs a positive")
    config["tasks"] = [t for t in every_kind if t["name"] in kept]
    no_report = tmp_path / "no_report"
    shutil.copytree(teacher_run, no_report)
    (no_report / "report.json").unlink()
    config["training"]["distillation"] = {"teachers": {**every, kept[0]: str(no_report)}}
    path.write_text(yaml.safe_dump(config))
    _refused(path, capsys, "training.distillation.teachers", f"task {kept[0]!r}", "no dev score")
    # without teachers, 'teachers' is refused in one line naming the key
    del config["training"]["distillation"]
    path.write_text(yaml.safe_dump(config))
    _refused(path, capsys, "training.balancer.options.targets", "no training.distillation")


def test_the_teacher_cache_key_holds_every_input_the_precision_and_the_model_code(
    teacher_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from camtl.tasks.spec import TaskSpec

    spec = TaskSpec("mc", "multiple_choice", ["p", "c0", "c1"], "label")
    window = {"input_ids": [1, 5, 2, 6, 2], "token_type_ids": [0] * 5, "choice_ids": [-1] * 5}
    task = SimpleNamespace(spec=spec, features={"train": [window]})
    teacher = SimpleNamespace(task="mc", run_dir=teacher_run)
    key = teachers_module._cache_key(teacher, task, [0], "no")
    assert teachers_module._cache_key(teacher, task, [0], "bf16") != key
    window["choice_ids"] = [-1, 0, -1, 1, -1]  # same tokens, other choices
    assert teachers_module._cache_key(teacher, task, [0], "no") != key
    changed = teachers_module._cache_key(teacher, task, [0], "no")
    monkeypatch.setattr(teachers_module, "_model_code_hash", lambda: "other code")
    assert teachers_module._cache_key(teacher, task, [0], "no") != changed
