"""Writing files so that a reader (or a kill midway) never sees half a file, and the JSONL
logs a run appends to. Every module that writes a file camtl owns goes through here."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """A temporary path next to ``path`` for a writer that needs a file name (safetensors,
    a tokenizer); renamed into place when the block ends without error, removed if not."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; our files are meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file next to ``path``, then rename it into place."""
    with atomic_target(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One JSON line appended to a run's log (metrics.jsonl, train_log.jsonl)."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def read_jsonl(path: Path, torn_tail: bool = False) -> list[dict[str, Any]]:
    """A run's JSONL log as a list ([] when the file does not exist yet). User data files
    are read by camtl.data.sources instead, which names bad rows. ``torn_tail``: a last line
    that does not parse (a kill or a full disk mid-append) is left out."""
    if not path.is_file():
        return []
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    if torn_tail and lines:
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            lines.pop()
    return [json.loads(line) for line in lines]


def check_apart(source: Path, output: Path, flag_name: str) -> None:
    """Refuse an output folder that is ``source``, holds it (replacing the output would
    delete the source) or lies inside it (the source run is never written to)."""
    from camtl.errors import CamtlError

    src, out = source.resolve(), output.resolve()
    if out == src:
        raise CamtlError(f"{flag_name} {output}: is the source run {source}; choose another")
    if out in src.parents:
        raise CamtlError(f"{flag_name} {output}: holds the source run {source}; choose another")
    if src in out.parents:
        raise CamtlError(f"{flag_name} {output}: is inside the source run {source}; choose another")
    if output.exists() and not output.is_dir():
        raise CamtlError(f"{flag_name} {output}: is a file, not a folder")
