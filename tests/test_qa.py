"""Span-QA post-processing: logits over windows -> answer text per example."""

from __future__ import annotations

import numpy as np
import pytest

from camtl.data.tokenize import encode_examples
from camtl.tasks.kinds import get_kind
from camtl.tasks.kinds.span_qa import best_span, postprocess_span_predictions
from camtl.tasks.spec import TaskSpec
from camtl.testing import SUBWORD_LAYOUTS, make_subword_tokenizer


def qa_spec(**kwargs) -> TaskSpec:
    return TaskSpec(
        name="qa", type="span_qa", text_columns=["q", "c"], label_column="answers", **kwargs
    )


def example(question: str, context: str, answer: str) -> dict:
    return {
        "id": question,
        "question": question,
        "context": context,
        "answers": [{"text": answer, "start": context.index(answer)}],
    }


def one_hot_logits(features: list[dict], pad_to: int | None = None):
    """Logits that peak at each feature's gold positions (a CLS-only window peaks at 0)."""
    starts, ends = [], []
    for feature in features:
        length = pad_to or len(feature["input_ids"])
        start, end = np.full(length, -5.0), np.full(length, -5.0)
        start[feature["start_positions"]] = 10.0
        end[feature["end_positions"]] = 10.0
        starts.append(start)
        ends.append(end)
    return starts, ends


@pytest.fixture()
def encoded(tiny_tokenizer):
    filler = " ".join(["the dog eats food"] * 10)
    examples = [
        example("who lives in london?", f"{filler} john lives in london. {filler}", "john"),
        example("where?", "mary lives in new york city today.", "new york city"),
        example("what is red?", "the big apple, not google, is red.", "the big apple"),
    ]
    features = encode_examples(
        qa_spec(max_length=24, doc_stride=8), examples, tiny_tokenizer, task_id=0
    ).features
    return examples, features


def test_qa_task_without_doc_stride_encodes_at_a_short_max_length(tiny_tokenizer):
    spec = qa_spec(max_length=64)  # doc_stride unset: half of max_length
    filler = " ".join(["the dog eats food"] * 30)
    examples = [example("who lives in london?", f"{filler} john lives in london.", "john")]
    features = encode_examples(spec, examples, tiny_tokenizer, task_id=0).features
    assert len(features) > 1  # the context needs several windows
    assert all(len(f["input_ids"]) <= 64 for f in features)
    starts, ends = one_hot_logits(features)
    assert postprocess_span_predictions(examples, features, starts, ends) == ["john"]


def test_one_hot_logits_recover_gold(encoded):
    examples, features = encoded
    assert len(features) > len(examples)  # the first context needs several windows
    starts, ends = one_hot_logits(features)
    assert postprocess_span_predictions(examples, features, starts, ends) == [
        "john",
        "new york city",
        "the big apple",
    ]


@pytest.mark.parametrize("layout", SUBWORD_LAYOUTS)
def test_answers_carry_no_leading_space_whatever_the_offsets(layout: str) -> None:
    """Gold positions read back give the answer itself, also where a token's offsets
    hold the space before its word (SentencePiece, untrimmed byte-level BPE)."""
    tokenizer = make_subword_tokenizer(layout)
    examples = [
        example("who lives in london?", "the dog eats food and john lives in london.", "john"),
        example("where?", "mary lives in new york city today.", "new york city"),
    ]
    spec = qa_spec(max_length=48, doc_stride=16)
    features = encode_examples(spec, examples, tokenizer, task_id=0).features
    starts, ends = one_hot_logits(features)
    predictions = postprocess_span_predictions(examples, features, starts, ends)
    assert predictions == ["john", "new york city"], layout


@pytest.mark.parametrize("layout", ["wordpiece", *SUBWORD_LAYOUTS])
def test_spaces_are_never_part_of_an_answer_gold_or_predicted(layout: str, tiny_tokenizer) -> None:
    """A gold answer given with spaces around it is the word alone (else a layout that
    starts no token on a space took in the word before); a token of spaces alone cannot
    start or end an answer; the answer's start is where the predicted span stands, not
    the first place its text occurs."""
    tokenizer = tiny_tokenizer if layout == "wordpiece" else make_subword_tokenizer(layout)
    kind = get_kind("span_qa")
    spec = qa_spec(max_length=48, doc_stride=16)
    records = [
        {"q": "which?", "c": "dog cat sits", "answers": {"text": [" cat "], "answer_start": [3]}},
        {
            "q": "who?",
            "c": "john met john today",
            "answers": {"text": ["john"], "answer_start": [9]},
        },
    ]
    examples = [kind.example(spec, record, "train", i, []) for i, record in enumerate(records)]
    assert [ex["answers"] for ex in examples] == [
        [{"text": "cat", "start": 4}],
        [{"text": "john", "start": 9}],
    ]
    features = encode_examples(spec, examples, tokenizer, task_id=0).features
    for feature, example in zip(features, examples):
        for span in feature["offsets"]:
            if span is not None:
                assert example["context"][span[0] : span[1]].strip(), (layout, span)
    starts, ends = one_hot_logits(features)
    outputs = [np.stack([start, end], axis=1) for start, end in zip(starts, ends)]
    predictions = [
        kind.readable(spec, [], example, answer, None)
        for example, answer in zip(examples, kind.decode(spec, [], examples, features, outputs))
    ]
    assert predictions == [
        {"answer": "cat", "answer_start": 4},
        {"answer": "john", "answer_start": 9},
    ], layout


