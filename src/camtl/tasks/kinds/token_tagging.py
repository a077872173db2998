"""Token tagging (NER, POS): one tag per word of a word list."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from camtl.constants import IGNORE_INDEX
from camtl.errors import DataError
from camtl.tasks.kinds import records
from camtl.tasks.kinds.base import BatchField, KindSample, TaskKind, entropy, register_kind
from camtl.tasks.kinds.classification import check_lengths, majority
from camtl.tasks.kinds.encoding import encode_capped, model_inputs
from camtl.tasks.kinds.heads import TaskHead, dropout, soft_cross_entropy

_IOB_PREFIXES = ("B-", "I-", "E-", "S-")
# BILOU is IOBES by other letters (Last, Unit); seqeval's default mode reads only the latter
_BILOU = {"L": "E", "U": "S"}


def _iob_tag(tag: str) -> str:
    """Tags without a prefix ("PER") mean IO tagging: a run of one type is one entity."""
    if tag[:1] in _BILOU and (len(tag) == 1 or tag[1] == "-"):
        tag = _BILOU[tag[0]] + tag[1:]
    if tag == "O" or tag.startswith(_IOB_PREFIXES) or tag in ("B", "I", "E", "S"):
        return tag
    return f"I-{tag}"


def check_sequences(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
) -> None:
    check_lengths(predictions, references)
    for i, (pred, ref) in enumerate(zip(predictions, references)):
        if len(pred) != len(ref):
            raise ValueError(f"sequence {i}: {len(pred)} predicted tags for {len(ref)} words")


def entity_f1(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    """Entity-level micro F1 (seqeval's default, conlleval-like mode: IOB2, IOBES or BILOU
    tags, BILOU read as IOBES; an I- tag may start an entity; un-prefixed tags read as IO
    tags)."""
    from seqeval.metrics import f1_score

    check_sequences(predictions, references)
    pred = [[_iob_tag(tag) for tag in sentence] for sentence in predictions]
    ref = [[_iob_tag(tag) for tag in sentence] for sentence in references]
    return 100.0 * float(f1_score(ref, pred, zero_division=0))


def token_accuracy(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
) -> float:
    """Share of words whose predicted tag equals the reference tag."""
    check_sequences(predictions, references)
    total = sum(len(sentence) for sentence in references)
    if total == 0:
        raise ValueError("token_accuracy: the references hold no words")
    correct = sum(p == r for ps, rs in zip(predictions, references) for p, r in zip(ps, rs))
    return 100.0 * correct / total


def _words(record: records.Record, column: str) -> list[str]:
    tokens = records.as_list(record, column)
    if not tokens:
        raise DataError(f"{records.where(record)}: empty text in column '{column}' (no tokens)")
    words = []
    for i, token in enumerate(tokens):
        at = f"position {i + 1} in column '{column}'"
        if records.is_missing(token) or (isinstance(token, str) and not token.strip()):
            raise DataError(f"{records.where(record)}: empty token at {at}")
        if isinstance(token, (int, float)) and not isinstance(token, bool):
            token = str(token)  # a number read as a word, as records.text reads one
        if not isinstance(token, str):
            raise DataError(
                f"{records.where(record)}: token at {at} is a {type(token).__name__}, not a word"
            )
        words.append(records.check_unicode(record, column, token))
    return words


def _joined(words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The words joined by single spaces, and each word's (start, end) in that text."""
    spans, position = [], 0
    for word in words:
        spans.append((position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), spans


def _token_words(
    offsets: Sequence[Sequence[int]], sequence_ids: Sequence[int | None], spans: Sequence[tuple]
) -> list[int | None]:
    """The word each token's characters overlap (the first, should one span two); None for
    special tokens and a token of the joining space alone (SentencePiece's lone '▁')."""
    words: list[int | None] = []
    word = 0
    for (start, end), sequence in zip(offsets, sequence_ids):
        if sequence is None or end <= start:
            words.append(None)
            continue
        while word < len(spans) and spans[word][1] <= start:  # tokens come in text order
            word += 1
        inside = word < len(spans) and spans[word][0] < end
        words.append(word if inside else None)
    return words


def first_subtoken_labels(word_ids: Sequence[int | None], tags: Sequence[int] | None) -> list[int]:
    """The tag of each word on its first sub-token; IGNORE_INDEX everywhere else."""
    labels = []
    previous = None
    for word in word_ids:
        if word is None or word == previous or tags is None:
            labels.append(IGNORE_INDEX)
        else:
            labels.append(int(tags[word]))
        previous = word
    return labels


def word_starts(word_ids: Sequence[int | None]) -> list[int]:
    """Positions of each word's first sub-token."""
    starts, previous = [], None
    for position, word in enumerate(word_ids):
        if word is not None and word != previous:
            starts.append(position)
        previous = word
    return starts


class TaggingHead(TaskHead):
    def __init__(self, hidden_size: int, num_outputs: int, dropout: float, pooling: str) -> None:
        super().__init__(hidden_size, num_outputs, dropout, pooling)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_outputs)

    def forward(self, hidden, mask, inputs=None, generator=None):
        return self.out(dropout(hidden, self.dropout, generator))

    def loss(self, logits, labels):
        tags = labels["tag_labels"][:, : logits.shape[1]]
        if bool((tags != IGNORE_INDEX).any()):
            return F.cross_entropy(
                logits.float().flatten(0, 1), tags.flatten(), ignore_index=IGNORE_INDEX
            )
        return logits.sum() * 0.0  # every word truncated away: no signal, keep the graph

    token_level = True

    def distillation_loss(self, logits, teacher, labels, temperature):
        # the teacher's tag distribution at the tokens the gold loss reads (first sub-words)
        tags = labels["tag_labels"][:, : logits.shape[1]]
        scored = tags != IGNORE_INDEX
        if not bool(scored.any()):
            return logits.sum() * 0.0
        per_token = soft_cross_entropy(logits, teacher[:, : logits.shape[1]], temperature)
        return per_token[scored].mean()


