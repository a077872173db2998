"""Checks of the CLI's user errors for the test suite: exit status 2 and one stderr line
``error: ...``, no traceback (the helpers several test modules share)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from camtl.cli import main

if TYPE_CHECKING:
    import pytest


def assert_user_error(code: int, err: str, *parts: str) -> str:
    """Exit 2 and exactly one stderr line ``error: ...`` holding every one of ``parts``."""
    assert code == 2, err
    assert "Traceback" not in err, err
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    line = err.rstrip("\n")
    assert line.startswith("error: "), line
    for part in parts:
        assert part in line, f"{part!r} not in {line!r}"
    return line


def cli_error(capsys: pytest.CaptureFixture[str], *args: str, parts: tuple[str, ...] = ()) -> str:
    """``camtl ARGS`` run in-process, checked to fail as a user error; its error line."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out
    return assert_user_error(code, err, *parts)
