"""bench/converged.py, which builds the headline table at convergence: the convergence
test (the dev mean's gain over a run's last 20% of steps) and a row's aggregates (one
system of single-task models against a mean over seeds)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "converged.py"


@pytest.fixture(scope="module")
def converged() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_converged", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_a_row_of_single_task_runs_is_one_system_and_seeds_are_averaged(
    converged: ModuleType,
) -> None:
    single = converged.row_summary(
        "single_task", [_run({"a": 90.0}, 101, 10.0), _run({"b": 50.0}, 102, 20.0)], None
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
    assert dev["relative_worst"]["task"] == "b"
    assert dev["relative_worst"]["percent"] == pytest.approx(84.0)
    assert multi["params_total"] == 110 and multi["training_time_s"] == 6.0
