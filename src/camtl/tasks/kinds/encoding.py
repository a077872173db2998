"""Tokenizer helpers the task kinds share: model inputs of one row, length capping."""

from __future__ import annotations

from typing import Any

from camtl.errors import CamtlError

Feature = dict[str, Any]
Row = tuple[Any, int]  # (BatchEncoding, index in it)


def require_fast(tokenizer: Any, task_name: str, kind_name: str) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise CamtlError(
            f"task '{task_name}': {kind_name} needs a fast tokenizer "
            f"(word ids and offsets), got {type(tokenizer).__name__}"
        )


def model_inputs(encoding: Any, index: int, example_index: int) -> Feature:
    """The model inputs of row ``index`` of a BatchEncoding (token type ids default to 0)."""
    input_ids = list(encoding["input_ids"][index])
    mask = (
        list(encoding["attention_mask"][index])
        if "attention_mask" in encoding
        else [1] * len(input_ids)
    )
    types = (
        list(encoding["token_type_ids"][index])
        if "token_type_ids" in encoding
        else [0] * len(input_ids)
    )
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "task_id": -1,
        "example_index": example_index,
    }


def encode_capped(
    tokenizer: Any, first: list, second: list | None, max_length: int, **kwargs: Any
) -> tuple[list[Row], int]:
    """Encode without truncation, re-encode only what exceeds ``max_length`` (longest_first).

    Returns one (encoding, index) row per input and the number of inputs that were cut.
    """
    full = tokenizer(first, second, truncation=False, verbose=False, **kwargs)
    rows: list[Row] = [(full, i) for i in range(len(first))]
    long = [i for i, ids in enumerate(full["input_ids"]) if len(ids) > max_length]
    if long:
        cut = tokenizer(
            [first[i] for i in long],
            None if second is None else [second[i] for i in long],
            truncation="longest_first",
            max_length=max_length,
            **kwargs,
        )
        for j, i in enumerate(long):
            rows[i] = (cut, j)
    return rows, len(long)


def encode_texts(
    examples: list[dict], tokenizer: Any, max_length: int
) -> tuple[list[Feature], int]:
    """A text (``text_a``) or a text pair (``text_a``, ``text_b``) per example -> features
    with the model inputs only; the kind adds its label fields."""
    singles = [i for i, ex in enumerate(examples) if ex.get("text_b") is None]
    pairs = [i for i, ex in enumerate(examples) if ex.get("text_b") is not None]
    rows: dict[int, Row] = {}
    truncated = 0
    for group, is_pair in ((singles, False), (pairs, True)):
        if not group:
            continue
        first = [examples[i]["text_a"] for i in group]
        second = [examples[i]["text_b"] for i in group] if is_pair else None
        group_rows, cut = encode_capped(tokenizer, first, second, max_length)
        rows.update(zip(group, group_rows))
        truncated += cut
    return [model_inputs(*rows[i], example_index=i) for i in range(len(examples))], truncated
