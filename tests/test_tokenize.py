"""examples -> features: pairs, word-aligned tags, QA windows and offsets, truncation counts."""

from __future__ import annotations

import pytest

from camtl.data.tokenize import EncodeResult, encode_examples
from camtl.tasks.spec import TaskSpec
from camtl.testing.runs import qa_example

COMMON_KEYS = {"input_ids", "attention_mask", "token_type_ids", "task_id", "example_index"}


def make_spec(kind: str, columns: int = 1, **kwargs) -> TaskSpec:
    names = ["a", "b"][:columns]
    return TaskSpec(name="t", type=kind, text_columns=names, label_column="label", **kwargs)


def test_single_sentence_classification(tiny_tokenizer):
    spec = make_spec("classification")
    examples = [
        {"text_a": "the movie is good", "text_b": None, "label": 1},
        {"text_a": "bad", "text_b": None, "label": 0},
    ]
    result = encode_examples(spec, examples, tiny_tokenizer, task_id=3)
    assert isinstance(result, EncodeResult)
    assert result.truncated == 0
    first, second = result.features
    assert set(first) == COMMON_KEYS | {"cls_labels"}
    assert tiny_tokenizer.convert_ids_to_tokens(first["input_ids"]) == [
        "[CLS]",
        "the",
        "movie",
        "is",
        "good",
        "[SEP]",
    ]
    assert first["token_type_ids"] == [0] * 6 and first["attention_mask"] == [1] * 6
    assert (first["cls_labels"], second["cls_labels"]) == (1, 0)
    assert (first["task_id"], first["example_index"], second["example_index"]) == (3, 0, 1)


