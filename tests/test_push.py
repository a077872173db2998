"""`camtl push` against a local stand-in for the hub API: the run goes up whole (weights,
tokenizer, label maps, reports, a model card naming the repository), resume state stays
behind, and an unfinished run or a bad token is one clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from camtl.cli import main
from tests.hub_standin import HubStandIn


@pytest.fixture(autouse=True)
def hub_online(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite runs with HF_HUB_OFFLINE=1; the stand-in hub is local, so allow it here."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="module")
def finished_run(two_task_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared two-task run, so that what these tests write stays here."""
    return Path(shutil.copytree(two_task_run, tmp_path_factory.mktemp("push") / "run"))


def test_a_finished_run_has_a_model_card(finished_run: Path) -> None:
    card = (finished_run / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: camtl\n")
    assert "| pairs | classification | premise, hypothesis | 2 | accuracy |" in card
    assert "camtl serve" in card


def test_push_uploads_the_run_with_a_card_naming_the_repo(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (finished_run / "checkpoint").mkdir(exist_ok=True)  # as if left by a crash: not uploaded
    (finished_run / "checkpoint" / "state.bin").write_bytes(b"x")
    with HubStandIn() as hub:
        argv = ["push", str(finished_run), "me/tiny-camtl", "--endpoint", hub.url]
        assert main([*argv, "--token", "hf_test", "--private"]) == 0
        files = hub.repos["me/tiny-camtl"]["files"]
        assert hub.repos["me/tiny-camtl"]["private"] is True
    assert {
        "model.safetensors",
        "camtl_model.json",
        "config.yaml",
        "tokenizer.json",
        "report.json",
        "README.md",
    } <= set(files)
    assert not any(name.startswith(("checkpoint/", "tb/")) for name in files)
    assert files["model.safetensors"] == (finished_run / "model.safetensors").read_bytes()
    card = files["README.md"].decode()
    assert "# me/tiny-camtl" in card and "camtl serve me/tiny-camtl --port 8000" in card
    assert "MultiTaskModel.from_pretrained('me/tiny-camtl')" in card  # by name (test_hub_models)
    assert json.loads(files["camtl_model.json"])["labels"]["pairs"] == ["different", "same"]
    assert "pushed" in capsys.readouterr().out


def test_push_errors_are_one_line(finished_run: Path, tmp_path: Path, capsys) -> None:
    with HubStandIn() as hub:
        argv = ["push", str(finished_run), "me/x", "--endpoint", hub.url]
        assert main([*argv, "--token", "wrong"]) == 2
        assert "push to me/x" in capsys.readouterr().err
    assert main(["push", str(finished_run), "no-namespace"]) == 2
    assert "expected NAMESPACE/NAME" in capsys.readouterr().err
    (tmp_path / "camtl_model.json").write_text("{}")
    assert main(["push", str(tmp_path), "me/x"]) == 2
    assert "has not completed" in capsys.readouterr().err
