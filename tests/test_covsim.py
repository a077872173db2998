"""Covariance similarity (eq. 3.7): a case computed by hand, and `camtl analyze covsim`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from camtl.analysis.covsim import covariance_factor, covsim_matrix, task_covsim
from camtl.cli import main


def test_hand_computed_case() -> None:
    # X1 = diag(2, 1): X^T X = diag(4, 1), eigenvalues 4 and 1, 99% of 5 needs both: A1 =
    # diag(2, 1). X2 = [1, 0]: X^T X = diag(1, 0), rank 1: A2 = [[1], [0]].
    # A1^T A2 = [[2], [0]], so CovSim = 2 / (sqrt(5) * 1).
    a1 = covariance_factor(np.array([[2.0, 0.0], [0.0, 1.0]]))
    a2 = covariance_factor(np.array([[1.0, 0.0]]))
    assert a1.shape == (2, 2) and a2.shape == (2, 1)
    matrix = covsim_matrix([a1, a2])
    assert matrix[0, 1] == pytest.approx(2 / math.sqrt(5))
    assert matrix[1, 0] == pytest.approx(matrix[0, 1])
    # a third task orthogonal to the second: similarity 0 with it
    a3 = covariance_factor(np.array([[0.0, 3.0]]))
    matrix = covsim_matrix([a1, a2, a3])
    assert matrix[1, 2] == pytest.approx(0.0)
    assert matrix[0, 2] == pytest.approx(3 / (math.sqrt(5) * 3))
    assert task_covsim(matrix)[1] == pytest.approx((2 / math.sqrt(5) + 0.0) / 2)


def test_rank_keeps_99_percent_of_the_eigenvalues() -> None:
    x = np.diag([9.0, 1.0, 0.1])  # eigenvalues 81, 1, 0.01: 81 / 82.01 < 0.99 <= 82 / 82.01
    assert covariance_factor(x).shape[1] == 2
    assert covariance_factor(x, energy=0.9).shape[1] == 1
    # with itself: ||D||_F / trace(D) for the kept eigenvalues D (1 only for rank 1)
    assert covsim_matrix([covariance_factor(x)] * 2)[0, 1] == pytest.approx(math.hypot(81, 1) / 82)
    line = covariance_factor(np.array([[1.0, 2.0], [2.0, 4.0]]))
    assert covsim_matrix([line, line])[0, 1] == pytest.approx(1.0)


def test_analyze_covsim_command(camtl_run: Path) -> None:  # noqa: F811
    assert main(["analyze", "covsim", str(camtl_run), "--max-examples", "20"]) == 0
    result = json.loads((camtl_run / "covsim.json").read_text())
    assert result["tasks"] == ["pairs", "scores", "ner"]
    matrix = np.array(result["matrix"])
    assert matrix.shape == (3, 3) and (matrix > 0).all() and (matrix <= 1 + 1e-6).all()
    assert np.allclose(matrix, matrix.T, atol=1e-4)
    covsim = [(matrix[i].sum() - matrix[i, i]) / 2 for i in range(3)]
    assert list(result["covsim"].values()) == pytest.approx(covsim, abs=1e-3)
    assert (camtl_run / "covsim.png").stat().st_size > 1000
