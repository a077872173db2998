"""User-facing errors: one clear line, exit status 2, no traceback."""

from __future__ import annotations


class CamtlError(Exception):
    """An error the user can fix (bad config, bad data file, unknown name).

    The CLI prints ``error: <message>`` on one line and exits with status 2.
    Messages must name the file, row or key at fault.
    """

    exit_code = 2


class ConfigError(CamtlError):
    """Invalid configuration: the message names the key path."""

    @classmethod
    def at(cls, where: str, message: str) -> ConfigError:
        """``message`` prefixed by the file it is about, when known."""
        return cls(f"{where}: {message}" if where else message)


class DataError(CamtlError):
    """Invalid data: the message names the file and row."""
