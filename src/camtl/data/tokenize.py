"""Examples -> features: one model input window per feature (see docs/architecture.md).

Every task type is encoded with batched calls of a fast tokenizer. Examples longer than
``spec.max_length`` are cut and counted (the caller warns); span-QA contexts are not cut but
split into overlapping windows of ``spec.doc_stride`` tokens.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from camtl.constants import IGNORE_INDEX
from camtl.errors import CamtlError
from camtl.tasks.spec import TaskSpec, TaskType

# Examples per tokenizer call: big enough for the fast tokenizer's parallelism, small
# enough to keep its intermediate objects from piling up on large datasets.
CHUNK_SIZE = 2048

Feature = dict[str, Any]
Row = tuple[Any, int]  # (BatchEncoding, index in it)


@dataclass
class EncodeResult:
    """Features of one task's examples and how many examples were cut to max_length."""

    features: list[Feature] = field(default_factory=list)
    truncated: int = 0


def encode_examples(
    spec: TaskSpec, examples: list[dict], tokenizer: Any, task_id: int
) -> EncodeResult:
    """Encode canonical examples of ``spec`` into features (one per model input window)."""
    encoder = _ENCODERS[TaskType(spec.type)]
    if spec.type in (TaskType.TOKEN_TAGGING, TaskType.SPAN_QA):
        _require_fast(tokenizer, spec)
    result = EncodeResult()
    with _gc_paused():
        for start in range(0, len(examples), CHUNK_SIZE):
            features, truncated = encoder(spec, examples[start : start + CHUNK_SIZE], tokenizer)
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


def _require_fast(tokenizer: Any, spec: TaskSpec) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise CamtlError(
            f"task '{spec.name}': {spec.type.value} needs a fast tokenizer "
            f"(word ids and offsets), got {type(tokenizer).__name__}"
        )


def _inputs(encoding: Any, index: int, example_index: int) -> Feature:
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


