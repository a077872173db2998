"""One way to check a user's option, on the command line or in a config file.

``require(condition, what, message)`` raises ``ConfigError("WHAT: MESSAGE")`` unless the
condition holds; ``what`` names the option as the user wrote it: a flag and its value
(``flag("--port", 0)`` -> ``--port 0``) or a config key, after the file it is in
(``config_key("tasks[0].doc_stride", prefix)`` -> ``run.yaml: key 'tasks[0].doc_stride'``).
``invalid`` makes the same error for a ``raise`` of one's own (where a type checker must
see that the code after it is not reached), and ``positive`` is the commonest check.

    require(port >= 1, flag("--port", port), "must be a positive integer")
    -> error: --port 0: must be a positive integer
"""

from __future__ import annotations

from camtl.errors import ConfigError


def flag(name: str, value: object) -> str:
    """A command-line flag with the value given: ``--port 0``, ``--device 'gpu'``."""
    return f"{name} {value!r}" if isinstance(value, str) else f"{name} {value}"


def config_key(path: str, prefix: str = "") -> str:
    """A config key, after ``prefix`` (``"FILE: "`` or empty): ``key 'tasks[0].x'``."""
    return f"{prefix}key '{path}'"


def invalid(what: str, message: str) -> ConfigError:
    """The error for the option ``what`` (a ``flag`` or a ``config_key``): ``WHAT: MESSAGE``."""
    return ConfigError(f"{what}: {message}")


def require(condition: object, what: str, message: str) -> None:
    """Raise ``invalid(what, message)`` unless ``condition`` holds."""
    if not condition:
        raise invalid(what, message)


def positive(what: str, value: float) -> None:
    """``value`` is at least 1 (counts, sizes, ports)."""
    require(value >= 1, what, "must be a positive integer")


def count(what: str, value: object) -> None:
    """``value`` is a whole number >= 1 (a batch size given in Python as on the CLI)."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    require(whole and value >= 1, what, "must be a positive integer")  # type: ignore[operator]
