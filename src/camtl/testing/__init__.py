"""Helpers for tests and examples: tiny randomly initialised encoders and tokenizers."""

from camtl.testing.tiny import (
    SUBWORD_LAYOUTS,
    TINY_WORDS,
    make_subword_tokenizer,
    make_tiny_encoder,
    make_tiny_tokenizer,
)

__all__ = [
    "SUBWORD_LAYOUTS",
    "TINY_WORDS",
    "make_subword_tokenizer",
    "make_tiny_encoder",
    "make_tiny_tokenizer",
]
