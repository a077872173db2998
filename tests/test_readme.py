"""The README's face: its first lines are the two commands, and its quickstart config is one
that `camtl train` accepts."""

from __future__ import annotations

import re
from pathlib import Path

from camtl.config import load_config

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_opens_with_the_two_commands() -> None:
    first = README.read_text(encoding="utf-8").splitlines()[:2]
    assert [line.split("#")[0].strip() for line in first] == ["make demo", "make test"]


def test_the_quickstart_config_loads(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block is not None, "the README has no YAML quickstart"
    path = tmp_path / "my_run.yaml"
    path.write_text(block.group(1), encoding="utf-8")
    config = load_config(path)
    assert config.model.architecture == "camtl"
    assert [task.name for task in config.tasks] == ["reviews", "people_places"]
    assert all(task.source.kind == "files" for task in config.tasks)
