"""Extractive question answering: the answer is a span of the context.

Contexts are not cut but split into windows that overlap by ``doc_stride`` tokens (unset:
half of ``max_length``); a window's answer is its best-scoring context span, an example's
the best over its windows.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from camtl.constants import IGNORE_INDEX
from camtl.errors import DataError
from camtl.tasks.kinds import records
from camtl.tasks.kinds.base import (
    BatchField,
    KindSample,
    TaskKind,
    TaskSpec,
    entropy,
    register_kind,
)
from camtl.tasks.kinds.classification import check_lengths
from camtl.tasks.kinds.encoding import model_inputs
from camtl.tasks.kinds.heads import TaskHead, soft_cross_entropy
from camtl.validation import config_key, require

# ----------------------------------------------------------------------------- metrics

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _answer_f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:  # both empty: a correct "no answer"
        return float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(pred_tokens)
    recall = common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _best_over_golds(
    score: Callable[[str, str], float],
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
) -> float:
    check_lengths(predictions, references)
    total = 0.0
    for prediction, golds in zip(predictions, references):
        total += max(score(prediction, gold) for gold in (list(golds) or [""]))
    return 100.0 * total / len(references)


def exact_match(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """SQuAD exact match: normalised prediction equals any normalised gold answer."""
    return _best_over_golds(
        lambda p, g: float(normalize_answer(p) == normalize_answer(g)), predictions, references
    )


def squad_f1(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """SQuAD F1: bag-of-tokens overlap with the best-matching gold answer, averaged. An
    answer that normalises to nothing against a gold one that does too (a "no answer", or
    "The") scores 1, as SQuAD v2.0's evaluation does; v1.1's scored it 0."""
    return _best_over_golds(_answer_f1, predictions, references)


# ----------------------------------------------------------------------------- records


def _answer_pairs(record: records.Record, column: str) -> list[tuple[Any, Any]]:
    """(text, start) pairs from ``{"text": [...], "answer_start": [...]}``, a list of
    ``{"text", "answer_start" | "start"}`` or a list of answer strings (start -1: the first
    place the text occurs); a JSON string (a CSV cell) is parsed first."""
    value = records.field(record, column)
    where = records.where(record)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(f"{where}: column '{column}' is not valid JSON answers") from None
    if isinstance(value, dict) and "text" in value:
        texts, starts = value.get("text"), value.get("answer_start", value.get("start"))
        if not isinstance(texts, list):
            texts, starts = [texts], [starts]
        if not isinstance(starts, list) or len(starts) != len(texts):
            raise DataError(
                f"{where}: column '{column}' needs as many 'answer_start' values as answer texts"
            )
        return list(zip(texts, starts))
    if isinstance(value, list) and all(isinstance(a, dict) for a in value):
        return [(a.get("text"), a.get("answer_start", a.get("start"))) for a in value]
    if isinstance(value, list) and all(isinstance(a, str) for a in value):
        return [(text, -1) for text in value]  # no offsets: found by searching the context
    raise DataError(
        f"{where}: column '{column}' must hold answers like "
        '{"text": [...], "answer_start": [...]}'
    )


def _locate(context: str, text: str, start: int) -> int | None:
    """``start`` if the answer is there, else the nearest place the text occurs."""
    if start >= 0 and context[start : start + len(text)] == text:
        return start
    found, position = [], context.find(text)
    while position != -1:
        found.append(position)
        position = context.find(text, position + 1)
    return min(found, key=lambda p: abs(p - start)) if found else None


def _answers(record: records.Record, column: str, context: str) -> list[dict[str, Any]]:
    answers = []
    where = records.where(record)
    for text, start in _answer_pairs(record, column):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: empty answer text in column '{column}'")
        try:
            offset = int(start)
        except (TypeError, ValueError):
            raise DataError(
                f"{where}: answer start {start!r} in column '{column}' is not an integer"
            ) from None
        located = _locate(context, text, offset)
        if located is None:
            raise DataError(
                f"{where}: answer {text[:60]!r} (offset {offset}) is not in the context"
            )
        # spaces around an answer are not part of it: a token layout that starts no token on
        # a space would otherwise take in the word before (or after) as gold
        located += len(text) - len(text.lstrip())
        answers.append({"text": text.strip(), "start": located})
    return answers


# ----------------------------------------------------------------------------- encoding


def doc_stride(spec: TaskSpec) -> int:
    """The spec's ``doc_stride``, or half its ``max_length`` when the key is unset: always
    between 1 and max_length - 1 (max_length is at least 8), and ``qa_budget`` shrinks it
    further when a long question leaves less context."""
    return spec.max_length // 2 if spec.doc_stride is None else spec.doc_stride


def qa_budget(room: int, doc_stride: int) -> tuple[int, int]:
    """Most question tokens and the stride that fit ``room`` non-special tokens.

    The tokenizer needs more context tokens per window than the stride. Questions get what
    the spec's stride leaves (at least a quarter of the room); the stride shrinks only when
    it would not leave that quarter.
    """
    question_limit = max(room - doc_stride - 1, room // 4, 1)
    return question_limit, max(0, min(doc_stride, room - question_limit - 1))


def _trimmed(context: str, span: Sequence[int]) -> list[int] | None:
    """A context token's characters without the spaces its offsets may hold (SentencePiece,
    byte-level BPE without trimming); None for a token of spaces alone, which can neither
    start nor end an answer."""
    start, end = span
    text = context[start:end]
    start, end = start + len(text) - len(text.lstrip()), end - len(text) + len(text.rstrip())
    return [start, end] if end > start else None


def window_groups(lengths: list[int], room: int, stride: int) -> dict[int, list[int]]:
    """The examples by the stride their windows take: ``stride`` unless a long question
    leaves so little context that windows overlapping by it would move on by less than a
    quarter of the context each (a 60-token question, 65 context tokens and a stride of
    64 moved one token a window: hundreds of windows for one passage). Decided by the
    example's own question (``lengths``: its tokens), so its windows never depend on what
    it is batched with."""
    groups: dict[int, list[int]] = {}
    for i, length in enumerate(lengths):
        context = room - length
        groups.setdefault(min(stride, context - max(1, context // 4)), []).append(i)
    return groups


def cap_questions(
    tokenizer: Any, questions: list[str], limit: int
) -> tuple[list[str], int, list[int]]:
    """Cut questions to ``limit`` tokens (at a token's character end); returns them, the
    count cut, and each one's tokens."""
    questions = list(questions)
    lengths = [0] * len(questions)
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
                lengths[i] = len(offsets)
                continue
            end = offsets[limit - 1][1]
            if end >= len(questions[i]):  # must shorten, or the next pass would loop forever
                end = min(offsets[limit - 1][0], len(questions[i]) - 1)
            questions[i] = questions[i][:end]
            cut.add(i)
            still_long.append(i)
        todo = still_long
    return questions, len(cut), lengths


def answer_positions(
    answer: dict | None, offsets: Sequence[Sequence[int] | None]
) -> tuple[int, int]:
    """Token indices of ``answer`` if it lies fully in this window's context, else (0, 0)."""
    if not answer or not answer.get("text"):
        return 0, 0
    start_char = int(answer["start"])
    end_char = start_char + len(answer["text"])
    context = [(i, span) for i, span in enumerate(offsets) if span is not None]
    if not context or context[0][1][0] > start_char or context[-1][1][1] < end_char:
        return 0, 0
    start = max(i for i, span in context if span[0] <= start_char)
    end = min(i for i, span in context if span[1] >= end_char)
    return (start, end) if start <= end else (0, 0)


# ----------------------------------------------------------------------------- decoding

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
        SpanAnswer("", -1) if span is None else _answer_at(example["context"], span[1], span[2])
        for example, span in zip(examples, best)
    ]


