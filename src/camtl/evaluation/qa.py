"""Span-QA post-processing: per-window start/end logits -> one answer string per example."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Span = tuple[float, int, int]  # (score, start char, end char)


def postprocess_span_predictions(
    examples: Sequence[dict[str, Any]],
    features: Sequence[dict[str, Any]],
    start_logits: Sequence[Any],
    end_logits: Sequence[Any],
    n_best: int = 20,
    max_answer_length: int = 30,
) -> list[str]:
    """The best-scoring non-empty context span of each example over all its windows.

    ``features`` are the span-QA features of ``examples`` (``example_index`` and ``offsets``
    as made by ``encode_examples``); ``start_logits[i]``/``end_logits[i]`` belong to
    ``features[i]`` and may be padded past its length. Examples with no valid span get "".
    """
    if not len(features) == len(start_logits) == len(end_logits):
        raise ValueError(
            f"postprocess_span_predictions: {len(features)} features but "
            f"{len(start_logits)} start and {len(end_logits)} end logit rows"
        )
    best: list[Span | None] = [None] * len(examples)
    for feature, starts, ends in zip(features, start_logits, end_logits):
        span = best_span(feature["offsets"], starts, ends, n_best, max_answer_length)
        index = feature["example_index"]
        if span is not None and (best[index] is None or span[0] > best[index][0]):
            best[index] = span
    return [
        "" if span is None else example["context"][span[1] : span[2]]
        for example, span in zip(examples, best)
    ]


def best_span(
    offsets: Sequence[Sequence[int] | None],
    start_logits: Any,
    end_logits: Any,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> Span | None:
    """Best (score, start char, end char) in one window, or None if it has no valid span.

    Candidates are the ``n_best`` highest start and end logits among context tokens; a span
    needs start <= end, at most ``max_answer_length`` tokens and a non-empty text.
    """
    context = np.array([i for i, span in enumerate(offsets) if span is not None], dtype=int)
    starts = np.asarray(start_logits, dtype=np.float64)[: len(offsets)]
    ends = np.asarray(end_logits, dtype=np.float64)[: len(offsets)]
    context = context[context < min(len(starts), len(ends))]
    if context.size == 0:
        return None
    top_starts = context[np.argsort(-starts[context], kind="stable")[:n_best]]
    top_ends = context[np.argsort(-ends[context], kind="stable")[:n_best]]
    start_chars = np.array([offsets[i][0] for i in top_starts])
    end_chars = np.array([offsets[i][1] for i in top_ends])
    # all (start, end) pairs at once: rows are starts, columns ends
    scores = starts[top_starts][:, None] + ends[top_ends][None, :]
    width = top_ends[None, :] - top_starts[:, None]
    valid = (width >= 0) & (width < max_answer_length) & (end_chars[None, :] > start_chars[:, None])
    candidates = np.flatnonzero(valid)
    if candidates.size == 0:
        return None
    best = candidates[np.argmax(scores.ravel()[candidates])]
    row, column = np.unravel_index(best, scores.shape)
    return float(scores[row, column]), int(start_chars[row]), int(end_chars[column])
