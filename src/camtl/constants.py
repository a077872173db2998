"""Values several modules must agree on."""

from __future__ import annotations

# the splits every task may have, in this order
SPLITS = ("train", "dev", "test")
# the label value a loss ignores (special tokens, sub-word continuations, other tasks' rows);
# torch's cross-entropy default
IGNORE_INDEX = -100
# the seed of every data split and subsample camtl makes itself (not the run's seed): the
# same examples are carved and kept whatever a run's seed is
DATA_SEED = 12
