"""Multiple choice: a context and k candidate answers, the right one chosen among them.

``text_columns`` = [context, choice_1, ..., choice_k] (k >= 2, the same k for every row);
with ``options.context_columns: n`` the first n columns together make the context (COPA:
premise and question). The label column holds the right choice as its 0-based index, its
exact text, or the name of its column.

All k choices are encoded in one sequence with the context, ``[CLS] context [SEP] choice_1
[SEP] ... choice_k [SEP]``, and scored jointly: each choice's score comes from the mean of its
own tokens' states, and a softmax over the k scores picks one. One sequence per example
(instead of k context-choice pairs, as BERT's multiple-choice head does) keeps every batch
one row per example, so a multiple-choice task mixes with any other task in the same
forward pass, at a k-th of the encoder cost; the choices share the length budget (the
context is cut first, then the longest choices: none is cut away) and attend to each other.
docs/decisions.md has the reasoning.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from camtl.constants import IGNORE_INDEX
from camtl.errors import ConfigError, DataError
from camtl.tasks.kinds import records
from camtl.tasks.kinds.base import BatchField, KindSample, TaskKind, entropy, register_kind
from camtl.tasks.kinds.classification import OneOfOutputs, accuracy, softmax
from camtl.tasks.kinds.encoding import Row, model_inputs
from camtl.tasks.kinds.heads import TaskHead, dropout, soft_cross_entropy
from camtl.validation import config_key, require

log = logging.getLogger("camtl")

NOT_A_CHOICE = -1  # choice_ids of the context, the separators and padding
UNREAD_SCORE = -1e4  # a choice without tokens: probability 0 after the softmax (any dtype)
MAX_CHOICES = 26


@dataclass
class MultipleChoiceOptions:
    # how many of the first text columns make up the context (joined by a space)
    context_columns: int = 1


def _choice_index(
    record: records.Record, column: str, choices: list[str], choice_columns: list[str]
) -> int:
    value = records.field(record, column)
    key = records.label_in(record, column, value)
    if key is None:
        raise DataError(f"{records.where(record)}: missing label in column '{column}'")
    if key.lstrip("-").isdigit():
        index = int(key)
        if 0 <= index < len(choices):
            return index
        raise DataError(
            f"{records.where(record)}: label {key} in column '{column}' is not a choice index "
            f"(0 to {len(choices) - 1})"
        )
    if key in choices:
        return choices.index(key)
    if key in choice_columns:
        return choice_columns.index(key)
    raise DataError(
        f"{records.where(record)}: label {key[:60]!r} in column '{column}' is not a choice "
        f"index (0 to {len(choices) - 1}), the text of a choice, or a choice column "
        f"({', '.join(choice_columns)})"
    )


class ChoiceHead(TaskHead):
    """Mean of each choice's token states -> dropout -> dense -> tanh -> dropout -> score."""

    def __init__(self, hidden_size: int, num_outputs: int, dropout: float, pooling: str) -> None:
        super().__init__(hidden_size, num_outputs, dropout, pooling)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, hidden, mask, inputs=None, generator=None):
        assert inputs is not None, "the multiple-choice head needs the batch's choice_ids"
        choice_ids = inputs["choice_ids"][:, : hidden.shape[1]]
        slots = torch.arange(self.num_outputs, device=hidden.device)
        member = (choice_ids.unsqueeze(-1) == slots).to(hidden.dtype)  # [n, L, k]
        sums = torch.einsum("nlk,nld->nkd", member, hidden)
        counts = member.sum(1)  # [n, k] tokens per choice
        pooled = sums / counts.clamp(min=1.0).unsqueeze(-1)
        x = dropout(pooled, self.dropout, generator)
        x = dropout(torch.tanh(self.dense(x)), self.dropout, generator)
        scores = self.out(x).squeeze(-1)  # [n, k]
        # a choice with no token (text the tokenizer drops entirely) was never read: its
        # probability is 0 rather than whatever a vector of zeros scores
        return scores.masked_fill(counts == 0, UNREAD_SCORE)

    def loss(self, logits, labels):
        targets = labels["choice_labels"]
        total = F.cross_entropy(logits.float(), targets, reduction="sum")
        return total / (targets != IGNORE_INDEX).sum().clamp(min=1)  # none may count

    def distillation_loss(self, logits, teacher, labels, temperature):
        return soft_cross_entropy(logits, teacher, temperature).mean()


