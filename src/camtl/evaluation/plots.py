"""Training plots: dev curves per task, the sampler's task composition and the balancer's
loss weights.

Figures are drawn on an explicit Agg canvas (never pyplot), so plotting works without a
display, touches no global matplotlib state and is safe to call from any thread.
Files are written atomically: a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from camtl.fileio import atomic_write_bytes

__all__ = ["plot_dev_curves", "plot_heatmap", "plot_task_shares"]

_FIGSIZE = (9.0, 5.0)
_DPI = 110


def plot_dev_curves(history: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Plot each task's primary dev score over steps, plus the mean as a thick line.

    ``history`` records look like ``{"step": 100, "tasks": {task: score}, "mean": ...}``;
    a task missing from a record (or with a non-finite score) leaves a gap. Returns the
    written path, or None when there is nothing to plot.
    """
    records = sorted((r for r in history if "step" in r), key=lambda r: r["step"])
    if not records:
        return None
    steps = [int(r["step"]) for r in records]
    tasks = _task_order(r.get("tasks", {}) for r in records)
    fig, ax = _new_figure()
    for task, color in zip(tasks, _palette(len(tasks))):
        ys = [_finite_or_nan(r.get("tasks", {}).get(task)) for r in records]
        ax.plot(steps, ys, label=task, color=color, linewidth=1.3, marker=_marker(steps))
    if any(r.get("mean") is not None for r in records):
        means = [_finite_or_nan(r.get("mean")) for r in records]
        ax.plot(steps, means, label="mean", color="black", linewidth=3.2, marker=_marker(steps))
    ax.set_xlabel("training step")
    ax.set_ylabel("dev score (primary metric)")
    ax.set_title("Dev curves")
    ax.grid(True, alpha=0.3)
    _legend_outside(ax)
    return _save(fig, path)


def plot_task_shares(
    shares: Sequence[Mapping[str, Any]],
    path: Path,
    *,
    ylabel: str = "share of examples",
    title: str = "Task composition of training batches",
) -> Path | None:
    """Stacked area chart of each task's share of training examples per window of steps.

    Each record ``{"step": int, "shares": {task: fraction}}`` describes the window that ends
    at ``step`` (and starts at the previous record's step, or 0). Shares are normalised to
    sum to 1 per window, so raw counts work too (the loss-weight plot passes the balancer's
    weights, with its own labels). Returns None when there is nothing to plot.
    """
    records = sorted((r for r in shares if "step" in r), key=lambda r: r["step"])
    if not records:
        return None
    tasks = _task_order(r.get("shares", {}) for r in records)
    if not tasks:
        return None
    steps = [int(r["step"]) for r in records]
    xs = [0 if steps[0] > 0 else steps[0], *steps]  # the first window starts at step 0
    fractions = [_normalised(r.get("shares", {}), tasks) for r in records]
    fig, ax = _new_figure()
    lower = [0.0] * len(xs)
    for task, color in zip(tasks, _palette(len(tasks))):
        values = [f[task] for f in fractions]
        upper = [lo + v for lo, v in zip(lower, [values[0], *values])]
        ax.fill_between(xs, lower, upper, step="pre", color=color, label=task, linewidth=0)
        lower = upper
    ax.set_xlim(xs[0], xs[-1] if xs[-1] > xs[0] else xs[0] + 1)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _legend_outside(ax, reverse=True)  # top of the legend = top of the stack
    return _save(fig, path)


def plot_heatmap(
    matrix: Sequence[Sequence[float]], labels: Sequence[str], title: str, path: Path
) -> Path:
    """A labelled square matrix with its values written in the cells (e.g. CovSim)."""
    fig = Figure(figsize=(1.2 + 0.8 * len(labels), 0.8 + 0.7 * len(labels)), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="black" if value > 0.6 else "white",
            )
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _save(fig, path)


def _new_figure() -> tuple[Figure, Axes]:
    """A figure bound to an Agg canvas, with one axes."""
    fig = Figure(figsize=_FIGSIZE, dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _task_order(mappings: Any) -> list[str]:
    """Task names in order of first appearance across records."""
    seen: dict[str, None] = {}
    for mapping in mappings:
        for task in mapping:
            seen.setdefault(str(task), None)
    return list(seen)


def _palette(n: int) -> list[Any]:
    """``n`` distinguishable colours (tab10, or tab20 for more tasks)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _marker(steps: Sequence[int]) -> str | None:
    """Show point markers only when there are few evaluations."""
    return "o" if len(steps) <= 30 else None


def _finite_or_nan(value: Any) -> float:
    """A float for plotting; missing or non-finite values become NaN (a gap)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _normalised(shares: Mapping[str, Any], tasks: Sequence[str]) -> dict[str, float]:
    """Shares for every task, missing ones 0, scaled to sum to 1 (all 0 if the sum is 0)."""
    values = {t: max(0.0, _finite_or_nan(shares.get(t, 0.0))) for t in tasks}
    values = {t: 0.0 if math.isnan(v) else v for t, v in values.items()}
    total = sum(values.values())
    return {t: (v / total if total > 0 else 0.0) for t, v in values.items()}


def _legend_outside(ax: Axes, reverse: bool = False) -> None:
    """A small legend to the right of the axes, if anything was labelled."""
    handles, labels = ax.get_legend_handles_labels()
    if reverse:
        handles, labels = handles[::-1], labels[::-1]
    if handles:
        ax.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize="small",
            frameon=False,
        )


def _save(fig: Figure, path: Path) -> Path:
    """Render ``fig`` as PNG and write it to ``path`` atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return atomic_write_bytes(Path(path), buffer.getvalue())
