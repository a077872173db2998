"""Shared fixtures: a tiny random encoder written once per session, an isolated cache, tiny
trained runs, and the scripts under bench/ and experiments/ loaded as modules. Helpers
that are not fixtures live in camtl.testing; no test module imports another."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from camtl.testing import make_tiny_encoder, make_tiny_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist each worker (and the servers and ranks it starts) gets its share
    of the cores, so that workers do not oversubscribe the machine with torch's threads."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


_share_the_cores_between_workers()


@pytest.fixture(autouse=True, scope="session")
def isolated_feature_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tokenized-feature cache entries of the suite go to a temporary folder."""
    os.environ["CAMTL_FEATURE_CACHE_DIR"] = str(tmp_path_factory.mktemp("features"))


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT (hidden 32, 4 layers) saved like a downloaded checkpoint."""
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def served_run(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    """A tiny run with a task of every kind, in fp32 so that served and offline
    predictions match (shared by the serving tests)."""
    from camtl.testing.runs import train_kinds_run

    return train_kinds_run(tmp_path_factory.mktemp("serve"), tiny_encoder_dir, mixed_precision="no")


@pytest.fixture(scope="session")
def two_task_run(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    """A tiny plain run of two tasks (pairs, scores), two steps, the default precision."""
    import yaml

    from camtl.cli import main
    from camtl.testing.runs import write_config, write_task_files

    root = tmp_path_factory.mktemp("two_tasks")
    write_task_files(root)
    path = write_config(root, tiny_encoder_dir, max_steps=2, eval_every=2)
    config = yaml.safe_load(path.read_text())
    config["tasks"] = config["tasks"][:2]
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def camtl_run(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    """A tiny CA-MTL run of three tasks (pairs, scores, ner), with ``new_task.yaml`` beside
    it: the pairs data under another name, a task to add (one run per test module)."""
    import yaml

    from camtl.cli import main
    from camtl.testing.runs import write_config, write_task_files

    root = tmp_path_factory.mktemp("transfer")
    write_task_files(root)
    path = write_config(root, tiny_encoder_dir, max_steps=4, eval_every=4, log_every=2)
    config = yaml.safe_load(path.read_text())
    config["model"].update(architecture="camtl", camtl={"max_length": 32})
    config["tasks"] = config["tasks"][:3]  # pairs, scores, ner
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    # the new task: same data and labels as "pairs" under another name (its head is reusable)
    new = {
        "name": "pairs_new",
        "type": "classification",
        "text_columns": ["premise", "hypothesis"],
        "label_column": "label",
        "source": {"paths": {"train": "pairs.jsonl"}},
    }
    (root / "new_task.yaml").write_text(yaml.safe_dump(new))
    return root / "run"


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    return make_tiny_tokenizer(tmp_path_factory.mktemp("tiny-tok"))


def _script_loader(folder: str) -> Callable[[str], ModuleType]:
    """Loads FOLDER/NAME.py as a module (bench/ and experiments/ are scripts, not packages).
    The folder goes on sys.path, as it does for a script run from there, so that one script
    can import another."""
    scripts = Path(__file__).resolve().parent.parent / folder
    if str(scripts) not in sys.path:
        sys.path.append(str(scripts))

    def load(name: str) -> ModuleType:
        path = scripts / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"{folder}_{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def bench_script() -> Callable[[str], ModuleType]:
    """Loads bench/NAME.py (the product's benchmarks) as a module."""
    return _script_loader("bench")


@pytest.fixture(scope="session")
def experiment_script() -> Callable[[str], ModuleType]:
    """Loads experiments/NAME.py (the research drivers) as a module."""
    return _script_loader("experiments")