class SpanAnswer(str):
    """A predicted answer: its text (what metrics read, a str) and where it starts in the
    context (``answer_start``; -1: none). The text alone could stand at several places."""

    start: int

    def __new__(cls, text: str, start: int) -> SpanAnswer:
        answer = super().__new__(cls, text)
        answer.start = start
        return answer


def _answer_at(context: str, start: int, end: int) -> SpanAnswer:
    """The context's characters start..end without the spaces around them (a token whose
    offsets hold the space before its word can begin a span)."""
    text = context[start:end]
    stripped = text.strip()
    return SpanAnswer(stripped, start + len(text) - len(text.lstrip()) if stripped else -1)


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


# ----------------------------------------------------------------------------- the kind


class SpanHead(TaskHead):
    """Start and end logits per token; padding positions are masked out."""

    def __init__(self, hidden_size: int, num_outputs: int, dropout: float, pooling: str) -> None:
        super().__init__(hidden_size, 2, dropout, pooling)
        self.out = nn.Linear(hidden_size, 2)

    def forward(self, hidden, mask, inputs=None, generator=None):
        logits = self.out(hidden).float()
        return logits.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(logits.dtype).min)

    def loss(self, logits, labels):
        start = F.cross_entropy(logits[..., 0], labels["start_positions"])
        end = F.cross_entropy(logits[..., 1], labels["end_positions"])
        return (start + end) / 2

    token_level = True
    teacher_fill = float(torch.finfo(torch.float32).min)  # padding: no probability

    def distillation_loss(self, logits, teacher, labels, temperature):
        # the teacher's start and end distributions over the window's positions
        teacher = teacher[:, : logits.shape[1]]
        start = soft_cross_entropy(logits[..., 0], teacher[..., 0], temperature)
        end = soft_cross_entropy(logits[..., 1], teacher[..., 1], temperature)
        return ((start + end) / 2).mean()


