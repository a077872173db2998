"""Smaller CLI surfaces: data list, compare, gradient accumulation and bf16 switches."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from camtl.cli import build_parser, main
from camtl.testing.runs import fake_run, write_config, write_task_files


def _commands(
    parser: argparse.ArgumentParser, path: str = "camtl"
) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command tree with its command line (``camtl``, ``camtl train``,
    ``camtl data fetch``, ...)."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _commands(child, f"{path} {name}")
    return found


def test_every_cli_option_and_command_has_help() -> None:
    missing = []
    for path, parser in _commands(build_parser()):
        for action in parser._actions:
            name = "/".join(action.option_strings) or action.dest
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {name}")
            if isinstance(action, argparse._SubParsersAction):
                missing += [
                    f"{path} {choice.dest}" for choice in action._choices_actions if not choice.help
                ]
    assert len(_commands(build_parser())) > 15  # the walk reached the sub-commands
    assert not missing, f"options without help: {missing}"


def test_data_list_names_every_registered_task(capsys: pytest.CaptureFixture[str]) -> None:
    from camtl.tasks import task_names

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in task_names():
        assert f"\n{name} " in out
    assert "licence notes" in out


@pytest.mark.parametrize(
    "training",
    [
        {"gradient_accumulation_steps": 2},
        {
            "mixed_precision": "bf16",
            "batch_mode": "single_task",
            "sampler": {"name": "proportional"},
        },
    ],
)
def test_training_switches_run_end_to_end(
    tmp_path: Path, tiny_encoder_dir: Path, training: dict
) -> None:
    write_task_files(tmp_path)
    path = write_config(tmp_path, tiny_encoder_dir, max_steps=3, eval_every=3, **training)
    assert main(["train", str(path)]) == 0
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    drawn = sum(log[-1]["examples_drawn"].values())
    accumulation = training.get("gradient_accumulation_steps", 1)
    assert drawn == 3 * 8 * accumulation  # steps x batch x micro-batches per step


def test_compare_tables_runs(
    tmp_path: Path, tiny_encoder_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_task_files(tmp_path)
    path = write_config(tmp_path, tiny_encoder_dir, max_steps=2, eval_every=2)
    config = yaml.safe_load(path.read_text())
    config["tasks"] = config["tasks"][:2]
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "run"), str(tmp_path / "run"), "--markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| run | pairs | scores | mean | worst")
    assert len(lines) == 4
    assert main(["compare", str(tmp_path)]) == 2


def test_compare_gathers_single_task_runs(tmp_path: Path) -> None:
    from camtl.evaluation.compare import compare_rows, format_comparison

    runs = [
        fake_run(tmp_path, "st_a", {"a": 80.0}, 110),
        fake_run(tmp_path, "st_b", {"b": 60.0}, 105),
        fake_run(
            tmp_path,
            "mtl",
            {"a": 81.0, "b": 59.0},
            120,
            examples_used_total_fraction=0.5,
            steps_run=200,
            longest_unsampled_steps={"a": 0, "b": 3},
        ),
        fake_run(tmp_path, "added", {"c": 40.0}, 121, source_run="mtl"),
    ]
    tasks, rows = compare_rows(runs)
    assert tasks == ["a", "b", "c"]
    assert [r["run"] for r in rows] == ["single-task (2 models)", "mtl", "added"]
    assert rows[0]["total_params"] == 215 and rows[0]["mean"] == 70.0
    assert rows[0]["wall_time_s"] == 20.0
    assert rows[1]["reaches_single_task"] == (1, 2)  # a: 81 >= 80; b: 59 < 60
    assert rows[2]["reaches_single_task"] == (0, 0)  # an added task is no single-task run
    # the worst task relative to its single-task score: b, 59 of 60
    assert rows[1]["relative_worst"] == (pytest.approx(100 * 59 / 60), "b")
    assert "relative_worst" not in rows[0]  # not the reference against itself
    assert rows[1]["starved"] == 3 / 200
    table = format_comparison(runs, markdown=True).splitlines()
    assert "tasks >= single-task" in table[0] and "x encoder" in table[0]
    assert "| 2.15 |" in table[2]
    assert "| 98.3% (b) | 1/2 | 50% | 1.5% | 0.00M | 1.20 |" in table[3]


def test_compare_reads_an_mse_as_better_lower() -> None:
    """A task scored by mse counts as reached when its error is at or below single-task's,
    its relative score is single-task's error over this one's, and the mean over shared
    tasks counts it negated, as "mean" does."""
    from camtl.evaluation.compare import rank_rows, score_row

    def row(name: str, scores: dict[str, float], single: bool) -> dict:
        facts = dict(total_params=None, encoder_params=None, wall_time_s=None)
        return score_row(
            name,
            scores,
            lower_is_better={"stsb"} & set(scores),
            **facts,
            data_used=None,
            starved=None,
            single=single,
        )

    rows = [
        row("st_sst", {"sst": 90.0}, True),
        row("st_stsb", {"stsb": 0.5}, True),
        row("st_cola", {"cola": 50.0}, True),
        row("worse", {"sst": 85.0, "stsb": 0.8}, False),
        row("better", {"sst": 95.0, "stsb": 0.4}, False),
    ]
    _, ranked = rank_rows(rows)
    worse, better = ranked[1], ranked[2]
    assert worse["reaches_single_task"] == (0, 2) and better["reaches_single_task"] == (2, 2)
    assert worse["relative_worst"] == (pytest.approx(100 * 0.5 / 0.8), "stsb")
    assert worse["shared_mean"] == pytest.approx((85.0 - 0.8) / 2)
    assert better["shared_mean"] > worse["shared_mean"]


def test_compare_keeps_single_task_runs_of_one_task_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from camtl.evaluation.compare import compare_rows

    runs = [
        fake_run(tmp_path, "a_small", {"a": 70.0}, 110),
        fake_run(tmp_path, "a_large", {"a": 80.0}, 110),
    ]
    _, rows = compare_rows(runs)
    assert [r["run"] for r in rows] == ["a_small", "a_large"]
    assert "reaches_single_task" not in rows[0]
    # two runs of one name (one task's single-task run, two seeds) get their parent's too
    for seed in ("s12", "s13"):
        (tmp_path / seed).mkdir()
    again = [fake_run(tmp_path / seed, "a", {"a": 70.0}, 110) for seed in ("s12", "s13")]
    _, rows = compare_rows([*again, runs[0]])
    assert [r["run"] for r in rows] == ["s12/a", "s13/a", "a_small"]
    # a link to a run (a folder of links gathering runs for a table) shows the link's name
    (tmp_path / "linked").symlink_to(runs[0])
    _, rows = compare_rows([tmp_path / "linked", runs[1]])
    assert [r["run"] for r in rows] == ["linked", "a_large"]
    # a run given as "." (compare run inside its folder) is named by that folder
    monkeypatch.chdir(runs[1])
    _, rows = compare_rows([runs[0], Path(".")])
    assert [r["run"] for r in rows] == ["a_small", "a_large"]


def test_compare_adds_a_mean_over_the_shared_tasks_when_rows_cover_different_tasks(
    tmp_path: Path,
) -> None:
    """Single-task runs of two tasks of three against a three-task run: each row's mean is
    over its own tasks (70 and 60), so the table adds one over the tasks both have."""
    from camtl.evaluation.compare import compare_rows, format_comparison

    runs = [
        fake_run(tmp_path, "st_a", {"a": 80.0}, 110),
        fake_run(tmp_path, "st_b", {"b": 60.0}, 105),
        fake_run(tmp_path, "mtl", {"a": 78.0, "b": 62.0, "c": 40.0}, 120),
    ]
    _, rows = compare_rows(runs)
    assert [r["mean"] for r in rows] == [70.0, 60.0]
    assert [r["shared_mean"] for r in rows] == [70.0, 70.0]
    table = format_comparison(runs, markdown=True).splitlines()
    assert "| mean | mean of the 2 shared | worst |" in table[0]
    assert table[3].startswith("| mtl | 78.00 | 62.00 | 40.00 | 60.00 | 70.00 |")
    # rows over the same tasks need no such column
    same = format_comparison(runs[2:] * 2, markdown=True).splitlines()[0]
    assert "shared" not in same


def test_compare_by_seed_gives_one_row_per_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from camtl.evaluation.compare import compare_rows

    def run(
        name: str,
        seed: int,
        scores: dict[str, float],
        training: dict | None = None,
        **camtl: object,
    ) -> Path:
        path = fake_run(tmp_path, name, scores, 120)
        config = {
            "seed": seed,
            "output_dir": str(path),
            "tasks": ["vader"],
            "training": training or {},
            "model": {"architecture": "camtl", "camtl": {"max_length": 64, **camtl}},
        }
        (path / "config.yaml").write_text(yaml.safe_dump(config))
        return path

    runs = [
        run("wide_s12", 12, {"a": 80.0, "b": 60.0}, generators="per_layer"),
        run("other", 12, {"a": 50.0, "b": 50.0}, generators="shared"),
        run(
            "wide_seed13",
            13,
            {"a": 84.0, "b": 58.0},
            {"batch_size": 32},  # default
            generators="per_layer",
        ),
        fake_run(tmp_path, "no_config", {"a": 1.0, "b": 2.0}, 120),
    ]
    _, rows = compare_rows(runs, by_seed=True)
    assert [r["run"] for r in rows] == ["wide (2 seeds)", "other", "no_config"]
    wide = rows[0]
    assert wide["scores"] == {"a": 82.0, "b": 59.0} and wide["mean"] == 70.5
    assert wide["sd"]["a"] == pytest.approx(2**1.5)  # stdev of 80 and 84
    assert wide["worst"] == 59.0 and wide["worst_task"] == "b"
    assert main(["compare", *map(str, runs), "--by-seed", "--markdown"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[2].startswith("| wide (2 seeds) | 82.00 ± 2.83 | 59.00 ± 1.41 | 70.50 ± 0.71 |")
    assert len(table) == 5  # header, rule, three rows
    # beside a single-task run of a alone, the mean over the shared task a has its seeds' spread
    runs.append(fake_run(tmp_path, "only_a", {"a": 70.0}, 120))
    _, rows = compare_rows(runs, by_seed=True)
    wide = rows[1]  # the single-task row comes first
    assert wide["shared_mean"] == 82.0 and wide["sd"]["shared_mean"] == pytest.approx(2**1.5)


def test_hub_warnings_are_printed_once_with_our_prefix() -> None:
    """huggingface_hub's own handler would print each retry a second time, unprefixed."""
    import logging

    from camtl.cli import _quiet_libraries

    _quiet_libraries()
    assert logging.getLogger("huggingface_hub").handlers == []
    assert logging.getLogger("huggingface_hub").propagate