@register_kind("multiple_choice")
class MultipleChoice(OneOfOutputs, TaskKind):
    """Example: ``{"context", "choices": [text, ...], "label": index of the right one}``."""

    fold_fields = ("context", "choices")

    text_arity = tuple(range(3, MAX_CHOICES + 4))
    metrics = {"accuracy": accuracy}
    default_metrics = ("accuracy",)
    needs_fast_tokenizer = True
    Options = MultipleChoiceOptions
    batch_fields = (
        BatchField("choice_ids", torch.long, NOT_A_CHOICE, layout="tokens", role="input"),
        BatchField("choice_labels", torch.long, IGNORE_INDEX),
    )

    def sample(self):
        return KindSample(
            ["premise", "choice1", "choice2"],
            "label",
            [
                {
                    "premise": "the man broke his toe. why?",
                    "choice1": "he dropped a hammer on it",
                    "choice2": "he went to the doctor",
                    "label": 0,
                },
                {
                    "premise": "the girl was thirsty. so?",
                    "choice1": "she slept",
                    "choice2": "she drank water",
                    "label": 1,
                },
                {
                    "premise": "it started to rain. so?",
                    "choice1": "we opened umbrellas",
                    "choice2": "the sun shone",
                    "label": "we opened umbrellas",
                },
                {
                    "premise": "the glass fell. so?",
                    "choice1": "it sang",
                    "choice2": "it broke",
                    "label": 1,
                },
            ],
        )

    def check_spec(self, spec, path, prefix):
        super().check_spec(spec, path, prefix)
        n = self.options(spec).context_columns
        choices = len(spec.text_columns) - n
        require(
            n >= 1 and 2 <= choices <= MAX_CHOICES,
            config_key(f"{path}.text_columns", prefix),
            f"a multiple-choice task takes {n} context column(s) (options.context_columns, "
            f"at least 1) and 2 to {MAX_CHOICES} choice columns, got {spec.text_columns!r}",
        )
        # [CLS], a separator after the context and after each choice, a token per choice:
        # BERT's layout; encode checks the encoder's own tokenizer (RoBERTa's needs more)
        least = 2 * choices + 2
        require(
            spec.max_length >= least,
            config_key(f"{path}.max_length", prefix),
            f"must be at least {least} for {choices} choices (a token of each, and the "
            "separators between them)",
        )

    def _texts(self, spec: Any, record: records.Record) -> dict[str, Any]:
        """The context columns may be empty (the choices alone can be read); a choice may
        not."""
        n = self.options(spec).context_columns
        context = [records.text(record, c, allow_empty=True) for c in spec.text_columns[:n]]
        choices = [records.text(record, c) for c in spec.text_columns[n:]]
        return {"context": " ".join(t for t in context if t.strip()), "choices": choices}

    def example(self, spec, record, split, index, labels):
        example = self._texts(spec, record)
        choice_columns = spec.text_columns[self.options(spec).context_columns :]
        example["label"] = _choice_index(
            record, spec.label_column, example["choices"], choice_columns
        )
        return example

    def unlabelled_example(self, spec, record, split):
        return {**self._texts(spec, record), "label": None}

    def encode(self, spec, examples, tokenizer):
        """The context as the first segment, the choices joined by the separator token as
        the second; each token of the second segment is mapped to its choice by offsets. A
        gold choice left without a token (text the tokenizer drops entirely) teaches nothing:
        its label is ignored, as the head never picks such a choice."""
        joiner = f" {tokenizer.sep_token} " if tokenizer.sep_token else " | "
        choices_per_example = len(spec.text_columns) - self.options(spec).context_columns
        least = _least_length(tokenizer, choices_per_example, joiner)
        if spec.max_length < least:  # the config's own check counts BERT's layout only
            raise ConfigError(
                f"task {spec.name!r}: max_length {spec.max_length} cannot hold a token of "
                f"each of its {choices_per_example} choices and the separators with this "
                f"encoder's tokenizer; it must be at least {least}"
            )
        contexts = [ex["context"] for ex in examples]
        # spaces around a choice are not part of it: a token of a space alone is no choice's
        choices = [[choice.strip() for choice in ex["choices"]] for ex in examples]
        rows, spans, truncated = _encode_fitted(
            tokenizer, contexts, choices, joiner, spec.max_length
        )
        features = []
        for i, (encoding, row) in enumerate(rows):
            feature = model_inputs(encoding, row, example_index=i)
            feature["choice_ids"] = _choice_ids(
                encoding["offset_mapping"][row], encoding.sequence_ids(row), spans[i]
            )
            label = examples[i].get("label")
            if label is not None and label not in feature["choice_ids"]:
                label = IGNORE_INDEX
            feature["choice_labels"] = label
            features.append(feature)
        unread = sum(
            any(j not in f["choice_ids"] for j in range(choices_per_example)) for f in features
        )
        if unread:
            log.warning(
                "task %s: %d of %d inputs have a choice with no token (text the tokenizer "
                "drops, or max_length %d too short to keep it); such a choice is never picked",
                spec.name,
                unread,
                len(features),
                spec.max_length,
            )
        return features, truncated

    def build_head(self, spec, hidden_size, num_labels, dropout, pooling):
        choices = len(spec.text_columns) - self.options(spec).context_columns
        return ChoiceHead(hidden_size, choices, dropout, pooling)

    def empty_fields(self, spec):
        n = self.options(spec).context_columns
        context, choices = spec.text_columns[:n], spec.text_columns[n:]
        return f"{', '.join(context)} may be empty; the choices ({', '.join(choices)}) may not."

    def prediction_schema(self):
        return {
            "type": "object",
            "required": ["choice", "answer", "probabilities"],
            "properties": {
                "choice": {"type": "integer", "description": "0-based index of the choice"},
                "answer": {"type": "string", "description": "the chosen choice's text"},
                "probabilities": {
                    "type": "array",
                    "items": {"type": "number"},
                    "description": "one per choice, in the request's order",
                },
            },
        }

    def readable(self, spec, labels, example, prediction, output):
        probs = softmax(np.asarray(output, dtype=np.float64))
        return {
            "choice": prediction,
            "answer": example["choices"][prediction],
            "probabilities": [round(float(p), 6) for p in probs],
        }

    def uncertainty(self, head, hidden, mask, inputs, features, num_labels, context):
        """Entropy over the k choices; H' = log k."""
        logits = head(hidden, mask, inputs).float().cpu()
        raw = entropy(logits)
        return (raw / math.log(logits.shape[-1])).numpy(), raw.numpy()


