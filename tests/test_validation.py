"""camtl.validation: one way to check an option, and the errors it gives on the command
line (one line naming the flag or key, exit status 2)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from camtl.errors import ConfigError
from camtl.testing.cli import cli_error
from camtl.validation import config_key, flag, invalid, positive, require


def test_names_of_flags_and_keys() -> None:
    assert flag("--port", 0) == "--port 0"
    assert flag("--max-wait-ms", -1.5) == "--max-wait-ms -1.5"
    assert flag("--device", "gpu") == "--device 'gpu'"
    assert config_key("tasks[0].doc_stride") == "key 'tasks[0].doc_stride'"
    assert config_key("tasks[0].x", "run.yaml: ") == "run.yaml: key 'tasks[0].x'"


def test_require_raises_a_config_error_naming_the_option() -> None:
    require(True, flag("--port", 1), "never shown")
    with pytest.raises(ConfigError, match=r"^--port 0: must be a positive integer$"):
        positive(flag("--port", 0), 0)
    positive(flag("--port", 1), 1)
    with pytest.raises(ConfigError, match=r"^run.yaml: key 'a.b': must be > 0$"):
        require(0, config_key("a.b", "run.yaml: "), "must be > 0")
    assert str(invalid("--x 1", "why")) == "--x 1: why"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--accept-drop",), "error: --accept-drop: applies to --quantize int8 only"),
        (("--max-drop", "2"), "error: --max-drop: applies to --quantize int8 only"),
        (
            ("--quantize", "int8", "--max-drop", "-1"),
            "error: --max-drop -1.0: must be >= 0 (points)",
        ),
    ],
)
def test_export_drop_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], line: str
) -> None:
    output = tmp_path / "export"
    assert (
        cli_error(capsys, "export", str(tmp_path / "run"), "--output", str(output), *args) == line
    )
    assert not output.exists()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("--port", "0"), "error: --port 0: must be a positive integer"),
        (("--port", "99999"), "error: --port 99999: must be at most 65535"),
        (("--max-queue", "-3"), "error: --max-queue -3: must be a positive integer"),
        (("--max-wait-ms", "-1"), "error: --max-wait-ms -1.0: must be >= 0"),
    ],
)
def test_serve_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], line: str
) -> None:
    pytest.importorskip("uvicorn")
    assert cli_error(capsys, "serve", str(tmp_path / "run"), *args) == line


def test_serve_refuses_a_port_in_use_before_reading_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("uvicorn")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = cli_error(capsys, "serve", str(tmp_path / "no_run"), "--port", str(port))
    assert line.startswith(f"error: --host '127.0.0.1' --port {port}: cannot listen there (")


def test_baseline_tasks_flag_takes_spaces_and_refuses_an_empty_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from camtl.cli import _task_list

    assert _task_list("pairs, scores ,") == ["pairs", "scores"]
    assert _task_list(None) is None
    line = cli_error(capsys, "baseline", "single-task", "any.yaml", "--tasks", " , ")
    assert line == "error: --tasks ' , ': names no task (comma-separated task names)"


@pytest.mark.parametrize(
    ("value", "line"),
    [
        (
            "a.com,,b.com",
            "error: --allowed-hosts 'a.com,,b.com': an empty name (separate names "
            "with single commas)",
        ),
        (
            "https://a.com",
            "error: --allowed-hosts 'https://a.com': 'https://a.com': a host name, not a URL",
        ),
        (
            "a.com:8000",
            "error: --allowed-hosts 'a.com:8000': 'a.com:8000': give the name without a port",
        ),
        (
            "a*.com",
            "error: --allowed-hosts 'a*.com': 'a*.com': '*' stands alone or starts '*.example.com'",
        ),
    ],
)
def test_serve_refuses_a_bad_allowed_hosts_before_reading_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, line: str
) -> None:
    pytest.importorskip("uvicorn")
    assert cli_error(capsys, "serve", str(tmp_path / "no_run"), "--allowed-hosts", value) == line


@pytest.mark.parametrize(
    ("flags", "environment", "line"),
    [
        (
            ("--api-key", ""),
            {},
            "error: --api-key: empty; leave the flag out to serve without a bearer token",
        ),
        (
            ("--api-key", "  "),
            {},
            "error: --api-key: empty; leave the flag out to serve without a bearer token",
        ),
        (
            ("--api-key", "se cret"),
            {},
            "error: --api-key: must be printable ASCII without "
            "spaces (what an Authorization header can carry)",
        ),
        (
            ("--api-key", "clé-secrète"),
            {},
            "error: --api-key: must be printable ASCII without "
            "spaces (what an Authorization header can carry)",
        ),
        (
            (),
            {"CAMTL_API_KEY": " \n"},
            "error: $CAMTL_API_KEY: empty; unset it to serve without a bearer token",
        ),
    ],
)
def test_serve_refuses_a_bearer_token_that_would_check_nothing_or_never_match(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flags: tuple[str, ...],
    environment: dict[str, str],
    line: str,
) -> None:
    pytest.importorskip("uvicorn")
    monkeypatch.delenv("CAMTL_API_KEY", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert cli_error(capsys, "serve", str(tmp_path / "no_run"), *flags) == line


def test_the_bearer_token_comes_from_the_flag_then_the_environment() -> None:
    from camtl.serving.server import resolve_api_key

    assert resolve_api_key("from-flag", {"CAMTL_API_KEY": "from-env"}) == "from-flag"
    assert resolve_api_key(None, {"CAMTL_API_KEY": "from-env"}) == "from-env"
    with pytest.raises(ConfigError, match=r"\$CAMTL_API_KEY: empty; unset it to serve"):
        resolve_api_key(None, {"CAMTL_API_KEY": ""})  # set, to an unset variable's value
    assert resolve_api_key(None, {}) is None
