"""`camtl serve`: every task of one trained model over HTTP, with mixed-task batching."""