def _join(choices: list[str], joiner: str) -> tuple[str, list[tuple[int, int]]]:
    """The choices as one text, and each one's character span in it."""
    text, spans = "", []
    for j, choice in enumerate(choices):
        text += joiner if j else ""
        spans.append((len(text), len(text) + len(choice)))
        text += choice
    return text, spans


def _encode_fitted(
    tokenizer: Any, contexts: list[str], choices: list[list[str]], joiner: str, max_length: int
) -> tuple[list[Row], list[list[tuple[int, int]]], int]:
    """One (encoding, row) per example within ``max_length``, and each example's choice
    spans in its second segment: the context is cut first; where the choices alone do not
    fit, the context goes and the longest choices are cut (``_fit_joined``), so that every
    choice keeps tokens. Returns the count of examples cut as well."""
    kwargs = {"return_offsets_mapping": True, "verbose": False}
    joined = [_join(example, joiner) for example in choices]
    seconds = [text for text, _ in joined]
    spans = [example_spans for _, example_spans in joined]
    full = tokenizer(contexts, seconds, truncation=False, **kwargs)
    rows: list[Row] = [(full, i) for i in range(len(contexts))]
    long = [i for i, ids in enumerate(full["input_ids"]) if len(ids) > max_length]
    context_only: list[int] = []  # the context alone cut (only_first)
    choices_cut: list[int] = []
    for i in long:
        excess = len(full["input_ids"][i]) - max_length
        context_tokens = sum(1 for s in full.sequence_ids(i) if s == 0)
        (context_only if context_tokens > excess else choices_cut).append(i)
    if context_only:
        cut = tokenizer(
            [contexts[i] for i in context_only],
            [seconds[i] for i in context_only],
            truncation="only_first",
            max_length=max_length,
            **kwargs,
        )
        for j, i in enumerate(context_only):
            rows[i] = (cut, j)
    if choices_cut:
        for i in choices_cut:
            seconds[i], spans[i] = _fit_joined(tokenizer, choices[i], joiner, max_length)
        cut = tokenizer(
            [""] * len(choices_cut),
            [seconds[i] for i in choices_cut],
            truncation="longest_first",
            max_length=max_length,
            **kwargs,
        )
        for j, i in enumerate(choices_cut):
            rows[i] = (cut, j)
    return (
        rows,
        spans,
        sum(
            len(encoding["input_ids"][row]) < len(full["input_ids"][i])
            for i, (encoding, row) in enumerate(rows)
        ),
    )