def test_a_long_question_moves_its_windows_on_by_a_quarter_of_the_context(tiny_tokenizer):
    """With a stride of half max_length, a long question left windows that moved on by one
    token (hundreds for one passage); now by a quarter of the context at least, every
    context token still in a window, and an example's windows are the same alone as
    batched with others."""
    spec = qa_spec(max_length=128)  # doc_stride unset: 64
    question = " ".join(["which dog eats the food"] * 12) + "?"  # 60 tokens and more
    context = " ".join(["the dog eats food"] * 60) + " john lives in london."
    long_one = example(question, context, "john")
    short_one = example("who lives in london?", context, "john")
    alone = encode_examples(spec, [long_one], tiny_tokenizer, task_id=0).features
    context_tokens = len(tiny_tokenizer(context, add_special_tokens=False)["input_ids"])
    assert 1 < len(alone) <= context_tokens // 10
    assert all(len(f["input_ids"]) <= 128 for f in alone)
    starts, ends = one_hot_logits(alone)
    assert postprocess_span_predictions([long_one], alone, starts, ends) == ["john"]
    covered = {tuple(span) for f in alone for span in f["offsets"] if span is not None}
    assert len(covered) == context_tokens
    both = encode_examples(spec, [short_one, long_one], tiny_tokenizer, task_id=0).features
    mine = [f for f in both if f["example_index"] == 1]
    assert [f["input_ids"] for f in mine] == [f["input_ids"] for f in alone]
    assert [f["example_index"] for f in both] == sorted(f["example_index"] for f in both)


def test_padded_logits_give_the_same_answers(encoded):
    examples, features = encoded
    longest = max(len(f["input_ids"]) for f in features)
    starts, ends = one_hot_logits(features, pad_to=longest + 5)
    # padded positions get the highest logits: they must never be picked
    for start, end, feature in zip(starts, ends, features):
        start[len(feature["input_ids"]) :] = 100.0
        end[len(feature["input_ids"]) :] = 100.0
    predictions = postprocess_span_predictions(examples, features, np.stack(starts), np.stack(ends))
    assert predictions == ["john", "new york city", "the big apple"]


def test_question_and_special_tokens_are_never_answers(encoded):
    examples, features = encoded
    starts, ends = one_hot_logits(features)
    for start, end, feature in zip(starts, ends, features):
        for i, span in enumerate(feature["offsets"]):
            if span is None:  # question tokens and specials score highest
                start[i] = end[i] = 50.0
    assert postprocess_span_predictions(examples, features, starts, ends) == [
        "john",
        "new york city",
        "the big apple",
    ]


def test_span_constraints():
    offsets = [None, [0, 4], [5, 9], [10, 14], None]
    # the best end lies before the best start: fall back to a valid pair
    start = np.array([0.0, 0.0, 5.0, 1.0, 0.0])
    end = np.array([0.0, 6.0, 0.0, 2.0, 0.0])
    score, start_char, end_char = best_span(offsets, start, end)
    assert (start_char, end_char) == (5, 14) and score == pytest.approx(7.0)
    # max_answer_length=1 forbids the two-token span: single tokens score 6, 5 and 3
    assert best_span(offsets, start, end, max_answer_length=1) == (6.0, 0, 4)
    # n_best=1 keeps only start 2 and end 1, an invalid pair
    assert best_span(offsets, start, end, n_best=1) is None
    assert best_span([None, None], np.zeros(2), np.zeros(2)) is None


def test_example_without_valid_window_gets_empty_string():
    examples = [{"context": "abc"}, {"context": "xyz"}]
    features = [{"example_index": 1, "offsets": [None, [0, 3], None]}]
    logits = [np.array([0.0, 1.0, 0.0])]
    assert postprocess_span_predictions(examples, features, logits, logits) == ["", "xyz"]


def test_mismatched_logits_are_an_error():
    with pytest.raises(ValueError, match="features"):
        postprocess_span_predictions([], [{"example_index": 0, "offsets": []}], [], [])
