"""experiments/converged.py, which builds the headline table at convergence: the convergence
test (the dev mean's gain over a run's last 20% of steps) and a row's aggregates (one
system of single-task models against a mean over seeds)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture(scope="module")
def converged(experiment_script: Callable[[str], ModuleType]) -> ModuleType:
    return experiment_script("converged")


def _history(*means: float, every: int = 250) -> list[dict[str, float]]:
    return [{"step": every * (k + 1), "mean": m} for k, m in enumerate(means)]


@pytest.mark.parametrize(
    ("means", "steps_run", "expected"),
    [
        # flat after step 800 of 1,000: no gain over the last 200 steps
        ((60.0, 70.0, 75.0, 75.0), 1000, 0.0),
        # the best mean of the last 20% against the best before it, not the last value
        ((60.0, 70.0, 74.0, 74.5), 1000, 0.5),
        # a fall at the end is no gain (the best so far stays the reference)
        ((60.0, 76.0, 75.0, 74.0), 1000, 0.0),
        ((), 1000, None),  # no evaluation yet
        ((60.0,), None, None),  # a run that never said where it stopped
        ((60.0,), 250, None),  # every evaluation inside the last 20%: nothing to compare
    ],
)
def test_late_gain_is_the_best_dev_mean_rise_over_the_last_fifth(
    converged: ModuleType, means: tuple[float, ...], steps_run: int | None, expected: float | None
) -> None:
    gain = converged.late_gain(_history(*means), steps_run)
    assert gain == (None if expected is None else pytest.approx(expected))


def _run(dev: dict[str, float], params: int, seconds: float) -> dict[str, Any]:
    return {
        "dev": dev,
        "test": None,
        "params_total": params,
        "encoder_params": 100,
        "wall_time_s": seconds,
        "data_used": 1.0,
    }


@pytest.mark.parametrize("name", ["single_task", "single_task_attention0"])
def test_a_row_of_single_task_runs_is_one_system_and_seeds_are_averaged(
    converged: ModuleType, name: str
) -> None:
    single = converged.row_summary(
        name, [_run({"a": 90.0}, 101, 10.0), _run({"b": 50.0}, 102, 20.0)], None
    )
    # one model per task: their scores side by side, parameters and time summed
    assert single["dev"]["tasks"] == {"a": 90.0, "b": 50.0}
    assert single["params_total"] == 203 and single["params_x_encoder"] == pytest.approx(2.03)
    assert single["training_time_s"] == 30.0 and single["data_used"] is None
    assert "test" not in single  # no test report, no test entry

    reference = {"dev": single["dev"]["tasks"]}
    seeds = [_run({"a": 92.0, "b": 40.0}, 110, 5.0), _run({"a": 88.0, "b": 44.0}, 110, 7.0)]
    multi = converged.row_summary("camtl", seeds, reference)
    dev = multi["dev"]
    assert dev["tasks"] == {"a": pytest.approx(90.0), "b": pytest.approx(42.0)}
    assert dev["mean"] == pytest.approx(66.0) and dev["worst"] == pytest.approx(42.0)
    # the standard deviation over seeds of each seed's own mean (66, 66) and worst (40, 44)
    assert dev["sd"]["mean"] == pytest.approx(0.0)
    assert dev["sd"]["worst"] == pytest.approx(2.0**0.5 * 2.0)
    # the mean over seeds reaches single-task on a (90 >= 90), not on b (42 < 50)
    assert dev["tasks_at_or_above_single_task"] == [1, 2]
    assert dev["tasks_within_0_5_of_single_task"] == [1, 2]
    level = converged.row_summary("camtl", [_run({"a": 89.5, "b": 49.4}, 110, 5.0)], reference)
    assert level["dev"]["tasks_at_or_above_single_task"] == [0, 2]
    assert level["dev"]["tasks_within_0_5_of_single_task"] == [1, 2]  # 89.5 is, 49.4 is not
    assert dev["relative_worst"]["task"] == "b"
    assert dev["relative_worst"]["percent"] == pytest.approx(84.0)
    assert multi["params_total"] == 110 and multi["training_time_s"] == 6.0


def test_task_peaks_are_each_tasks_best_evaluation_and_a_row_averages_them(
    converged: ModuleType,
) -> None:
    records = [
        {"step": 250, "mean": 60.0, "tasks": {"a": 70.0, "b": 50.0}},
        {"step": 500, "mean": 61.0, "tasks": {"a": 68.0, "b": 54.0}},
    ]
    assert converged.task_peaks(records) == {"a": 70.0, "b": 54.0}
    assert converged.task_peaks([{"step": 250, "mean": 60.0}]) is None
    seeds = [
        {**_run({"a": 68.0, "b": 54.0}, 110, 5.0), "dev_task_peaks": {"a": 70.0, "b": 54.0}},
        {**_run({"a": 66.0, "b": 50.0}, 110, 5.0), "dev_task_peaks": {"a": 66.0, "b": 52.0}},
    ]
    row = converged.row_summary("camtl", seeds, None)
    assert row["dev"]["mean_of_task_peaks"] == pytest.approx((62.0 + 59.0) / 2)
    # a run recorded before the field (carried over from an older file): no such entry
    older = converged.row_summary("camtl", [seeds[0], _run({"a": 1.0, "b": 1.0}, 110, 5.0)], None)
    assert "mean_of_task_peaks" not in older["dev"]


def _entry(path: str, seed: int, dev: dict[str, float]) -> dict[str, Any]:
    """A run as a results file records it (every key ``run_entry`` writes)."""
    return {
        **_run(dev, 110, 6.0),
        "run": path,
        "seed": seed,
        "selected_step": 500,
        "steps_run": 500,
        "stopped_by": "early_stopping",
        "starved": None,
        "precision": "bf16",
        "dev_gain_last_20pct": 0.0,
        "history": [],
    }


def _write_finished_run(
    run_dir: Path, seed: int, dev: dict[str, float], teachers: str | None = None
) -> None:
    """The files ``run_entry`` reads from a finished run folder (no checkpoint)."""
    run_dir.mkdir(parents=True)
    tasks = {t: {"primary_metric": "accuracy", "scores": {"accuracy": s}} for t, s in dev.items()}
    info = {
        "parameters": {"total": 110, "encoder": 100},
        "precision": "fp32",
        "steps_run": 500,
        "longest_unsampled_steps": {t: 5 for t in dev},
    }
    report = {"results": {"tasks": tasks}, "run_info": info}
    (run_dir / "report.json").write_text(json.dumps(report), encoding="utf-8")
    status = {"status": "completed", "step": 500, "best_step": 500, "wall_time_s": 9.0}
    (run_dir / "status.json").write_text(json.dumps(status), encoding="utf-8")
    distillation = f"{{teachers: {teachers}}}" if teachers else "null"
    config = f"seed: {seed}\ntraining:\n  distillation: {distillation}\n"
    (run_dir / "config.yaml").write_text(config, encoding="utf-8")
    record = {"step": 500, "mean": sum(dev.values()) / len(dev), "tasks": {}}
    (run_dir / "metrics.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")


def test_a_distilled_row_counts_its_teachers_compute_whatever_its_name(
    converged: ModuleType, tmp_path: Path
) -> None:
    _write_finished_run(tmp_path / "single" / "a", 12, {"a": 90.0})
    _write_finished_run(tmp_path / "dro_s12", 12, {"a": 91.0}, teachers=str(tmp_path / "single"))
    _write_finished_run(tmp_path / "camtl_s12", 12, {"a": 89.0})
    runs = converged.finished_runs(
        {
            "single_task": [tmp_path / "single" / "a"],
            "camtl_distill_dro": [tmp_path / "dro_s12"],
            "camtl": [tmp_path / "camtl_s12"],
        }
    )
    assert [run["distilled"] for row in runs.values() for run in row] == [False, True, False]
    rows = converged.summarise(runs)
    # each run took 9 s: the distilled row is its own 9 s plus the teachers' 9 s
    assert rows["camtl_distill_dro"]["teachers_training_time_s"] == 9.0
    assert rows["camtl_distill_dro"]["total_compute_s"] == 18.0
    assert "total_compute_s" not in rows["camtl"]


def test_keep_carries_the_runs_an_earlier_file_recorded_and_a_new_seed_joins_its_row(
    converged: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    earlier_runs = {
        "single_task": [
            _entry("runs/single/a", 12, {"a": 90.0}),
            _entry("runs/single/b", 12, {"b": 50.0}),
        ],
        "camtl": [_entry("runs/camtl_s13", 13, {"a": 88.0, "b": 44.0})],
        "plain": [_entry("runs/plain_s12", 12, {"a": 89.0, "b": 45.0})],
    }
    earlier = {"rows": converged.summarise(earlier_runs), "command": "python first"}
    earlier_file = tmp_path / "earlier.json"
    earlier_file.write_text(json.dumps(earlier), encoding="utf-8")
    # the folders of the earlier runs are gone; one new seed of camtl was trained here
    _write_finished_run(tmp_path / "camtl_s12", 12, {"a": 92.0, "b": 40.0})
    out = tmp_path / "out.json"
    argv = ["converged.py", "--keep", str(earlier_file), "--out", str(out)]
    argv += ["--row", "camtl", str(tmp_path / "camtl_s12"), str(tmp_path / "camtl_s14")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        assert converged.main() == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert list(result["rows"]) == ["single_task", "camtl", "plain"]  # the earlier order
    camtl = result["rows"]["camtl"]
    # both seeds, ordered by seed; the new one with what the file now keeps of a run
    assert [run["seed"] for run in camtl["runs"]] == [12, 13]
    new = camtl["runs"][0]
    assert new["precision"] == "fp32" and new["starved"] == pytest.approx(0.01)
    assert camtl["dev"]["tasks"] == {"a": pytest.approx(90.0), "b": pytest.approx(42.0)}
    assert camtl["dev"]["tasks_at_or_above_single_task"] == [1, 2]  # a carried reference
    assert result["rows"]["plain"]["runs"][0]["run"] == "runs/plain_s12"
    assert result["earlier_commands"] == ["python first"]
    assert "row camtl" not in capsys.readouterr().err  # one finished run: no warning


def test_keep_row_carries_only_the_rows_named(
    converged: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One row of an earlier results file joins another file's runs; the earlier file's
    other rows (its own single-task runs among them) stay out."""
    earlier_runs = {
        "single_task": [_entry("runs/old/single/a", 12, {"a": 80.0})],
        "camtl_unfrozen": [_entry("runs/old/camtl_unfrozen_s12", 12, {"a": 85.0})],
        "plain": [_entry("runs/old/plain_s12", 12, {"a": 84.0})],
    }
    earlier_file = tmp_path / "earlier.json"
    earlier = {"rows": converged.summarise(earlier_runs), "command": "python first"}
    earlier_file.write_text(json.dumps(earlier), encoding="utf-8")
    _write_finished_run(tmp_path / "single" / "a", 12, {"a": 90.0})
    _write_finished_run(tmp_path / "camtl_unfrozen_s13", 13, {"a": 87.0})
    out = tmp_path / "out.json"
    base = ["converged.py", "--keep", str(earlier_file), "--keep-row", "camtl_unfrozen"]
    argv = [*base, "--out", str(out), "--row", "single_task", str(tmp_path / "single" / "a")]
    argv += ["--row", "camtl_unfrozen", str(tmp_path / "camtl_unfrozen_s13")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        assert converged.main() == 0
        result = json.loads(out.read_text(encoding="utf-8"))
        assert list(result["rows"]) == ["single_task", "camtl_unfrozen"]
        assert [r["run"] for r in result["rows"]["single_task"]["runs"]] == [
            str(tmp_path / "single" / "a")
        ]
        unfrozen = result["rows"]["camtl_unfrozen"]
        assert [r["seed"] for r in unfrozen["runs"]] == [12, 13]
        assert unfrozen["dev"]["mean"] == pytest.approx(86.0)
        # a run of the kept row counts as recorded, one of another row does not
        patch.setattr(sys, "argv", [*base, "--recorded", "camtl_unfrozen_s12"])
        assert converged.main() == 0
        patch.setattr(sys, "argv", [*base, "--recorded", "plain_s12"])
        assert converged.main() == 1
        # a row the file does not have is one clear error, not a silent gap
        patch.setattr(sys, "argv", [*base[:3], "--keep-row", "camtl_unfrozn", "--out", str(out)])
        with pytest.raises(SystemExit, match="no row camtl_unfrozn"):
            converged.main()


def test_keep_from_a_file_without_a_command_records_no_empty_command(
    converged: ModuleType, tmp_path: Path
) -> None:
    earlier_runs = {"camtl": [_entry("runs/camtl_s13", 13, {"a": 88.0, "b": 44.0})]}
    earlier_file = tmp_path / "earlier.json"  # a results file put together by hand
    earlier_file.write_text(json.dumps({"rows": converged.summarise(earlier_runs)}))
    out = tmp_path / "out.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["converged.py", "--keep", str(earlier_file), "--out", str(out)])
        assert converged.main() == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["earlier_commands"] == [] and list(result["rows"]) == ["camtl"]


def test_keep_replaces_an_earlier_record_of_the_same_run_folder(
    converged: ModuleType, tmp_path: Path
) -> None:
    run_dir = tmp_path / "camtl_s12"
    _write_finished_run(run_dir, 12, {"a": 92.0, "b": 40.0})
    stale = {"camtl": [_entry(str(run_dir), 12, {"a": 1.0, "b": 1.0})]}
    fresh = converged.finished_runs({"camtl": [run_dir]})
    merged = converged.carry_over(fresh, {"rows": converged.summarise(stale)})
    assert [run["dev"] for run in merged["camtl"]] == [{"a": 92.0, "b": 40.0}]


def test_table_shows_a_results_file_as_compare_shows_run_folders(
    converged: ModuleType,
) -> None:
    runs = {
        "single_task": [
            _entry("runs/single/a", 12, {"a": 90.0}),
            _entry("runs/single/b", 12, {"b": 50.0}),
        ],
        "camtl": [
            _entry("runs/camtl_s12", 12, {"a": 92.0, "b": 40.0}),
            _entry("runs/camtl_s13", 13, {"a": 88.0, "b": 44.0}),
        ],
        "camtl_mtu": [_entry("runs/camtl_mtu_s12", 12, {"a": 91.0, "b": 52.0})],
    }
    lines = converged.markdown_table({"rows": converged.summarise(runs)}, "dev").splitlines()
    assert lines[0].startswith("| run | a | b | mean | worst | spread | worst / single-task |")
    single, camtl, mtu = (line.split(" | ") for line in lines[2:])
    assert single[0] == "| single-task (2 models)" and single[1:4] == ["90.00", "50.00", "70.00"]
    # seeds as mean ± sd (sd over the two seeds); the worst task named
    assert camtl[0] == "| camtl (2 seeds)" and camtl[1] == "90.00 ± 2.83"
    assert camtl[4] == "42.00 ± 2.83 (b)" and camtl[7] == "1/2"
    assert mtu[0] == "| camtl_mtu_s12" and mtu[7] == "2/2"  # 91 >= 90, 52 >= 50
    assert camtl[9] == "-"  # starved: not recorded for these runs
    with pytest.raises(SystemExit, match="no test scores"):
        converged.markdown_table({"rows": converged.summarise(runs)}, "test")


@pytest.mark.parametrize(
    ("name", "code"),
    [("camtl_s13", 0), ("single_task", 0), ("a", 0), ("camtl_s14", 1), ("plain", 1)],
)
def test_recorded_says_whether_a_results_file_holds_a_row_or_run_of_that_name(
    converged: ModuleType, tmp_path: Path, name: str, code: int
) -> None:
    runs = {
        "single_task": [_entry("runs/single/a", 12, {"a": 90.0})],
        "camtl": [_entry("runs/camtl_s13", 13, {"a": 88.0})],
    }
    results = tmp_path / "converged.json"
    results.write_text(json.dumps({"rows": converged.summarise(runs)}), encoding="utf-8")
    argv = ["converged.py", "--keep", str(results), "--recorded", name]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        assert converged.main() == code


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not a readable results file"), ("{not json", "not a readable"), ("[]", "no 'rows'")],
)
def test_a_bad_results_file_is_one_error_naming_it(
    converged: ModuleType, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "converged.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit, match=f"{path}: {message}"):
        converged.read_results(path)


def test_targets_are_the_finished_single_task_runs_dev_scores_as_yaml(
    converged: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    root = tmp_path / "single_task"
    _write_finished_run(root / "a", 12, {"a": 90.25})
    _write_finished_run(root / "b", 12, {"b": 50.0})
    _write_finished_run(root / "c", 12, {"c": 70.0})
    (root / "c" / "status.json").write_text('{"status": "running"}', encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["converged.py", "--targets", str(root)])
        assert converged.main() == 0
    # score_dro's targets as `--set training.balancer={name: score_dro, targets: ...}` reads
    assert yaml.safe_load(capsys.readouterr().out) == {"a": 90.25, "b": 50.0}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["converged.py", "--targets", str(tmp_path / "none")])
        assert converged.main() == 1
    assert "no finished single-task run" in capsys.readouterr().err


def test_a_run_records_how_its_balancer_weighted_each_task(
    converged: ModuleType, tmp_path: Path
) -> None:
    _write_finished_run(tmp_path / "dro_s12", 12, {"a": 91.0, "b": 50.0})
    _write_finished_run(tmp_path / "equal_s12", 12, {"a": 91.0, "b": 50.0})
    logged = [{"a": 0.5, "b": 0.5}, {"a": 0.3, "b": 0.7}, {"a": 0.1, "b": 0.9}]
    lines = [json.dumps({"step": 50 * (i + 1), "task_weights": w}) for i, w in enumerate(logged)]
    (tmp_path / "dro_s12" / "train_log.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    weights = converged.run_entry(tmp_path / "dro_s12")["loss_weights"]
    assert weights["mean"] == {"a": pytest.approx(0.3), "b": pytest.approx(0.7)}
    assert weights["last"] == {"a": 0.1, "b": 0.9}
    # no train log (a run from before the log, or copied without it): nothing claimed
    assert converged.run_entry(tmp_path / "equal_s12")["loss_weights"] is None