def _least_length(tokenizer: Any, choices: int, joiner: str) -> int:
    """Tokens of an input whose choices are one short word each and whose context is empty:
    the special tokens of a pair (3 for BERT, 4 for RoBERTa) and each separator as it
    tokenizes between two choices (two tokens in a byte-level BPE)."""
    text, _ = _join(["a"] * choices, joiner)
    return len(tokenizer("", text, verbose=False)["input_ids"])


def _fit_joined(
    tokenizer: Any, choices: list[str], joiner: str, max_length: int
) -> tuple[str, list[tuple[int, int]]]:
    """The choices, without the context, cut to fit ``max_length`` and joined: every choice
    is cut to one common number of tokens (the longest lose most; the shorter stay whole).
    Cutting the joined text from its end instead would remove the last choices entirely,
    and the head would still score them (from no tokens) and could pick one it never read.

    Tokens are counted as they come in the joined text (a byte-level BPE splits a word
    after a space otherwise than alone); cut text can tokenize a token longer at the cut,
    so the plan is made again on what it gives until it fits (once or twice)."""
    text, spans = _join(choices, joiner)
    for _ in range(4):
        encoding = tokenizer("", text, return_offsets_mapping=True, verbose=False)
        if len(encoding["input_ids"]) <= max_length:
            break
        owners = _choice_ids(encoding["offset_mapping"], encoding.sequence_ids(), spans)
        ends = [
            [end for (_, end), owner in zip(encoding["offset_mapping"], owners) if owner == j]
            for j in range(len(choices))
        ]
        lengths = [len(token_ends) for token_ends in ends]
        others = len(owners) - sum(lengths)  # special tokens and separators
        cap = _common_length(lengths, max_length - others)
        choices = [
            text[a:b] if len(ends[j]) <= cap else text[a : ends[j][cap - 1]]
            for j, (a, b) in enumerate(spans)
        ]
        text, spans = _join(choices, joiner)
    return text, spans


def _common_length(lengths: list[int], budget: int) -> int:
    """The largest cap (at least 1) with sum(min(n, cap)) <= budget."""
    cap, left, remaining = 0, budget, len(lengths)
    for n in sorted(lengths):
        # every choice still longer than cap can grow to n, or share what is left
        if (n - cap) * remaining > left:
            return max(1, cap + left // remaining)
        left -= (n - cap) * remaining
        cap, remaining = n, remaining - 1
    return max(1, cap)


def _choice_ids(
    offsets: list[tuple[int, int]], sequence_ids: list[int | None], spans: list[tuple[int, int]]
) -> list[int]:
    """The choice each token belongs to (the one its characters in the second segment
    overlap); NOT_A_CHOICE for the context, special tokens and the separators between
    choices. Overlap, not the token's first character: SentencePiece (XLM-R, CamemBERT) and
    byte-level BPE without offset trimming count a word's leading space in its token, so a
    choice's first token starts on the separator's space."""
    ids = []
    for (start, end), sequence in zip(offsets, sequence_ids):
        owner = NOT_A_CHOICE
        if sequence == 1 and end > start:
            owner = next(
                (j for j, (a, b) in enumerate(spans) if start < b and end > a), NOT_A_CHOICE
            )
        ids.append(owner)
    return ids
