"""Task data: reading sources, validating examples, tokenizing and batching (see docs)."""