@register_kind("token_tagging")
class TokenTagging(TaskKind):
    """Example: ``{"tokens": [word, ...], "tags": [tag index, ...]}``. The label column
    holds one tag per word (a list, or a whitespace-separated string)."""

    fold_fields = ("tokens",)

    text_arity = (1,)
    metrics = {"entity_f1": entity_f1, "token_accuracy": token_accuracy}
    default_metrics = ("entity_f1", "token_accuracy")
    has_labels = True
    needs_fast_tokenizer = True
    batch_fields = (BatchField("tag_labels", torch.long, IGNORE_INDEX, layout="tokens"),)

    def input_columns(self, spec):
        return {spec.text_columns[0]: "words"}

    def sample(self):
        return KindSample(
            ["tokens"],
            "tags",
            [
                {"tokens": ["john", "lives", "in", "london"], "tags": ["B-PER", "O", "O", "B-LOC"]},
                {"tokens": ["mary", "smith", "left"], "tags": ["B-PER", "I-PER", "O"]},
                {"tokens": "paris is big", "tags": "B-LOC O O"},
                {"tokens": ["the", "cat", "sat"], "tags": ["O", "O", "O"]},
            ],
        )

    def record_labels(self, spec, record):
        keys = []
        for tag in records.as_list(record, spec.label_column):
            key = records.label_in(record, spec.label_column, tag)
            if key is None:
                raise DataError(
                    f"{records.where(record)}: missing tag in column '{spec.label_column}'"
                )
            keys.append(key)
        return keys

    def example(self, spec, record, split, index, labels):
        column = spec.text_columns[0]
        words = _words(record, column)
        tags = records.as_list(record, spec.label_column)
        if len(words) != len(tags):
            raise DataError(
                f"{records.where(record)}: {len(words)} tokens in column '{column}' but "
                f"{len(tags)} tags in column '{spec.label_column}'"
            )
        ids = []
        for i, tag in enumerate(tags):
            key = records.label_in(record, spec.label_column, tag)
            if key not in index:
                raise DataError(
                    f"{records.where(record)}: tag {key!r} at position {i + 1} is not one "
                    f"of the task's labels ({records.show(labels)})"
                )
            ids.append(index[key])
        return {"tokens": words, "tags": ids}

    def unlabelled_example(self, spec, record, split):
        return {"tokens": _words(record, spec.text_columns[0]), "tags": None}

    def encode(self, spec, examples, tokenizer):
        """Words in, the tag on each word's first sub-token, IGNORE_INDEX elsewhere.

        The words are joined by spaces and tokenized as running text, each token given to
        the word its characters overlap. Tokenizing them as pre-split words instead
        (``is_split_into_words``) reads every word as the start of a text in a byte-level
        BPE without ``add_prefix_space`` (RoBERTa, ModernBERT): ids the encoder saw only
        there. WordPiece and SentencePiece give the same tokens either way."""
        texts, spans = zip(*(_joined(ex["tokens"]) for ex in examples)) if examples else ((), ())
        rows, truncated = encode_capped(
            tokenizer, list(texts), None, spec.max_length, return_offsets_mapping=True
        )
        features = []
        for i, (example, (encoding, row)) in enumerate(zip(examples, rows)):
            feature = model_inputs(encoding, row, example_index=i)
            word_ids = _token_words(
                encoding["offset_mapping"][row], encoding.sequence_ids(row), spans[i]
            )
            feature["tag_labels"] = first_subtoken_labels(word_ids, example.get("tags"))
            feature["word_ids"] = list(word_ids)
            features.append(feature)
        return features, truncated

    def build_head(self, spec, hidden_size, num_labels, dropout, pooling):
        return TaggingHead(hidden_size, num_labels, dropout, pooling)

    def decode(self, spec, labels, examples, features, outputs):
        return [
            _word_tags(ex, feat, out, labels) for ex, feat, out in zip(examples, features, outputs)
        ]

    def references(self, spec, labels, examples):
        return [[labels[t] for t in ex["tags"]] for ex in examples]

    def baseline(self, spec, labels, train, examples):
        tag = labels[majority(t for ex in train for t in ex["tags"])]
        return [[tag] * len(ex["tags"]) for ex in examples]

    def prediction_schema(self):
        return {
            "type": "object",
            "required": ["tokens", "tags"],
            "properties": {
                "tokens": {"type": "array", "items": {"type": "string"}, "description": "words"},
                "tags": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "one tag per word",
                },
            },
        }

    def readable(self, spec, labels, example, prediction, output):
        return {"tokens": example["tokens"], "tags": prediction}

    def uncertainty(self, head, hidden, mask, inputs, features, num_labels, context):
        """Mean entropy over the words' first sub-tokens; H' = log C."""
        per_token = entropy(head(hidden, mask, inputs)).cpu()
        raw = np.asarray(
            [
                float(per_token[row, starts].mean()) if starts else 0.0
                for row, starts in enumerate(word_starts(f["word_ids"]) for f in features)
            ]
        )
        return raw / math.log(max(2, num_labels)), raw


def _word_tags(example: dict, feature: dict, logits: np.ndarray, labels: list[str]) -> list[str]:
    """One tag per word from its first sub-token; words cut by truncation get 'O'."""
    fallback = "O" if "O" in labels else labels[0]
    tags = [fallback] * len(example["tokens"])
    seen: set[int] = set()
    for position, word in enumerate(feature["word_ids"]):
        if word is not None and word not in seen and position < len(logits):
            seen.add(word)
            tags[word] = labels[int(np.argmax(logits[position]))]
    return tags
