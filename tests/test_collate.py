"""features -> padded batch tensors for a batch mixing the built-in task kinds."""

from __future__ import annotations

import math

import pytest
import torch

from camtl.data.collate import Collator, batch_keys, collate_features
from camtl.data.tokenize import encode_examples
from camtl.tasks.spec import TaskSpec

PAD = 0


def make_spec(kind: str, columns: int) -> TaskSpec:
    return TaskSpec(name=kind, type=kind, text_columns=["a", "b"][:columns], label_column="label")


@pytest.fixture()
def mixed_features(tiny_tokenizer) -> list[dict]:
    cls = encode_examples(
        make_spec("classification", 2),
        [{"text_a": "the cat", "text_b": "a dog", "label": 1}],
        tiny_tokenizer,
        task_id=0,
    ).features
    reg = encode_examples(
        make_spec("regression", 1),
        [{"text_a": "good", "text_b": None, "label": 2.5}],
        tiny_tokenizer,
        task_id=1,
    ).features
    tag = encode_examples(
        make_spec("token_tagging", 1),
        [{"tokens": ["john", "catss"], "tags": [1, 0]}],
        tiny_tokenizer,
        task_id=2,
    ).features
    context = "john lives in london with mary and a very big dog today."
    qa = encode_examples(
        make_spec("span_qa", 2),
        [
            {
                "id": "q",
                "question": "who lives in london?",
                "context": context,
                "answers": [{"text": "john", "start": 0}],
            }
        ],
        tiny_tokenizer,
        task_id=3,
    ).features
    return cls + reg + tag + qa


def test_mixed_batch_shapes_and_padding(mixed_features):
    batch = collate_features(mixed_features, pad_token_id=PAD)
    assert tuple(batch) == batch_keys()
    lengths = [len(f["input_ids"]) for f in mixed_features]
    size, longest = len(mixed_features), max(lengths)
    for key in ("input_ids", "attention_mask", "token_type_ids", "tag_labels"):
        assert batch[key].shape == (size, longest) and batch[key].dtype == torch.long
    for key in ("task_ids", "cls_labels", "start_positions", "end_positions"):
        assert batch[key].shape == (size,) and batch[key].dtype == torch.long
    assert batch["reg_labels"].shape == (size,) and batch["reg_labels"].dtype == torch.float

    for row, (feature, length) in enumerate(zip(mixed_features, lengths)):
        assert batch["input_ids"][row, :length].tolist() == feature["input_ids"]
        assert batch["input_ids"][row, length:].eq(PAD).all()
        assert batch["attention_mask"][row].sum() == length
        assert batch["token_type_ids"][row, length:].eq(0).all()
    assert batch["task_ids"].tolist() == [0, 1, 2, 3]


def test_mixed_batch_labels(mixed_features):
    batch = collate_features(mixed_features, pad_token_id=PAD)
    assert batch["cls_labels"].tolist() == [1, -100, -100, -100]
    reg = batch["reg_labels"].tolist()
    assert reg[1] == 2.5 and all(math.isnan(reg[i]) for i in (0, 2, 3))
    tags = batch["tag_labels"]
    assert tags[[0, 1, 3]].eq(-100).all()
    tag_feature = mixed_features[2]
    n = len(tag_feature["tag_labels"])
    assert tags[2, :n].tolist() == tag_feature["tag_labels"] == [-100, 1, 0, -100, -100, -100]
    assert tags[2, n:].eq(-100).all()
    qa = mixed_features[3]
    assert batch["start_positions"].tolist() == [-100, -100, -100, qa["start_positions"]]
    assert batch["end_positions"].tolist() == [-100, -100, -100, qa["end_positions"]]
    assert qa["start_positions"] > 0


def test_pad_token_id_is_used_and_collator_matches(mixed_features):
    direct = collate_features(mixed_features, pad_token_id=7)
    shortest = min(range(len(mixed_features)), key=lambda i: len(mixed_features[i]["input_ids"]))
    assert direct["input_ids"][shortest, -1].item() == 7
    collator = Collator(pad_token_id=7)
    via_class = collator(mixed_features)
    for key in batch_keys():
        assert torch.equal(direct[key].nan_to_num(-1.0), via_class[key].nan_to_num(-1.0))
    assert "7" in repr(collator)


def test_unlabelled_features_are_ignored():
    features = [
        {
            "input_ids": [2, 5, 3],
            "attention_mask": [1, 1, 1],
            "token_type_ids": [0, 0, 0],
            "task_id": 0,
            "example_index": 0,
            "cls_labels": None,
        }
    ]
    batch = collate_features(features, pad_token_id=0)
    assert batch["cls_labels"].tolist() == [-100]
    assert math.isnan(batch["reg_labels"].item())


def test_empty_batch_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        collate_features([], pad_token_id=0)


def test_works_as_dataloader_collate_fn(mixed_features):
    from torch.utils.data import DataLoader

    loader = DataLoader(mixed_features, batch_size=2, collate_fn=Collator(0))
    batches = list(loader)
    assert len(batches) == 2
    assert batches[0]["input_ids"].shape[0] == 2
