"""`camtl report RUN_DIR...`: one self-contained HTML page (tables, and plots inlined as
base64 PNG) for a set of runs: the comparison table, and per run its settings, parameter
counts, dev and test scores, dev curves, task composition over time and, when `camtl
analyze covsim` was run, the covariance-similarity heatmap. Rendered with Jinja2 (escaping
on), so task names and paths cannot break the page."""

from __future__ import annotations

import base64
import json
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from camtl.errors import CamtlError
from camtl.evaluation.compare import comparison_table, load_report
from camtl.fileio import atomic_write_text
from camtl.runfiles import COVSIM_FILE, DEV_CURVES_FILE, LOSS_WEIGHTS_FILE, TASK_SHARES_FILE

FIGURES = (
    (DEV_CURVES_FILE, "dev scores during training"),
    (TASK_SHARES_FILE, "task composition of the batches over time"),
    (LOSS_WEIGHTS_FILE, "the balancer's weight on each task's loss over time"),
    ("covsim.png", "covariance similarity between tasks (eq. 3.7)"),
)


def _scores_table(title: str, report: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for name, entry in report["results"]["tasks"].items():
        primary = entry["primary_metric"]
        others = ", ".join(f"{m} {_fmt(v)}" for m, v in entry["scores"].items() if m != primary)
        baseline = entry.get("baseline")
        rows.append(
            [
                name,
                primary,
                _fmt(entry["scores"].get(primary)),
                others or "-",
                _fmt(baseline.get(primary) if isinstance(baseline, dict) else None),
            ]
        )
    agg = report["results"]["aggregate"]
    rows.append(
        [
            "mean · worst · spread",
            "",
            f"{agg['mean']:.2f}",
            f"worst {agg['worst']:.2f} ({agg['worst_task']}), spread {agg['spread']:.2f}",
            "",
        ]
    )
    return {
        "title": title,
        "rows": rows,
        "header": ["task", "metric", "score", "other metrics", "trivial baseline"],
    }


def _run_section(run_dir: Path, split: str) -> dict[str, Any]:
    report = load_report(run_dir, split)
    info = report.get("run_info", {})
    settings = [
        (
            k,
            ", ".join(f"{t}: {v}" for t, v in info[k].items())
            if isinstance(info[k], dict)
            else info[k],
        )
        for k in (
            "encoder",
            "architecture",
            "sampler",
            "balancer",
            "max_steps",
            "batch_size",
            "precision",
            "wall_time_s",
            "examples_used_total_fraction",
            "longest_unsampled_steps",
            "source_run",
            "init",
            "fraction",
        )
        if info.get(k) is not None
    ]
    tables = [_scores_table(f"{split} scores", report)]
    if split == "dev" and (run_dir / "report_test.json").is_file():
        tables.append(_scores_table("test scores", load_report(run_dir, "test")))
    covsim = run_dir / COVSIM_FILE
    if covsim.is_file():
        data = json.loads(covsim.read_text(encoding="utf-8"))
        tables.append(
            {
                "title": "covariance similarity CovSim_i",
                "header": ["task", "CovSim_i", "rank"],
                "rows": [
                    [t, f"{data['covsim'][t]:.4f}", str(r)]
                    for t, r in zip(data["tasks"], data["ranks"])
                ],
            }
        )
    figures = [
        {"title": title, "data": base64.b64encode((run_dir / name).read_bytes()).decode("ascii")}
        for name, title in FIGURES
        if (run_dir / name).is_file()
    ]
    params = info.get("parameters", {})
    return {
        "name": run_dir.name,
        "path": str(run_dir),
        "command": info.get("command"),
        "settings": settings,
        "tables": tables,
        "figures": figures,
        "parameters": [(k, f"{v:,}" if isinstance(v, int) else v) for k, v in params.items()],
    }


def render_report(
    run_dirs: list[Path],
    split: str = "dev",
    title: str = "camtl experiment report",
    by_seed: bool = False,
) -> str:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    if not run_dirs:
        raise CamtlError("camtl report: name at least one run directory")
    header, rows = comparison_table(run_dirs, split, by_seed)
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    try:
        camtl_version = version("camtl")
    except PackageNotFoundError:
        camtl_version = "(not installed)"
    return env.get_template("report.html.j2").render(
        title=title,
        version=camtl_version,
        split=split,
        generated=time.strftime("%Y-%m-%d %H:%M"),
        comparison={"header": header, "rows": rows},
        runs=[_run_section(d, split) for d in run_dirs],
    )


def write_html_report(
    run_dirs: list[Path],
    output: Path,
    split: str = "dev",
    title: str = "camtl experiment report",
    by_seed: bool = False,
) -> Path:
    """The comparison table (one row per configuration with ``by_seed``), then one
    section per run. ``output`` may replace an earlier HTML page, never another file (a
    run's weights, its report.md)."""
    if output.is_dir():
        raise CamtlError(f"--output {output}: is a folder; name the HTML file to write")
    if output.exists() and output.suffix.lower() not in (".html", ".htm"):
        raise CamtlError(f"--output {output}: exists and is not an HTML page; choose a .html file")
    atomic_write_text(output, render_report(run_dirs, split, title, by_seed))
    return output


def find_chromium() -> str | None:
    """A headless-capable Chromium: $CAMTL_CHROMIUM, or chromium / google-chrome on PATH."""
    import os
    import shutil

    candidates = [
        os.environ.get("CAMTL_CHROMIUM", ""),
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    return next((found for c in candidates if c and (found := shutil.which(c))), None)


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 2400) -> Path:
    """Render ``html`` in headless Chromium and save a PNG of the page."""
    import subprocess
    import tempfile

    browser = find_chromium()
    if browser is None:
        raise CamtlError(
            "no Chromium found for the screenshot (install the Debian package "
            "chromium, or set CAMTL_CHROMIUM to a Chrome/Chromium binary)"
        )
    png = png.absolute()
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: no lock clashes
        result = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png}",
                html.absolute().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if result.returncode != 0 or not png.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise CamtlError(f"{browser}: the screenshot of {html} failed ({last})")
    return png


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
