"""Shared fixtures: a tiny random encoder written once per session, an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from camtl.testing import make_tiny_encoder, make_tiny_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT (hidden 32, 4 layers) saved like a downloaded checkpoint."""
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    return make_tiny_tokenizer(tmp_path_factory.mktemp("tiny-tok"))
