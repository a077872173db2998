"""Helpers for tests and examples: tiny randomly initialised encoders and tokenizers."""

from camtl.testing.tiny import TINY_WORDS, make_tiny_encoder, make_tiny_tokenizer

__all__ = ["TINY_WORDS", "make_tiny_encoder", "make_tiny_tokenizer"]
