"""Models by name from the hub, against the local stand-in for its API: a pushed run comes
down into huggingface_hub's cache and runs from there (``from_pretrained``, ``camtl
predict``, ``evaluate``, ``serve``) with the local run's predictions; ``--revision`` picks a
commit or branch; a local folder of the same spelling wins; offline runs from the cache;
every failure is one line naming the repository and revision; and the model card's commands
work as written."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import camtl
from camtl.cli import main
from camtl.errors import CamtlError
from camtl.modeling import MultiTaskModel
from camtl.testing.cli import assert_user_error, cli_error
from tests.hub_standin import HubStandIn

REPO = "me/tiny-camtl"
INPUTS = [
    {"premise": "the good movie", "hypothesis": "a great film"},
    {"premise": "the bad food", "hypothesis": "john likes paris"},
    {"premise": "mary is very good", "hypothesis": "the dog is awful"},
]


@pytest.fixture(autouse=True)
def hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Online (the suite runs with HF_HUB_OFFLINE=1; the stand-in is local), and a cache of
    this test's own: nothing reaches the user's."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return cache


@pytest.fixture(scope="module")
def local_run(two_task_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared two-task run (camtl push writes its card again)."""
    return Path(shutil.copytree(two_task_run, tmp_path_factory.mktemp("hub") / "run"))


@pytest.fixture(scope="module")
def hub(local_run: Path) -> Any:
    """The stand-in hub, ``REPO`` pushed to it with ``camtl push``."""
    with HubStandIn() as running:
        argv = ["push", str(local_run), REPO, "--endpoint", running.url, "--token", "hf_test"]
        with pytest.MonkeyPatch.context() as patch:
            from huggingface_hub import constants

            patch.setattr(constants, "HF_HUB_OFFLINE", False)
            assert main(argv) == 0
        yield running


