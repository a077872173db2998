"""Recipes of the paper's 24-task setup beyond GLUE: SuperGLUE, MRQA and WNUT 2017.

They read the Hugging Face hub (a network and ``pip install 'camtl[hub]'``), or local
copies through a ``source`` override with the same fields. What is left out and why:
- SuperGLUE's RTE is GLUE's RTE (the ``rte`` recipe); a run needs it once.
- MultiRC (per-question exact match over a variable set of answer options) and ReCoRD
  (entity cloze over a passage's entity list) have no faithful form in the task kinds
  yet; a per-option binary classification would score a different metric.
- WiC and WSC are span-based in the original; here the target word (WiC) or the two
  spans (WSC) are written into the text by ``derived_columns``, as the T5 recipes do.
"""

from __future__ import annotations

from camtl.tasks.registry import register_task
from camtl.tasks.spec import SourceSpec, TaskSpec

SUPERGLUE_HUB = "aps/super_glue"
MRQA_HUB = "mrqa-workshop/mrqa"
WNUT17_HUB = "leondz/wnut_17"
_TRAIN_DEV = {"train": "train", "dev": "validation"}  # SuperGLUE's test labels are hidden
_BOOL = ["False", "True"]


def _superglue(
    name: str,
    config: str,
    kind: str,
    text_columns: list[str],
    description: str,
    labels: list[str] | None = None,
    metrics: tuple[str, ...] = ("accuracy",),
    derived: dict[str, str] | None = None,
) -> TaskSpec:
    return TaskSpec(
        name=name,
        type=kind,
        text_columns=text_columns,
        label_column="label",
        labels=labels,
        metrics=list(metrics),
        max_length=256,
        derived_columns=dict(derived or {}),
        source=SourceSpec(
            kind="hub", hub_name=SUPERGLUE_HUB, hub_config=config, split_names=_TRAIN_DEV
        ),
        description=description,
    )


SUPERGLUE_TASKS = [
    _superglue(
        "boolq",
        "boolq",
        "classification",
        ["question", "passage"],
        "BoolQ: a yes/no question about a Wikipedia passage (SuperGLUE)",
        _BOOL,
    ),
    _superglue(
        "cb",
        "cb",
        "classification",
        ["premise", "hypothesis"],
        "CommitmentBank: 3-way entailment of an embedded clause (SuperGLUE)",
        ["entailment", "contradiction", "neutral"],
        ("macro_f1", "accuracy"),
    ),
    _superglue(
        "copa",
        "copa",
        "multiple_choice",
        ["context", "choice1", "choice2"],
        "COPA: the more plausible cause or effect of a premise, of two (SuperGLUE)",
        derived={"context": "{premise} What was the {question}?"},
    ),
    _superglue(
        "wic",
        "wic",
        "classification",
        ["word_sentence1", "sentence2"],
        "WiC: is the word used in the same sense in both sentences? (SuperGLUE)",
        _BOOL,
        derived={"word_sentence1": "{word}: {sentence1}"},
    ),
    _superglue(
        "wsc",
        "wsc.fixed",
        "classification",
        ["text", "query"],
        "WSC: does the pronoun refer to the noun phrase? (SuperGLUE)",
        _BOOL,
        derived={"query": 'Does "{span2_text}" refer to "{span1_text}"?'},
    ),
]

# MRQA's six in-domain sets share one hub dataset; ``subset`` tells them apart
MRQA_SUBSETS = {
    "mrqa_squad": "SQuAD",
    "mrqa_newsqa": "NewsQA",
    "mrqa_triviaqa": "TriviaQA-web",
    "mrqa_searchqa": "SearchQA",
    "mrqa_hotpotqa": "HotpotQA",
    "mrqa_naturalquestions": "NaturalQuestionsShort",
}

MRQA_TASKS = [
    TaskSpec(
        name=name,
        type="span_qa",
        text_columns=["question", "context"],
        label_column="answers",  # a list of answer strings: located in the context
        metrics=["squad_f1", "exact_match"],
        derived_columns={"id": "{qid}"},
        max_length=256,
        doc_stride=128,
        source=SourceSpec(
            kind="hub", hub_name=MRQA_HUB, split_names=_TRAIN_DEV, filter={"subset": subset}
        ),
        description=f"MRQA 2019 shared task, {subset} (extractive QA)",
    )
    for name, subset in MRQA_SUBSETS.items()
]

WNUT17_LABELS = ["O"] + [
    f"{prefix}-{kind}"
    for kind in ("corporation", "creative-work", "group", "location", "person", "product")
    for prefix in ("B", "I")
]

WNUT17 = TaskSpec(
    name="wnut17",
    type="token_tagging",
    text_columns=["tokens"],
    label_column="ner_tags",
    labels=WNUT17_LABELS,
    metrics=["entity_f1", "token_accuracy"],
    max_length=256,
    source=SourceSpec(
        kind="hub",
        hub_name=WNUT17_HUB,
        split_names={"train": "train", "dev": "validation", "test": "test"},
    ),
    description="WNUT 2017 emerging and rare entities in social media text (NER)",
)

BENCHMARK_TASKS = {spec.name: spec for spec in [*SUPERGLUE_TASKS, *MRQA_TASKS, WNUT17]}

for _spec in BENCHMARK_TASKS.values():
    _spec.validate(f"benchmarks.{_spec.name}", "")
    register_task(_spec)
