"""Run reports (JSON, Markdown, terminal table) and the dev-curve / task-share plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from camtl.evaluation.plots import plot_dev_curves, plot_task_shares
from camtl.evaluation.report import (
    BELOW_BASELINE_MARK,
    DEV_CURVES_FILE,
    beats_baseline,
    format_table,
    report_name,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _results(split: str = "dev") -> dict[str, Any]:
    return {
        "split": split,
        "step": 400,
        "select_by": "mean",
        "tasks": {
            "sst2": {
                "type": "classification",
                "primary_metric": "accuracy",
                "scores": {"accuracy": 81.2, "macro_f1": 80.1},
                "baseline": {"accuracy": 50.9, "macro_f1": 33.7},
                "n_examples": 500,
            },
            "stsb": {
                "type": "regression",
                "primary_metric": "pearson",
                "scores": {"pearson": 78.5, "spearman": 77.9, "mse": 0.91},
                "baseline": {"pearson": 0.0, "spearman": 0.0, "mse": 2.3},
                "n_examples": 300,
            },
            "wnut16": {
                "type": "token_tagging",
                "primary_metric": "entity_f1",
                "scores": {"entity_f1": 0.0, "token_accuracy": 88.0},
                "baseline": {"entity_f1": 0.0, "token_accuracy": 90.1},
                "n_examples": 200,
            },
            "squad": {
                "type": "span_qa",
                "primary_metric": "squad_f1",
                "scores": {"squad_f1": 30.2, "exact_match": 21.0},
                "baseline": {"squad_f1": 35.5, "exact_match": 0.0},
                "n_examples": 100,
            },
        },
        "aggregate": {"mean": 47.5, "worst": 0.0, "worst_task": "wnut16", "spread": 34.6},
        "baseline_aggregate": {"mean": 21.6, "worst": 0.0, "worst_task": "stsb", "spread": 22.0},
    }


def _history(n: int = 4) -> list[dict[str, Any]]:
    records = []
    for i in range(1, n + 1):
        tasks = {"sst2": 50 + 7 * i, "stsb": 10 + 17 * i, "wnut16": 0.0, "squad": 5 + 6 * i}
        mean = sum(tasks.values()) / len(tasks)
        records.append(
            {
                "step": 100 * i,
                "tasks": tasks,
                "mean": mean,
                "worst": min(tasks.values()),
                "spread": 0.0,
                "train_loss": {t: 1.0 / i for t in tasks},
            }
        )
    return records


def _run_info() -> dict[str, Any]:
    return {
        "encoder": "tiny-bert",
        "architecture": "camtl",
        "sampler": "temperature",
        "max_steps": 400,
        "wall_time_s": 3723.4,
        "parameters": {"total": 1_200_000, "trainable": 300_000},
        "command": ["camtl", "train", "configs/run.yaml", "training.lr=3e-5"],
        "output_dir": Path("/tmp/run"),
    }


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000


def test_write_report_files_exist_and_parse(tmp_path: Path) -> None:
    written = write_report(tmp_path, _results(), _history(), _run_info())
    assert [p.name for p in written] == ["report.json", "report.md", DEV_CURVES_FILE]
    assert all(p.is_file() for p in written)

    data = json.loads((tmp_path / "report.json").read_text())
    assert data["results"]["tasks"]["sst2"]["scores"]["accuracy"] == 81.2
    assert len(data["history"]) == 4
    assert data["run_info"]["encoder"] == "tiny-bert"
    assert data["run_info"]["output_dir"] == "/tmp/run"
    assert data["summary"]["tasks_not_beating_baseline"] == ["wnut16", "squad"]
    _assert_png(tmp_path / DEV_CURVES_FILE)


def test_markdown_has_every_task_aggregates_and_baseline_count(tmp_path: Path) -> None:
    write_report(tmp_path, _results(), _history(), _run_info())
    md = (tmp_path / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    for task in ("sst2", "stsb", "wnut16", "squad"):
        assert any(line.startswith(f"| {task} |") for line in table), task
    assert any("**mean**" in line for line in table)
    assert any("**worst (wnut16)**" in line for line in table)
    assert any("**spread**" in line for line in table)
    assert "2 of 4 tasks beat their trivial baseline (not: wnut16, squad)" in md
    # Other metrics, run info and the plot link.
    assert "macro_f1 80.10" in md
    assert "1h 02m 03s" in md
    assert "1,200,000 total" in md
    assert "`camtl train configs/run.yaml training.lr=3e-5`" in md
    assert f"![dev curves]({DEV_CURVES_FILE})" in md
    squad_row = next(line for line in table if line.startswith("| squad |"))
    assert BELOW_BASELINE_MARK in squad_row
    sst2_row = next(line for line in table if line.startswith("| sst2 |"))
    assert BELOW_BASELINE_MARK not in sst2_row


def test_format_table_marks_tasks_not_beating_baseline() -> None:
    table = format_table(_results())
    lines = table.splitlines()
    by_task = {line.split()[0]: line for line in lines if line.split()}
    assert BELOW_BASELINE_MARK in by_task["squad"]
    assert BELOW_BASELINE_MARK in by_task["wnut16"]  # a tie does not beat the baseline
    assert BELOW_BASELINE_MARK not in by_task["sst2"]
    assert BELOW_BASELINE_MARK not in by_task["stsb"]
    assert "-5.30" in by_task["squad"]
    assert any(line.startswith("mean ") for line in lines)
    assert any(line.startswith("worst (wnut16)") for line in lines)
    assert any(line.startswith("spread ") for line in lines)
    assert "2 of 4 tasks beat their trivial baseline" in table
    assert "\x1b" not in table


def test_format_table_columns_are_aligned() -> None:
    lines = format_table(_results()).splitlines()
    header = next(line for line in lines if line.startswith("task "))
    end_of_score = header.index("score") + len("score")
    rows = [line for line in lines if line.split() and line.split()[0] in _results()["tasks"]]
    # Right-aligned numbers: every score ends at the header's "score" column.
    assert {line[:end_of_score].split()[-1] for line in rows} == {"81.20", "78.50", "0.00", "30.20"}


def test_lower_is_better_metric_direction() -> None:
    assert beats_baseline("mse", 0.5, 1.0) is True
    assert beats_baseline("mse", 1.5, 1.0) is False
    assert beats_baseline("accuracy", 60.0, 50.0) is True
    assert beats_baseline("accuracy", 50.0, 50.0) is False
    assert beats_baseline("accuracy", 50.0, None) is None
    assert beats_baseline("accuracy", math.nan, 50.0) is None

    results = _results()
    results["tasks"] = {"stsb": {**results["tasks"]["stsb"], "primary_metric": "mse"}}
    row = next(line for line in format_table(results).splitlines() if line.startswith("stsb"))
    assert "+1.3900" in row
    assert BELOW_BASELINE_MARK not in row


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    write_report(tmp_path, _results(), _history(), _run_info())
    write_report(tmp_path, _results(), _history(), _run_info())  # overwrite in place
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["report.json", "report.md", DEV_CURVES_FILE])
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")]
    assert all((tmp_path / n).stat().st_mode & 0o044 for n in names)  # not mkstemp's 0600


def test_empty_history_writes_report_without_png(tmp_path: Path) -> None:
    written = write_report(tmp_path, _results(), [], _run_info())
    assert [p.name for p in written] == ["report.json", "report.md"]
    assert not (tmp_path / DEV_CURVES_FILE).exists()
    assert json.loads((tmp_path / "report.json").read_text())["history"] == []
    assert "![dev curves]" not in (tmp_path / "report.md").read_text()
    assert plot_dev_curves([], tmp_path / "x.png") is None


def test_test_split_report_does_not_overwrite_dev(tmp_path: Path) -> None:
    assert report_name("dev") == "report"
    assert report_name("test") == "report_test"
    write_report(tmp_path, _results("dev"), _history(), _run_info())
    write_report(tmp_path, _results("test"), [], _run_info(), name=report_name("test"))
    assert json.loads((tmp_path / "report.json").read_text())["results"]["split"] == "dev"
    assert json.loads((tmp_path / "report_test.json").read_text())["results"]["split"] == "test"
    assert "(test)" in (tmp_path / "report_test.md").read_text()


def test_non_finite_scores_become_null_and_dash(tmp_path: Path) -> None:
    results = _results()
    results["tasks"]["stsb"]["scores"]["pearson"] = math.nan
    write_report(tmp_path, results, _history(), _run_info())
    text = (tmp_path / "report.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["results"]["tasks"]["stsb"]["scores"]["pearson"] is None
    row = next(line for line in format_table(results).splitlines() if line.startswith("stsb"))
    assert " - " in row
    assert "1 of 3 tasks" in format_table(results)
    assert "1 not compared" in format_table(results)


def test_bad_report_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plain file stem"):
        write_report(tmp_path, _results(), [], {}, name="../escape")


def test_minimal_results_do_not_crash(tmp_path: Path) -> None:
    results = {"split": "dev", "tasks": {"t": {"scores": {"accuracy": 40.0}}}}
    table = format_table(results)
    assert "accuracy" in table
    assert "0 of 0 tasks" in table and "1 not compared" in table
    written = write_report(tmp_path, results, [], {})
    assert [p.name for p in written] == ["report.json", "report.md"]


def test_dev_curves_handle_gaps_and_many_tasks(tmp_path: Path) -> None:
    history = _history(6)
    del history[2]["tasks"]["squad"]
    history[3]["tasks"]["stsb"] = math.nan
    for i, record in enumerate(history):
        record["tasks"].update({f"extra{k}": 10.0 * k + i for k in range(12)})
    path = plot_dev_curves(history, tmp_path / "sub" / "curves.png")
    assert path == tmp_path / "sub" / "curves.png"
    _assert_png(path)


def test_plot_task_shares(tmp_path: Path) -> None:
    shares = [
        {"step": 100, "shares": {"sst2": 0.5, "stsb": 0.3, "squad": 0.2}},
        {"step": 200, "shares": {"sst2": 0.4, "stsb": 0.4, "squad": 0.2}},
        {"step": 300, "shares": {"sst2": 30, "stsb": 30, "squad": 30, "wnut16": 10}},
    ]
    path = plot_task_shares(shares, tmp_path / "shares.png")
    assert path is not None
    _assert_png(path)
    assert plot_task_shares([], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    single = plot_task_shares([{"step": 50, "shares": {"a": 1.0}}], tmp_path / "one.png")
    assert single is not None
    _assert_png(single)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png", "shares.png"]


def _write_train_log(run_dir: Path, weights: list[dict[str, float]]) -> None:
    run_dir.mkdir()
    lines = [
        json.dumps({"step": 50 * (i + 1), "examples_drawn": {}, "task_weights": w})
        for i, w in enumerate(weights)
    ]
    (run_dir / "train_log.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_the_loss_weight_plot_is_drawn_only_when_the_balancer_moved_its_weights(
    tmp_path: Path,
) -> None:
    from camtl.training.final_report import plot_loss_weights_from_log

    moved = tmp_path / "score_dro"
    _write_train_log(moved, [{"a": 0.5, "b": 0.5}, {"a": 0.2, "b": 0.8}])
    plot_loss_weights_from_log(moved)
    _assert_png(moved / "loss_weights.png")
    for name, weights in (("fixed", [{"a": 0.3, "b": 0.7}] * 2), ("equal", [{}, {}])):
        _write_train_log(tmp_path / name, weights)  # equal weights log as {}
        plot_loss_weights_from_log(tmp_path / name)
        assert not (tmp_path / name / "loss_weights.png").exists()