@pytest.fixture
def online(hub: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> HubStandIn:
    """``$HF_ENDPOINT`` at the stand-in."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    return hub


@pytest.fixture(scope="module")
def local_predictions(local_run: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """``camtl predict`` of the local run on INPUTS."""
    folder = tmp_path_factory.mktemp("local-predict")
    (folder / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in INPUTS))
    argv = ["predict", str(local_run), "--task", "pairs", "--input", str(folder / "in.jsonl")]
    assert main([*argv, "--output", str(folder / "out.jsonl")]) == 0
    return _read_jsonl(folder / "out.jsonl")


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _same_predictions(got: list[dict], expected: list[dict]) -> None:
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    for a, b in zip(got, expected):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


def _env(hub: HubStandIn, home: Path) -> dict[str, str]:
    """A subprocess's environment: this worktree's camtl, the stand-in hub, a cache in
    ``home``, online."""
    source = str(Path(camtl.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HF_TOKEN")}
    return {
        **env,
        "PYTHONPATH": os.pathsep.join([source, env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(home),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def _run_files(run: Path) -> dict[str, bytes]:
    """A run's files as camtl push uploads them (no resume state, no TensorBoard events)."""
    return {
        p.relative_to(run).as_posix(): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.relative_to(run).parts[0] not in ("checkpoint", "tb")
    }


def test_from_pretrained_by_name_loads_the_pushed_model(
    online: HubStandIn, local_run: Path, hub_cache: Path
) -> None:
    model = MultiTaskModel.from_pretrained(REPO)
    local = MultiTaskModel.from_pretrained(local_run)
    assert model.task_index == local.task_index and model.labels == local.labels
    theirs = local.state_dict()
    assert all(torch.equal(value, theirs[key]) for key, value in model.state_dict().items())
    snapshots = list((hub_cache / "models--me--tiny-camtl" / "snapshots").iterdir())
    assert len(snapshots) == 1 and (snapshots[0] / "model.safetensors").is_file()
    assert not (snapshots[0] / "tb").exists()
    calls = len(online.calls)
    MultiTaskModel.from_pretrained(REPO)  # cached: one look at the branch, no download
    assert [method for method, _ in online.calls[calls:]] == ["HEAD"]


def test_the_model_cards_commands_work_as_written(
    online: HubStandIn,
    local_predictions: list[dict],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Use section of the card on the hub, run as it is: its bash lines as processes
    (``camtl`` as ``python -m camtl.cli``, this checkout's; the pip line installs what is
    installed here already; the serve line on a free port instead of 8000), its Python as a
    script."""
    from camtl.testing.server import ServerProcess

    card = online.repos[REPO]["files"]["README.md"].decode()
    bash = card.split("```bash\n", 1)[1].split("```", 1)[0]
    python = card.split("```python\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line, comments=True) for line in bash.splitlines()]
    assert [c[:2] for c in commands] == [
        ["pip", "install"],
        ["camtl", "predict"],
        ["camtl", "serve"],
    ]
    assert f"from_pretrained({REPO!r})" in python
    env = _env(online, tmp_path / "hf")
    work = tmp_path / "work"
    work.mkdir()
    (work / "inputs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in INPUTS))

    predict = _run([sys.executable, "-m", "camtl.cli", *commands[1][1:]], env, work)
    assert predict.returncode == 0, predict.stderr
    _same_predictions(_read_jsonl(work / "predictions.jsonl"), local_predictions)
    assert f"{REPO} (revision main): commit" in predict.stderr

    script = _run([sys.executable, "-c", python + "print(sorted(model.labels))"], env, work)
    assert script.returncode == 0, script.stderr
    assert script.stdout.strip().splitlines()[-1] == "['pairs', 'scores']"

    serve = commands[2][1:]
    flags = serve[serve.index("--port") + 2 :]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    server = ServerProcess(Path(serve[1]), *flags)  # "camtl serve me/tiny-camtl"
    try:
        status, body, _ = server.call("GET", "/v1/tasks")
        assert status == 200 and [t["name"] for t in body["tasks"]] == ["pairs", "scores"]
        status, body, _ = server.call("POST", "/v1/predict", {"task": "pairs", "inputs": INPUTS})
        assert status == 200
        assert [p["label"] for p in body["predictions"]] == [p["label"] for p in local_predictions]
    finally:
        assert server.stop() == 0


def test_a_revision_picks_that_commit_or_branch(
    online: HubStandIn, local_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = "me/revisions"
    online.add_repo(repo)
    files = _run_files(local_run)
    first = online.commit(repo, files)
    meta = json.loads(files["camtl_model.json"])
    meta["labels"]["pairs"] = ["no", "yes"]  # a second commit renames the labels
    second = online.commit(repo, {"camtl_model.json": json.dumps(meta).encode()})
    online.commit(repo, files, branch="v1")  # a branch back at the first version
    assert MultiTaskModel.from_pretrained(repo).labels["pairs"] == ["no", "yes"]
    assert MultiTaskModel.from_pretrained(repo, revision=first).labels["pairs"] == [
        "different",
        "same",
    ]
    assert MultiTaskModel.from_pretrained(repo, revision="v1").labels["pairs"] == [
        "different",
        "same",
    ]
    assert first != second
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in INPUTS))
    for revision, labels in ((first, {"different", "same"}), (second, {"no", "yes"})):
        out = tmp_path / f"{revision}.jsonl"
        argv = ["predict", repo, "--revision", revision, "--task", "pairs"]
        assert main([*argv, "--input", str(source), "--output", str(out)]) == 0
        assert {p["label"] for p in _read_jsonl(out)} <= labels
    cli_error(
        capsys,
        *("predict", repo, "--revision", "nope", "--task", "pairs"),
        *("--input", str(source), "--output", str(tmp_path / "x.jsonl")),
        parts=(f"{repo} (revision nope): no such branch, tag or commit on {online.url}",),
    )
    cli_error(
        capsys,
        *("predict", str(local_run), "--revision", first, "--task", "pairs"),
        *("--input", str(source), "--output", str(tmp_path / "x.jsonl")),
        parts=(f"{local_run}: a local folder has no revisions",),
    )


def test_errors_are_one_line(
    online: HubStandIn, hub_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(INPUTS[0]) + "\n")
    io = ("--task", "pairs", "--input", str(source), "--output", str(tmp_path / "out.jsonl"))
    cli_error(
        capsys,
        "predict",
        "me/nowhere",
        *io,
        parts=("me/nowhere (revision main): no local folder of that name", "no model repository"),
    )
    online.add_repo("me/not-camtl")
    online.commit("me/not-camtl", {"README.md": b"# a model of another library\n"})
    line = cli_error(
        capsys, "serve", "me/not-camtl", parts=("me/not-camtl (revision main): not a camtl model",)
    )
    assert "camtl_model.json missing" in line
    # refused before anything else came down
    assert not list(hub_cache.glob("models--me--not-camtl/snapshots/*/README.md"))
    cli_error(
        capsys,
        "evaluate",
        "no/such/folder",
        parts=(
            "no/such/folder: not a camtl run directory (no such folder) nor a model on the hub",
        ),
    )
    # as a process: exit 2 and one line
    result = _run(
        [sys.executable, "-m", "camtl.cli", "predict", "me/nowhere", *io],
        _env(online, tmp_path / "hf"),
        tmp_path,
    )
    assert_user_error(result.returncode, result.stderr, "me/nowhere (revision main)")


def test_a_private_repository_needs_the_token(
    online: HubStandIn, local_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    online.add_repo("me/private", private=True)
    online.commit("me/private", _run_files(local_run))
    with pytest.raises(CamtlError, match=r"me/private \(revision main\): no local folder"):
        MultiTaskModel.from_pretrained("me/private")
    assert MultiTaskModel.from_pretrained("me/private", token="hf_test").task_index
    monkeypatch.setenv("HF_TOKEN", "hf_test")  # huggingface_hub's own default
    assert MultiTaskModel.from_pretrained("me/private").task_index


def test_a_local_folder_wins_over_a_repository_of_its_spelling(
    online: HubStandIn, local_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(local_run, tmp_path / REPO)
    meta = json.loads((tmp_path / REPO / "camtl_model.json").read_text())
    meta["labels"]["pairs"] = ["left", "right"]
    (tmp_path / REPO / "camtl_model.json").write_text(json.dumps(meta))
    monkeypatch.chdir(tmp_path)
    calls = len(online.calls)
    assert MultiTaskModel.from_pretrained(REPO).labels["pairs"] == ["left", "right"]
    assert online.calls[calls:] == []


def test_offline_runs_from_the_cache(
    online: HubStandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from huggingface_hub import constants

    MultiTaskModel.from_pretrained(REPO)  # into the cache
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    calls = len(online.calls)
    assert MultiTaskModel.from_pretrained(REPO).task_index == {"pairs": 0, "scores": 1}
    assert online.calls[calls:] == []
    with pytest.raises(CamtlError) as caught:
        MultiTaskModel.from_pretrained(REPO, revision="v2")
    assert str(caught.value) == (
        f"{REPO} (revision v2): no local folder of that name, HF_HUB_OFFLINE is set, and the "
        "cache holds no complete copy"
    )


def test_an_unreachable_hub_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.utils._http as http

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(http.time, "sleep", lambda seconds: None)  # its retries, at once
    with pytest.raises(CamtlError) as caught:
        MultiTaskModel.from_pretrained(REPO)
    message = str(caught.value)
    assert message.startswith(
        f"{REPO} (revision main): no local folder of that name, cannot reach {url}"
    )
    assert message.endswith("and the cache holds no complete copy") and "\n" not in message


def test_evaluate_by_name_writes_its_reports_outside_the_cache(
    online: HubStandIn,
    local_run: Path,
    hub_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(local_run), "--output-dir", "local"]) == 0
    assert main(["evaluate", REPO]) == 0
    assert "reports written to eval-me--tiny-camtl" in capsys.readouterr().out
    by_name = json.loads((tmp_path / "eval-me--tiny-camtl" / "eval_dev.json").read_text())
    local = json.loads((tmp_path / "local" / "eval_dev.json").read_text())
    assert by_name["results"] == local["results"]
    assert by_name["run_info"]["command"] == f"camtl evaluate {REPO}"
    snapshot = next((hub_cache / "models--me--tiny-camtl" / "snapshots").iterdir())
    assert not list(snapshot.glob("eval_*")) and not (local_run / "eval_dev.json").exists()
    commit = snapshot.name
    assert main(["evaluate", REPO, "--revision", commit, "--split", "dev"]) == 0
    assert (tmp_path / f"eval-me--tiny-camtl@{commit}" / "eval_dev.md").is_file()
