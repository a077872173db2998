"""experiments/curve_diff.py, which compares two runs' dev curves at the steps both evaluated
(docs/research/2026-convergence.md quotes its ranges, means and per-step values)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def curve_diff(experiment_script: Callable[[str], ModuleType]) -> ModuleType:
    return experiment_script("curve_diff")


def _records(*points: tuple[int, float]) -> list[dict]:
    return [{"step": s, "mean": m, "tasks": {"a": m, "b": m}} for s, m in points]


def test_matched_steps_only_and_their_summary(curve_diff: ModuleType) -> None:
    base = _records((250, 60.0), (500, 70.0), (750, 72.0))
    # step 1000 has no base evaluation (the base stopped earlier): left out
    other = _records((250, 61.5), (500, 69.5), (750, 72.0), (1000, 80.0))
    report = curve_diff.compare(base, other, per_step=False)
    assert report.splitlines()[0] == "best: base step 750 mean 72.00; other step 1000 mean 80.00"
    assert "  a: base 72.00 other 80.00 (+8.00)" in report
    assert report.splitlines()[-1] == (
        "matched steps: 3, other - base from -0.50 to +1.50, mean +0.33, within one point at 2"
    )
    assert "step: base other" not in report


def test_per_step_lists_every_matched_step(curve_diff: ModuleType) -> None:
    base = _records((250, 60.0), (500, 70.0))
    other = _records((250, 61.5), (500, 69.5), (750, 71.0))
    lines = curve_diff.compare(base, other, per_step=True).splitlines()
    start = lines.index("step: base other (other - base)")
    assert lines[start + 1 : start + 3] == [
        "  250: 60.00 61.50 (+1.50)",
        "  500: 70.00 69.50 (-0.50)",
    ]


def test_a_run_recorded_in_a_results_file_is_a_curve_with_its_selected_scores(
    curve_diff: ModuleType, tmp_path: Path
) -> None:
    run = {
        "run": "runs/converged/camtl_s13",
        "selected_step": 500,
        "dev": {"a": 71.0, "b": 69.0},
        "history": [{"step": 250, "mean": 60.0}, {"step": 500, "mean": 70.0}],
    }
    results = tmp_path / "converged.json"
    results.write_text(json.dumps({"rows": {"camtl": {"runs": [run]}}}), encoding="utf-8")
    curve = curve_diff.load_curve(f"{results}:camtl_s13")
    assert [(r["step"], r["mean"]) for r in curve] == [(250, 60.0), (500, 70.0)]
    assert curve[1]["tasks"] == {"a": 71.0, "b": 69.0} and curve[0]["tasks"] == {}
    # against a run folder's records: the best steps' tasks and the matched means
    report = curve_diff.compare(curve, _records((250, 61.0), (500, 72.0)), per_step=False)
    assert "  a: base 71.00 other 72.00 (+1.00)" in report
    assert report.endswith("from +1.00 to +2.00, mean +1.50, within one point at 1")
    with pytest.raises(SystemExit, match="0 runs named 'plain_s13'.*camtl_s13"):
        curve_diff.load_curve(f"{results}:plain_s13")


def test_a_folder_without_evaluations_is_named_in_the_error(
    curve_diff: ModuleType, tmp_path: Path
) -> None:
    with pytest.raises(SystemExit, match=f"{tmp_path}: no dev evaluation"):
        curve_diff.load_curve(str(tmp_path))
    # a run that logged only its training steps so far has no curve either
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 50, "loss": 1.0}) + "\n")
    with pytest.raises(SystemExit, match=f"{tmp_path}: no dev evaluation"):
        curve_diff.load_curve(str(tmp_path))


def test_a_missing_results_file_is_named_in_one_error(
    curve_diff: ModuleType, tmp_path: Path
) -> None:
    # read through experiments/converged.py's read_results (its tests cover the other bad files)
    results = tmp_path / "converged.json"
    with pytest.raises(SystemExit, match=f"{results}: not a readable results file"):
        curve_diff.load_curve(f"{results}:camtl_s13")


def _report(**task_scores: float) -> dict:
    tasks = {t: {"primary_metric": "f1", "scores": {"f1": s}} for t, s in task_scores.items()}
    return {"results": {"tasks": tasks}}


def test_test_scores_are_compared_where_both_runs_have_them(
    curve_diff: ModuleType, tmp_path: Path
) -> None:
    # a finished run folder: its report_test.json belongs to status.json's selected step
    folder = tmp_path / "camtl_s12"
    folder.mkdir()
    (folder / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in _records((250, 60.0), (500, 70.0))),
        encoding="utf-8",
    )
    (folder / "status.json").write_text(json.dumps({"best_step": 500}), encoding="utf-8")
    (folder / "report_test.json").write_text(json.dumps(_report(a=65.0, b=66.0)))
    curve = curve_diff.load_curve(str(folder))
    assert "test" not in curve[0] and curve[1]["test"] == {"a": 65.0, "b": 66.0}
    # selected by another aggregate than the dev mean: the test scores stay with that step
    (folder / "status.json").write_text(json.dumps({"best_step": 250}), encoding="utf-8")
    selected_early = curve_diff.load_curve(str(folder))
    assert "test" in selected_early[0] and "test" not in selected_early[1]
    # a recorded run with test scores
    run = {
        "run": "runs/converged/plain_s12",
        "selected_step": 500,
        "dev": {"a": 71.0, "b": 69.0},
        "test": {"a": 64.0, "b": 68.5},
        "history": [{"step": 250, "mean": 60.0}, {"step": 500, "mean": 70.0}],
    }
    results = tmp_path / "converged.json"
    results.write_text(json.dumps({"rows": {"plain": {"runs": [run]}}}), encoding="utf-8")
    recorded = curve_diff.load_curve(f"{results}:plain_s12")
    report = curve_diff.compare(recorded, curve, per_step=False)
    assert "  a: base 71.00 other 70.00 (-1.00); test base 64.00 other 65.00 (+1.00)" in report
    assert "  b: base 69.00 other 70.00 (+1.00); test base 68.50 other 66.00 (-2.50)" in report
    # against a run without test scores (unfinished): dev only
    report = curve_diff.compare(recorded, _records((250, 61.0), (500, 72.0)), per_step=False)
    assert "  a: base 71.00 other 72.00 (+1.00)\n" in report
