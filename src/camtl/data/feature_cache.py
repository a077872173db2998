"""Tokenized features cached on disk, so a second run (or `camtl evaluate`) skips encoding.

An entry's key is the sha256 of everything encoding reads: the examples themselves (after
loading, filtering and subsetting), the task spec, the tokenizer's full serialised state and
the library versions. A changed data file, spec or tokenizer therefore gives a new key: an
entry is never served stale, only left unused. Entries are JSON (features hold only ints,
floats, strings, None and lists, so the round trip is exact) written atomically, in
``$CAMTL_CACHE/features/`` (or ``$CAMTL_FEATURE_CACHE_DIR``). ``CAMTL_FEATURE_CACHE=0`` turns
the cache off.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from camtl.data.assets import cache_dir
from camtl.data.tokenize import EncodeResult, encode_examples
from camtl.fileio import atomic_write_text
from camtl.structured import to_dict
from camtl.tasks.spec import TaskSpec

log = logging.getLogger("camtl")
FORMAT = 1
ENV = "CAMTL_FEATURE_CACHE"
DIR_ENV = "CAMTL_FEATURE_CACHE_DIR"
# spec keys that only choose which examples are loaded: the examples are hashed themselves
_SELECTION_KEYS = (
    "source",
    "max_train_examples",
    "max_dev_examples",
    "max_test_examples",
    "train_fraction",
    "cross_fit",
)


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def features_dir() -> Path:
    folder = os.environ.get(DIR_ENV)
    return Path(folder) if folder else cache_dir() / "features"


def tokenizer_fingerprint(tokenizer: Any) -> str | None:
    """sha256 of a fast tokenizer's whole state (vocabulary, normaliser, special tokens,
    truncation side, ...); None for a slow tokenizer, which then is not cached."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    backend_state = json.loads(backend.to_str())
    # truncation and padding are set on the backend by each call (the last call's stay):
    # state of the last use, not of the tokenizer; every call here passes its own
    for transient in ("truncation", "padding"):
        backend_state.pop(transient, None)
    state = {
        "class": type(tokenizer).__name__,
        "backend": backend_state,
        "special": {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
        "padding_side": tokenizer.padding_side,
        "truncation_side": getattr(tokenizer, "truncation_side", None),
        "model_max_length": tokenizer.model_max_length,
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def cache_key(spec: TaskSpec, examples: list[dict], tokenizer_hash: str) -> str:
    import tokenizers
    import transformers

    spec_state = {k: v for k, v in to_dict(spec).items() if k not in _SELECTION_KEYS}
    digest = hashlib.sha256()
    header = {
        "format": FORMAT,
        "tokenizer": tokenizer_hash,
        "spec": spec_state,
        "encoder_code": _encoding_code_hash(),
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    digest.update(json.dumps(examples, sort_keys=True, default=str).encode())
    return digest.hexdigest()


@functools.cache
def _encoding_code_hash() -> str:
    """sha256 of the modules that turn examples into features (this chunking one and every
    task kind's): a change to them is a change to every entry's content, so it is part of
    every key."""
    from camtl.data import tokenize
    from camtl.tasks import kinds

    digest = hashlib.sha256(Path(tokenize.__file__).read_bytes())
    for module in sorted(Path(kinds.__file__).parent.glob("*.py")):
        digest.update(module.read_bytes())
    return digest.hexdigest()


def cached_encode(
    spec: TaskSpec,
    examples: list[dict],
    tokenizer: Any,
    task_id: int,
    fingerprint: str | None = None,
) -> EncodeResult:
    """``encode_examples``, served from the cache when the same input was encoded before.

    ``fingerprint``: the tokenizer's, when the caller computed it already (it takes about a
    tenth of a second for a 30k-word vocabulary)."""
    if not enabled():
        return encode_examples(spec, examples, tokenizer, task_id)
    fingerprint = fingerprint or tokenizer_fingerprint(tokenizer)
    if fingerprint is None:
        return encode_examples(spec, examples, tokenizer, task_id)
    path = features_dir() / f"{cache_key(spec, examples, fingerprint)}.json"
    result = _read(path)
    if result is None:
        # encoded with task id 0 and stored so; the run's task id is set on the way out
        result = encode_examples(spec, examples, tokenizer, 0)
        _write(path, result)
    for feature in result.features:
        feature["task_id"] = task_id
    return result


def _read(path: Path) -> EncodeResult | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return EncodeResult(features=data["features"], truncated=int(data["truncated"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:  # damaged entry: encode again
        log.warning("feature cache entry %s unreadable (%s); encoding again", path, exc)
        return None


def _write(path: Path, result: EncodeResult) -> None:
    try:
        atomic_write_text(
            path,
            json.dumps(
                {"features": result.features, "truncated": result.truncated}, separators=(",", ":")
            ),
        )
    except OSError as exc:  # a read-only or full cache only costs the next run its time
        log.warning("could not write the feature cache entry %s: %s", path, exc)