def _encode_capped(
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


# ----------------------------------------------------------------------------- sequences


def _encode_sequences(
    spec: TaskSpec, examples: list[dict], tokenizer: Any
) -> tuple[list[Feature], int]:
    """Classification and regression: a text or a text pair and one label."""
    singles = [i for i, ex in enumerate(examples) if ex.get("text_b") is None]
    pairs = [i for i, ex in enumerate(examples) if ex.get("text_b") is not None]
    rows: dict[int, Row] = {}
    truncated = 0
    for group, is_pair in ((singles, False), (pairs, True)):
        if not group:
            continue
        first = [examples[i]["text_a"] for i in group]
        second = [examples[i]["text_b"] for i in group] if is_pair else None
        group_rows, cut = _encode_capped(tokenizer, first, second, spec.max_length)
        rows.update(zip(group, group_rows))
        truncated += cut
    cast = float if spec.type == TaskType.REGRESSION else int
    features = []
    for i, example in enumerate(examples):
        feature = _inputs(*rows[i], example_index=i)
        label = example.get("label")
        feature["label"] = None if label is None else cast(label)
        features.append(feature)
    return features, truncated


# ----------------------------------------------------------------------------- tagging


def _encode_tagging(
    spec: TaskSpec, examples: list[dict], tokenizer: Any
) -> tuple[list[Feature], int]:
    """Token tagging: words in, the tag on each word's first sub-token, -100 elsewhere."""
    words = [list(ex["tokens"]) for ex in examples]
    rows, truncated = _encode_capped(
        tokenizer, words, None, spec.max_length, is_split_into_words=True
    )
    features = []
    for i, (example, (encoding, row)) in enumerate(zip(examples, rows)):
        feature = _inputs(encoding, row, example_index=i)
        word_ids = encoding.word_ids(row)
        feature["tag_labels"] = _first_subtoken_labels(word_ids, example.get("tags"))
        feature["word_ids"] = list(word_ids)
        features.append(feature)
    return features, truncated


def _first_subtoken_labels(word_ids: Sequence[int | None], tags: Sequence[int] | None) -> list[int]:
    labels = []
    previous = None
    for word in word_ids:
        if word is None or word == previous or tags is None:
            labels.append(IGNORE_INDEX)
        else:
            labels.append(int(tags[word]))
        previous = word
    return labels


# ----------------------------------------------------------------------------- span QA


def _encode_span_qa(
    spec: TaskSpec, examples: list[dict], tokenizer: Any
) -> tuple[list[Feature], int]:
    """Span QA: question + context windows with stride, answer token positions, offsets."""
    room = spec.max_length - tokenizer.num_special_tokens_to_add(pair=True)
    question_limit, stride = _qa_budget(room, spec.doc_stride)
    questions, truncated = _cap_questions(
        tokenizer, [ex["question"] for ex in examples], question_limit
    )
    encoding = tokenizer(
        questions,
        [ex["context"] for ex in examples],
        truncation="only_second",
        max_length=spec.max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    features = []
    for row, example_index in enumerate(encoding["overflow_to_sample_mapping"]):
        feature = _inputs(encoding, row, example_index=int(example_index))
        offsets = [
            list(span) if sequence == 1 else None
            for span, sequence in zip(encoding["offset_mapping"][row], encoding.sequence_ids(row))
        ]
        answers = examples[example_index].get("answers") or []
        start, end = _answer_positions(answers[0] if answers else None, offsets)
        feature.update(start_position=start, end_position=end, offsets=offsets)
        features.append(feature)
    return features, truncated


def _qa_budget(room: int, doc_stride: int) -> tuple[int, int]:
    """Most question tokens and the stride that fit ``room`` non-special tokens.

    The tokenizer needs more context tokens per window than the stride. Questions get what
    the spec's stride leaves (at least a quarter of the room); the stride shrinks only when
    it would not leave that quarter.
    """
    question_limit = max(room - doc_stride - 1, room // 4, 1)
    return question_limit, max(0, min(doc_stride, room - question_limit - 1))


def _cap_questions(tokenizer: Any, questions: list[str], limit: int) -> tuple[list[str], int]:
    """Cut questions to ``limit`` tokens (at a token's character end); returns the count cut."""
    questions = list(questions)
    cut: set[int] = set()
    todo = list(range(len(questions)))
    while todo:  # usually one pass; a second checks that re-tokenised cuts fit
        encoding = tokenizer(
            [questions[i] for i in todo],
            add_special_tokens=False,
            return_offsets_mapping=True,
            verbose=False,
        )
        still_long = []
        for offsets, i in zip(encoding["offset_mapping"], todo):
            if len(offsets) <= limit:
                continue
            end = offsets[limit - 1][1]
            if end >= len(questions[i]):  # must shorten, or the next pass would loop forever
                end = min(offsets[limit - 1][0], len(questions[i]) - 1)
            questions[i] = questions[i][:end]
            cut.add(i)
            still_long.append(i)
        todo = still_long
    return questions, len(cut)


def _answer_positions(
    answer: dict | None, offsets: Sequence[Sequence[int] | None]
) -> tuple[int, int]:
    """Token indices of ``answer`` if it lies fully in this window's context, else (0, 0)."""
    if not answer or not answer.get("text"):
        return 0, 0
    start_char = int(answer["start"])
    end_char = start_char + len(answer["text"])
    context = [i for i, span in enumerate(offsets) if span is not None]
    if not context or offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return 0, 0
    start = max(i for i in context if offsets[i][0] <= start_char)
    end = min(i for i in context if offsets[i][1] >= end_char)
    return (start, end) if start <= end else (0, 0)


_ENCODERS: dict[TaskType, Callable[[TaskSpec, list[dict], Any], tuple[list[Feature], int]]] = {
    TaskType.CLASSIFICATION: _encode_sequences,
    TaskType.REGRESSION: _encode_sequences,
    TaskType.TOKEN_TAGGING: _encode_tagging,
    TaskType.SPAN_QA: _encode_span_qa,
}
