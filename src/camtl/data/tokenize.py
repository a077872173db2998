"""Examples -> features: one model input window per feature (see docs/architecture.md).

Each task kind encodes its examples (camtl.tasks.kinds) with batched calls of a fast
tokenizer; this module feeds it chunks. Examples longer than ``spec.max_length`` are cut and
counted (the caller warns); span-QA contexts are not cut but split into overlapping windows.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from camtl.tasks.kinds.encoding import Feature, require_fast
from camtl.tasks.spec import TaskSpec

# Examples per tokenizer call: big enough for the fast tokenizer's parallelism, small
# enough to keep its intermediate objects from piling up on large datasets.
CHUNK_SIZE = 2048

# A fast tokenizer's truncation and padding are state of its Rust backend that every call
# sets before it encodes, so two threads encoding with one tokenizer can each encode under
# the other's settings (an over-long input left uncut). One lock per tokenizer object
# serialises its calls; threads with tokenizers of their own do not wait for each other.
_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def tokenizer_lock(tokenizer: Any) -> threading.Lock:
    """The lock that every encoding call with ``tokenizer`` holds."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(tokenizer)
        if lock is None:
            lock = _LOCKS[tokenizer] = threading.Lock()
        return lock


@dataclass
class EncodeResult:
    """Features of one task's examples and how many examples were cut to max_length."""

    features: list[Feature] = field(default_factory=list)
    truncated: int = 0


def encode_examples(
    spec: TaskSpec, examples: list[dict], tokenizer: Any, task_id: int
) -> EncodeResult:
    """Encode canonical examples of ``spec`` into features (one per model input window)."""
    kind = spec.kind
    if kind.needs_fast_tokenizer:
        require_fast(tokenizer, spec.name, kind.name)
    result = EncodeResult()
    with tokenizer_lock(tokenizer), _gc_paused():
        for start in range(0, len(examples), CHUNK_SIZE):
            features, truncated = kind.encode(spec, examples[start : start + CHUNK_SIZE], tokenizer)
            for feature in features:
                feature["task_id"] = task_id
                feature["example_index"] += start
            result.features.extend(features)
            result.truncated += truncated
    return result


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of small lists.

    Features hold no reference cycles, but their sheer number makes the collector rescan
    the growing heap again and again: pausing it more than halves encoding time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
