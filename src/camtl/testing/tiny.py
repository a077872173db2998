"""Tiny encoders of every family camtl knows, for unit tests: random weights, written to a folder.

The folder looks exactly like a downloaded checkpoint (config.json, safetensors weights,
tokenizer files), so tests exercise the same ``from_pretrained`` path a hub name takes.
"""

from __future__ import annotations

from pathlib import Path

TINY_WORDS = (
    "the a an is was are be to of and in on for with it this that not no yes good bad "
    "great awful movie film book food service man woman dog cat runs sits sleeps eats "
    "paris london john mary apple google new york city today tomorrow who what where "
    "which mentioned person location company sport music politics tech business happy "
    "sad love hate very really some many one two three red blue green big small"
).split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_vocab(folder: Path) -> Path:
    """A WordPiece vocab: specials, words, a few sub-word pieces and single letters."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = ["##s", "##ed", "##ing", "##ly", "##er"] + [f"##{c}" for c in letters]
    digits = [str(d) for d in range(10)]
    punct = list(".,!?'\"-:;()")
    vocab = SPECIAL + TINY_WORDS + letters + pieces + digits + punct
    path = folder / "vocab.txt"
    path.write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    return path


def make_tiny_tokenizer(folder: str | Path):
    """A fast uncased WordPiece tokenizer saved in ``folder`` (offsets and word ids work)."""
    from transformers import BertTokenizerFast  # type: ignore[attr-defined]  # v5: an alias

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_vocab(folder)
    # from_pretrained on a folder holding vocab.txt works on transformers 4 and 5 alike
    # (their constructors name the vocabulary argument differently).
    tokenizer = BertTokenizerFast.from_pretrained(folder, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    return tokenizer


SUBWORD_LAYOUTS = ("roberta", "byte_level", "sentencepiece")


def make_subword_tokenizer(layout: str):
    """A fast subword tokenizer trained on the tiny words, in RoBERTa's pair layout
    (<s> A </s></s> B </s>): ``roberta``, byte-level BPE with RoBERTa's offset trimming;
    ``byte_level``, the same without it; ``sentencepiece``, a Metaspace BPE as XLM-R and
    CamemBERT have. The last two count a word's leading space in its token's offsets."""
    import random

    from tokenizers import ByteLevelBPETokenizer, SentencePieceBPETokenizer
    from tokenizers.processors import RobertaProcessing, TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    if layout not in SUBWORD_LAYOUTS:
        raise ValueError(f"layout {layout!r}: one of {', '.join(SUBWORD_LAYOUTS)}")
    rng = random.Random(0)
    corpus = [" ".join(rng.choice(TINY_WORDS) for _ in range(12)) for _ in range(300)]
    model = SentencePieceBPETokenizer() if layout == "sentencepiece" else ByteLevelBPETokenizer()
    special = ["<s>", "<pad>", "</s>", "<unk>"]
    model.train_from_iterator(corpus, vocab_size=300, special_tokens=special, show_progress=False)
    model._tokenizer.post_processor = (
        RobertaProcessing(("</s>", 2), ("<s>", 0))
        if layout == "roberta"
        else TemplateProcessing(
            single="<s> $A </s>",
            pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", 0), ("</s>", 2)],
        )
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=model._tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


# each family's config fields, beside the shared ones (a tiny, v3-like DeBERTa; a ModernBERT
# whose sliding window, 2 either side, is shorter than the tests' inputs)
FAMILY_CONFIG: dict[str, dict[str, object]] = {
    "electra": {"embedding_size": None},  # None: the hidden size
    "distilbert": {"sinusoidal_pos_embds": False},
    "mpnet": {"relative_attention_num_buckets": 32},
    "deberta-v2": {
        "relative_attention": True,
        "position_buckets": 16,
        "max_relative_positions": -1,
        "pos_att_type": ["p2c", "c2p"],
        "share_att_key": True,
        "norm_rel_ebd": "layer_norm",
        "position_biased_input": False,
        "type_vocab_size": 0,
        "hidden_act": "gelu",
    },
    "modernbert": {
        "local_attention": 4,
        "global_attn_every_n_layers": 3,
        "type_vocab_size": None,
        "cls_token_id": 2,
        "sep_token_id": 3,
        "bos_token_id": 2,
        "eos_token_id": 3,
    },
}
TINY_MODEL_TYPES = (
    "bert",
    "roberta",
    "xlm-roberta",
    "electra",
    "camembert",
    "distilbert",
    "mpnet",
    "deberta-v2",
    "modernbert",
)


def make_tiny_encoder(
    folder: str | Path,
    model_type: str = "bert",
    hidden_size: int = 32,
    num_layers: int = 4,
    num_heads: int = 4,
    seed: int = 0,
) -> Path:
    """Write a tiny random encoder of ``model_type`` (one of ``TINY_MODEL_TYPES``).

    The tokenizer is always the tiny WordPiece one: these models test code paths, not
    language. Returns the folder, loadable with ``AutoModel.from_pretrained``.
    """
    import torch
    from transformers import AutoConfig, AutoModel

    folder = Path(folder)
    tokenizer = make_tiny_tokenizer(folder)
    fields: dict[str, object] = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "intermediate_size": hidden_size * 2,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "pad_token_id": tokenizer.pad_token_id,
    }
    for key, value in FAMILY_CONFIG.get(model_type, {}).items():
        if key == "embedding_size":
            fields[key] = hidden_size
        elif value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    if model_type == "distilbert":  # its own field names
        fields.update(dim=hidden_size, n_layers=num_layers, n_heads=num_heads)
        fields["hidden_dim"] = fields.pop("intermediate_size")
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "type_vocab_size"):
            fields.pop(key)
    config = AutoConfig.for_model(model_type, **fields)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    model.save_pretrained(folder)
    return folder