@register_kind("span_qa")
class SpanQA(TaskKind):
    """Example: ``{"id", "question", "context", "answers": [{"text", "start"}, ...]}``;
    ``text_columns`` = [question, context], the label column holds the answers."""

    fold_fields = ("context",)  # every question on a passage in one fold

    text_arity = (2,)
    metrics = {"squad_f1": squad_f1, "exact_match": exact_match}
    default_metrics = ("squad_f1", "exact_match")
    batch_fields = (
        BatchField("start_positions", torch.long, IGNORE_INDEX),
        BatchField("end_positions", torch.long, IGNORE_INDEX),
    )
    one_feature_per_example = False
    needs_fast_tokenizer = True

    def check_spec(self, spec, path, prefix):
        super().check_spec(spec, path, prefix)
        require(
            0 < doc_stride(spec) < spec.max_length,
            config_key(f"{path}.doc_stride", prefix),
            "must be between 1 and max_length - 1",
        )

    def sample(self):
        def row(question: str, context: str, answer: str) -> dict[str, Any]:
            start = context.index(answer)
            return {
                "question": question,
                "context": context,
                "answers": {"text": [answer], "answer_start": [start]},
            }

        return KindSample(
            ["question", "context"],
            "answers",
            [
                row("who lives in london?", "john lives in london with his dog.", "john"),
                row("where is the cat?", "the cat sleeps on the mat all day.", "on the mat"),
                row("what does mary eat?", "mary eats apples every morning.", "apples"),
                row("when does the shop open?", "the shop opens at nine.", "at nine"),
            ],
        )

    def _texts(self, spec: Any, record: records.Record, split: str) -> dict[str, Any]:
        return {
            "id": records.record_id(record, split),
            "question": records.text(record, spec.text_columns[0]),
            "context": records.text(record, spec.text_columns[1]),
        }

    def example(self, spec, record, split, index, labels):
        example = self._texts(spec, record, split)
        example["answers"] = _answers(record, spec.label_column, example["context"])
        return example

    def unlabelled_example(self, spec, record, split):
        return {**self._texts(spec, record, split), "answers": None}

    def encode(self, spec, examples, tokenizer):
        """Question + context windows with stride, answer token positions, offsets."""
        room = spec.max_length - tokenizer.num_special_tokens_to_add(pair=True)
        question_limit, stride = qa_budget(room, doc_stride(spec))
        questions, truncated, lengths = cap_questions(
            tokenizer, [ex["question"] for ex in examples], question_limit
        )
        features = []
        for strided, indices in window_groups(lengths, room, stride).items():
            encoding = tokenizer(
                [questions[i] for i in indices],
                [examples[i]["context"] for i in indices],
                truncation="only_second",
                max_length=spec.max_length,
                stride=strided,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
            )
            for row, member in enumerate(encoding["overflow_to_sample_mapping"]):
                example_index = indices[int(member)]
                feature = model_inputs(encoding, row, example_index=example_index)
                feature.update(self._positions(examples[example_index], encoding, row))
                features.append(feature)
        # windows in example order whatever the groups (a stable sort keeps each one's own)
        features.sort(key=lambda feature: feature["example_index"])
        return features, truncated

    @staticmethod
    def _positions(example: dict, encoding: Any, row: int) -> dict[str, Any]:
        context = example["context"]
        offsets = [
            _trimmed(context, span) if sequence == 1 else None
            for span, sequence in zip(encoding["offset_mapping"][row], encoding.sequence_ids(row))
        ]
        answers = example.get("answers")
        # no answer in a labelled example (or none in this window) points at [CLS] (0, 0);
        # a prediction input (answers None) has no positions at all
        start, end = (
            answer_positions(answers[0] if answers else None, offsets)
            if answers is not None
            else (None, None)
        )
        return {"start_positions": start, "end_positions": end, "offsets": offsets}

    def build_head(self, spec, hidden_size, num_labels, dropout, pooling):
        return SpanHead(hidden_size, 2, dropout, pooling)

    def decode(self, spec, labels, examples, features, outputs):
        start = [o[:, 0] for o in outputs]
        end = [o[:, 1] for o in outputs]
        return postprocess_span_predictions(examples, features, start, end)

    def references(self, spec, labels, examples):
        return [[a["text"] for a in ex["answers"]] for ex in examples]

    def baseline(self, spec, labels, train, examples):
        return [" ".join(ex["context"].split()[:1]) for ex in examples]

    def prediction_schema(self):
        return {
            "type": "object",
            "required": ["answer", "answer_start"],
            "properties": {
                "answer": {"type": "string", "description": "a span of the context"},
                "answer_start": {
                    "type": "integer",
                    "description": "its character offset in the context (-1: no answer)",
                },
            },
        }

    def readable(self, spec, labels, example, prediction, output):
        start = getattr(prediction, "start", None)  # a SpanAnswer knows where it stands
        if start is None:
            start = example["context"].find(prediction) if prediction else -1
        return {"answer": str(prediction), "answer_start": start}

    def uncertainty(self, head, hidden, mask, inputs, features, num_labels, context):
        """Mean of the start and end entropies over context tokens; H' = log(#context)."""
        logits = head(hidden, mask, inputs).float().cpu()
        norm, raw = [], []
        for row, feature in enumerate(features):
            window = [i for i, off in enumerate(feature["offsets"]) if off is not None]
            if len(window) < 2:
                norm.append(0.0)
                raw.append(0.0)
                continue
            h = (entropy(logits[row, window, 0]) + entropy(logits[row, window, 1])) / 2
            raw.append(float(h))
            norm.append(float(h) / math.log(len(window)))
        return np.asarray(norm), np.asarray(raw)
