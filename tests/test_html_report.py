"""`camtl report`: one self-contained HTML page, checked in headless Chromium when present."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from camtl.cli import main
from camtl.evaluation.html_report import find_chromium, render_report
from camtl.testing.runs import fake_run


def test_report_holds_tables_and_inlined_plots(camtl_run: Path, tmp_path: Path) -> None:  # noqa: F811
    assert main(["analyze", "covsim", str(camtl_run), "--max-examples", "20"]) == 0
    single = fake_run(tmp_path, "single_<pairs>", {"pairs": 50.0}, 1000)
    html = render_report([single, camtl_run])
    assert '<h2 id="comparison">' in html
    assert "single-task (1 models)" in html and "tasks &gt;= single-task" in html
    assert "single_&lt;pairs&gt;" in html  # names are escaped, never raw markup
    # dev curves, task composition and covsim heatmap inlined: no file outside the page
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 3
    assert "covariance similarity CovSim_i" in html and "dev scores" in html
    assert 'src="http' not in html and "href=" not in html


def test_report_command_and_bad_input(
    camtl_run: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "page.html"
    assert main(["report", str(camtl_run), "--output", str(out)]) == 0
    assert out.read_text().startswith("<!doctype html>")
    assert main(["report", str(tmp_path / "missing"), "--output", str(out)]) == 2
    assert "no report.json" in capsys.readouterr().err


def test_report_by_seed_gathers_seeds_into_one_row(
    camtl_run: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    import shutil

    import yaml

    again = tmp_path / "run_seed13"
    shutil.copytree(camtl_run, again)
    config = yaml.safe_load((again / "config.yaml").read_text())
    config["seed"] += 1
    (again / "config.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "page.html"
    assert main(["report", str(camtl_run), str(again), "--output", str(out), "--by-seed"]) == 0
    html = out.read_text()
    assert "(2 seeds)" in html and "± 0.00" in html  # same scores: no spread


@pytest.mark.skipif(
    find_chromium() is None, reason="chromium not installed (apt-get install chromium)"
)
def test_report_renders_in_headless_chromium(camtl_run: Path, tmp_path: Path) -> None:  # noqa: F811
    from PIL import Image

    page, shot = tmp_path / "page.html", tmp_path / "page.png"
    assert main(["report", str(camtl_run), "--output", str(page), "--screenshot", str(shot)]) == 0
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 2400)
    # the page drew something: text and plots leave many non-white pixels up top
    top = image.crop((0, 0, 1280, 800))
    assert (np.asarray(top) < 200).sum() > 5000
    dom = subprocess.run(
        [
            find_chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert dom.count("<table") >= 3 and dom.count("<img") >= 2