def test_pair_gets_segment_ids(tiny_tokenizer):
    spec = make_spec("classification", columns=2)
    examples = [{"text_a": "the cat", "text_b": "a dog runs", "label": 2}]
    feature = encode_examples(spec, examples, tiny_tokenizer, task_id=0).features[0]
    tokens = tiny_tokenizer.convert_ids_to_tokens(feature["input_ids"])
    assert tokens == ["[CLS]", "the", "cat", "[SEP]", "a", "dog", "runs", "[SEP]"]
    assert feature["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_regression_label_is_float_and_truncation_counted(tiny_tokenizer):
    spec = make_spec("regression", columns=2, max_length=10)
    examples = [
        {"text_a": "the cat", "text_b": "a dog", "label": 3},
        {"text_a": "the cat " * 10, "text_b": "a dog " * 10, "label": 1.5},
        {"text_a": "one two", "text_b": "red " * 20, "label": 0.0},
    ]
    result = encode_examples(spec, examples, tiny_tokenizer, task_id=1)
    assert result.truncated == 2
    lengths = [len(f["input_ids"]) for f in result.features]
    assert lengths == [7, 10, 10]
    assert all(isinstance(f["reg_labels"], float) for f in result.features)
    assert result.features[0]["reg_labels"] == 3.0
    # longest_first keeps both segments and ends each with [SEP]
    cut = result.features[1]
    assert cut["token_type_ids"].count(1) > 0 and cut["token_type_ids"].count(0) > 0
    assert [f["example_index"] for f in result.features] == [0, 1, 2]


def test_mixed_single_and_pair_examples_keep_order(tiny_tokenizer):
    spec = make_spec("classification", columns=2)
    examples = [
        {"text_a": "good", "text_b": "bad", "label": 0},
        {"text_a": "great", "text_b": None, "label": 1},
        {"text_a": "awful", "text_b": "sad", "label": 0},
    ]
    features = encode_examples(spec, examples, tiny_tokenizer, task_id=0).features
    decoded = [tiny_tokenizer.convert_ids_to_tokens(f["input_ids"])[1] for f in features]
    assert decoded == ["good", "great", "awful"]
    assert [sum(f["token_type_ids"]) for f in features] == [2, 0, 2]


def test_tagging_labels_first_subtoken_only(tiny_tokenizer):
    spec = make_spec("token_tagging", labels=["O", "B-PER", "I-PER"])
    examples = [{"tokens": ["john", "catss", "2024"], "tags": [1, 2, 0]}]
    feature = encode_examples(spec, examples, tiny_tokenizer, task_id=2).features[0]
    tokens = tiny_tokenizer.convert_ids_to_tokens(feature["input_ids"])
    assert tokens == ["[CLS]", "john", "cat", "##s", "##s", "[UNK]", "[SEP]"]
    assert feature["tag_labels"] == [-100, 1, 2, -100, -100, 0, -100]
    assert feature["word_ids"] == [None, 0, 1, 1, 1, 2, None]
    assert set(feature) == COMMON_KEYS | {"tag_labels", "word_ids"}


def test_tagging_truncation_drops_words_and_counts(tiny_tokenizer):
    spec = make_spec("token_tagging", max_length=8, labels=["O", "B-LOC"])
    long_words = ["paris", "is", "a", "big", "city", "and", "london", "is", "big"]
    examples = [
        {"tokens": long_words, "tags": [1, 0, 0, 0, 0, 0, 1, 0, 0]},
        {"tokens": ["paris"], "tags": [1]},
    ]
    result = encode_examples(spec, examples, tiny_tokenizer, task_id=0)
    assert result.truncated == 1
    cut = result.features[0]
    assert len(cut["input_ids"]) == 8
    assert cut["word_ids"] == [None, 0, 1, 2, 3, 4, 5, None]
    assert cut["tag_labels"] == [-100, 1, 0, 0, 0, 0, 0, -100]
    assert result.features[1]["tag_labels"] == [-100, 1, -100]


def _answer_text(example: dict, feature: dict) -> str:
    offsets = feature["offsets"]
    start = offsets[feature["start_positions"]][0]
    end = offsets[feature["end_positions"]][1]
    return example["context"][start:end]


def test_qa_positions_map_back_to_answer(tiny_tokenizer):
    spec = make_spec("span_qa", columns=2, max_length=64, doc_stride=16)
    example = qa_example(
        "who sits in paris?", "Today the big cat sits in Paris, with Mary.", "Mary"
    )
    result = encode_examples(spec, [example], tiny_tokenizer, task_id=4)
    assert result.truncated == 0
    [feature] = result.features
    assert set(feature) == COMMON_KEYS | {"start_positions", "end_positions", "offsets"}
    assert _answer_text(example, feature) == "Mary"
    # offsets only on context tokens; question and special tokens get None
    sequence = [0 if span is None else 1 for span in feature["offsets"]]
    assert sequence == [1 if t == 1 else 0 for t in feature["token_type_ids"]][:-1] + [0]
    assert feature["offsets"][0] is None
    assert all(isinstance(span, list) for span in feature["offsets"] if span is not None)


def test_qa_windows_with_stride(tiny_tokenizer):
    spec = make_spec("span_qa", columns=2, max_length=24, doc_stride=6)
    filler = " ".join(["the dog eats food"] * 12)
    context = f"{filler} john lives in london today. {filler}"
    examples = [
        qa_example("where?", "paris is big.", "paris"),
        qa_example("who lives in london?", context, "john"),
    ]
    result = encode_examples(spec, examples, tiny_tokenizer, task_id=0)
    assert result.truncated == 0
    assert result.features[0]["example_index"] == 0
    assert _answer_text(examples[0], result.features[0]) == "paris"
    windows = [f for f in result.features if f["example_index"] == 1]
    assert len(windows) > 3
    assert all(len(f["input_ids"]) <= 24 for f in windows)
    # the windows cover the whole context, consecutive windows overlap by the stride
    spans = [[s for s in f["offsets"] if s is not None] for f in windows]
    assert spans[0][0][0] == 0 and spans[-1][-1][1] == len(context)
    for previous, current in zip(spans, spans[1:]):
        assert previous[-6:] == current[:6]
    hits = [f for f in windows if f["start_positions"] != 0]
    assert hits, "no window holds the answer"
    for feature in hits:
        assert _answer_text(examples[1], feature) == "john"
        assert feature["end_positions"] >= feature["start_positions"]
    for feature in windows:
        if feature not in hits:
            assert feature["start_positions"] == feature["end_positions"] == 0
            inside = [s for s in feature["offsets"] if s is not None]
            start = examples[1]["answers"][0]["start"]
            assert not inside[0][0] <= start < start + 4 <= inside[-1][1]


def test_qa_answer_split_by_window_edges(tiny_tokenizer):
    # 16 - 3 specials - 1 question token = 12 context tokens per window, stride 4: windows
    # hold letters a..l, i..t, q..z
    spec = make_spec("span_qa", columns=2, max_length=16, doc_stride=4)
    context = "a b c d e f g h i j k l m n o p q r s t u v w x y z"

    def windows(answer: str) -> list[dict]:
        example = qa_example("what", context, answer)
        features = encode_examples(spec, [example], tiny_tokenizer, task_id=0).features
        assert len(features) == 3
        return [example, *features]

    # "h ... m" is only partly inside windows 1 and 2: no window holds it
    _, *features = windows("h i j k l m")
    assert [(f["start_positions"], f["end_positions"]) for f in features] == [(0, 0)] * 3
    # "j k l" lies in windows 1 and 2, at different positions
    example, first, second, third = windows("j k l")
    assert _answer_text(example, first) == _answer_text(example, second) == "j k l"
    assert first["start_positions"] != second["start_positions"]
    assert (third["start_positions"], third["end_positions"]) == (0, 0)


def test_qa_long_question_is_cut_and_counted(tiny_tokenizer):
    spec = make_spec("span_qa", columns=2, max_length=20, doc_stride=8)
    long_question = " ".join(["who is the man in the city"] * 5)
    examples = [
        qa_example(long_question, "john is the man in the city of paris.", "john"),
        qa_example("who?", "mary is happy.", "mary"),
    ]
    result = encode_examples(spec, examples, tiny_tokenizer, task_id=0)
    assert result.truncated == 1
    for feature in result.features:
        assert len(feature["input_ids"]) <= 20
    answered = [f for f in result.features if f["start_positions"]]
    assert {f["example_index"] for f in answered} == {0, 1}
    for feature in answered:
        assert _answer_text(examples[feature["example_index"]], feature) in {"john", "mary"}


def test_qa_without_answers_points_to_cls(tiny_tokenizer):
    spec = make_spec("span_qa", columns=2)
    example = {"id": "x", "question": "who?", "context": "the cat sits.", "answers": []}
    [feature] = encode_examples(spec, [example], tiny_tokenizer, task_id=0).features
    assert (feature["start_positions"], feature["end_positions"]) == (0, 0)


def test_example_index_across_chunks(tiny_tokenizer, monkeypatch):
    import camtl.data.tokenize as tokenize

    monkeypatch.setattr(tokenize, "CHUNK_SIZE", 2)
    spec = make_spec("classification")
    examples = [
        {"text_a": word, "text_b": None, "label": i}
        for i, word in enumerate(["good", "bad", "great", "awful", "happy"])
    ]
    features = encode_examples(spec, examples, tiny_tokenizer, task_id=0).features
    assert [f["example_index"] for f in features] == [0, 1, 2, 3, 4]
    assert [f["cls_labels"] for f in features] == [0, 1, 2, 3, 4]


def test_missing_token_type_ids_become_zeros(tiny_tokenizer):
    class NoTypes:
        """Wraps the tiny tokenizer and drops token_type_ids, like RoBERTa tokenizers."""

        is_fast = True

        def __call__(self, *args, **kwargs):
            encoding = tiny_tokenizer(*args, **kwargs)
            del encoding["token_type_ids"]
            return encoding

    spec = make_spec("classification", columns=2)
    examples = [{"text_a": "the cat", "text_b": "a dog", "label": 0}]
    [feature] = encode_examples(spec, examples, NoTypes(), task_id=0).features
    assert feature["token_type_ids"] == [0] * len(feature["input_ids"])


@pytest.mark.parametrize("kind", ["token_tagging", "span_qa"])
def test_slow_tokenizer_is_refused(kind):
    from camtl.errors import CamtlError

    class Slow:
        is_fast = False

    spec = make_spec(kind, columns=2 if kind == "span_qa" else 1)
    with pytest.raises(CamtlError, match="fast tokenizer"):
        encode_examples(spec, [], Slow(), task_id=0)
