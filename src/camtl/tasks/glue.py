"""GLUE-family recipes (the CA-MTL paper's benchmark), plus SNLI and SciTail from the hub.

Every recipe reads the Hugging Face hub by default (``nyu-mll/glue`` and friends). The same
task reads a local folder in the original GLUE TSV format when its source is overridden:

    tasks:
      - {name: sst2, source: {kind: glue_dir, root: /data/glue}}

Records from a GLUE folder are renamed to the hub's column names and their label values
mapped to the hub's class names (``GLUE_FILES``), so one TaskSpec serves both sources.
"""

from __future__ import annotations

import copy

from camtl.tasks.registry import register_task
from camtl.tasks.spec import GlueLayout, SourceSpec, TaskSpec

GLUE_HUB = "nyu-mll/glue"
_TRAIN_DEV = {"train": "train", "dev": "validation"}


def _binary(negative: str, positive: str) -> dict[str, str | None]:
    return {"0": negative, "1": positive}


_DEV = {"train": "train.tsv", "dev": "dev.tsv"}
_PAIR: dict[str, str | int] = {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}
_MNLI: dict[str, str | int] = {
    "premise": "sentence1",
    "hypothesis": "sentence2",
    "label": "gold_label",
}

GLUE_FILES: dict[str, GlueLayout] = {
    # CoLA's train/dev files have no header: source, label, original mark, sentence.
    "cola": GlueLayout(
        "CoLA",
        _DEV,
        {"sentence": 3, "label": 1},
        header=False,
        label_map=_binary("unacceptable", "acceptable"),
    ),
    "sst2": GlueLayout(
        "SST-2",
        _DEV,
        {"sentence": "sentence", "label": "label"},
        label_map=_binary("negative", "positive"),
    ),
    "mrpc": GlueLayout(
        "MRPC",
        _DEV,
        {"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"},
        label_map=_binary("not_equivalent", "equivalent"),
    ),
    "qqp": GlueLayout(
        "QQP",
        _DEV,
        {"question1": "question1", "question2": "question2", "label": "is_duplicate"},
        label_map=_binary("not_duplicate", "duplicate"),
    ),
    "stsb": GlueLayout(
        "STS-B", _DEV, {"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"}
    ),
    "mnli": GlueLayout("MNLI", {"train": "train.tsv", "dev": "dev_matched.tsv"}, _MNLI),
    "mnli_mm": GlueLayout("MNLI", {"train": "train.tsv", "dev": "dev_mismatched.tsv"}, _MNLI),
    "qnli": GlueLayout(
        "QNLI", _DEV, {"question": "question", "sentence": "sentence", "label": "label"}
    ),
    "rte": GlueLayout("RTE", _DEV, _PAIR),
    "wnli": GlueLayout("WNLI", _DEV, _PAIR, label_map=_binary("not_entailment", "entailment")),
    # The original releases of SNLI (snli_1.0/*.txt) and SciTail (SciTailV1.1/tsv_format).
    "snli_hub": GlueLayout(
        "snli_1.0",
        {split: f"snli_1.0_{split}.txt" for split in ("train", "dev", "test")},
        {"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"},
        label_map={"-": None},
    ),
    "scitail": GlueLayout(
        "tsv_format",
        {split: f"scitail_1.0_{split}.tsv" for split in ("train", "dev", "test")},
        {"premise": 0, "hypothesis": 1, "label": 2},
        header=False,
    ),
}


def _recipe(
    name: str,
    text_columns: list[str],
    labels: list[str] | None,
    metrics: list[str],
    description: str,
    hub: tuple[str, str | None] | None = None,
    split_names: dict[str, str] | None = None,
) -> TaskSpec:
    """One recipe; ``hub`` is (name, config), by default (nyu-mll/glue, the task name)."""
    task_type = "classification" if labels else "regression"
    hub_name, hub_config = hub or (GLUE_HUB, name)
    source = SourceSpec(
        kind="hub",
        hub_name=hub_name,
        hub_config=hub_config,
        split_names=dict(split_names or _TRAIN_DEV),
        layout=GLUE_FILES[name],
    )
    spec = TaskSpec(
        name=name,
        type=task_type,
        text_columns=text_columns,
        label_column="label",
        labels=labels,
        metrics=metrics,
        source=source,
        description=description,
    )
    spec.validate(f"glue.{name}", "")
    return spec


_NLI3 = ["entailment", "neutral", "contradiction"]
_NLI2 = ["entailment", "not_entailment"]
_NLI_COLUMNS = ["premise", "hypothesis"]

GLUE_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _recipe(
            "cola",
            ["sentence"],
            ["unacceptable", "acceptable"],
            ["mcc"],
            "CoLA: is the sentence grammatically acceptable? (GLUE)",
        ),
        _recipe(
            "sst2",
            ["sentence"],
            ["negative", "positive"],
            ["accuracy"],
            "SST-2: movie review sentence sentiment (GLUE)",
        ),
        _recipe(
            "mrpc",
            ["sentence1", "sentence2"],
            ["not_equivalent", "equivalent"],
            ["f1", "accuracy"],
            "MRPC: are the two news sentences paraphrases? (GLUE)",
        ),
        _recipe(
            "qqp",
            ["question1", "question2"],
            ["not_duplicate", "duplicate"],
            ["f1", "accuracy"],
            "QQP: are the two Quora questions duplicates? (GLUE)",
        ),
        _recipe(
            "stsb",
            ["sentence1", "sentence2"],
            None,
            ["pearson", "spearman"],
            "STS-B: sentence similarity from 0 to 5 (GLUE)",
        ),
        _recipe(
            "mnli",
            _NLI_COLUMNS,
            _NLI3,
            ["accuracy"],
            "MNLI: 3-way entailment, evaluated on the matched dev set (GLUE)",
            split_names={"train": "train", "dev": "validation_matched"},
        ),
        _recipe(
            "mnli_mm",
            _NLI_COLUMNS,
            _NLI3,
            ["accuracy"],
            "MNLI trained on MNLI train, evaluated on the mismatched dev set (GLUE)",
            hub=(GLUE_HUB, "mnli"),
            split_names={"train": "train", "dev": "validation_mismatched"},
        ),
        _recipe(
            "qnli",
            ["question", "sentence"],
            _NLI2,
            ["accuracy"],
            "QNLI: does the sentence answer the question? (GLUE)",
        ),
        _recipe(
            "rte",
            ["sentence1", "sentence2"],
            _NLI2,
            ["accuracy"],
            "RTE: does the first sentence entail the second? (GLUE)",
        ),
        _recipe(
            "wnli",
            ["sentence1", "sentence2"],
            ["not_entailment", "entailment"],
            ["accuracy"],
            "WNLI: Winograd schema as entailment (GLUE)",
        ),
        _recipe(
            "snli_hub",
            _NLI_COLUMNS,
            _NLI3,
            ["accuracy"],
            "SNLI 3-way entailment from the Hugging Face hub (rows without a gold label "
            "are dropped)",
            hub=("stanfordnlp/snli", None),
            split_names={"train": "train", "dev": "validation", "test": "test"},
        ),
        _recipe(
            "scitail",
            _NLI_COLUMNS,
            ["entails", "neutral"],
            ["accuracy"],
            "SciTail: science entailment, entails or neutral",
            hub=("allenai/scitail", "tsv_format"),
            split_names={"train": "train", "dev": "validation", "test": "test"},
        ),
    )
}

for _spec in GLUE_TASKS.values():
    register_task(copy.deepcopy(_spec))


def glue_task(name: str, root: str | None = None) -> TaskSpec:
    """A fresh copy of a GLUE-family recipe; with ``root``, read from a local GLUE folder."""
    if name not in GLUE_TASKS:
        raise KeyError(f"unknown GLUE-family task {name!r} (known: {', '.join(GLUE_TASKS)})")
    spec = copy.deepcopy(GLUE_TASKS[name])
    if root is not None:
        spec.source = SourceSpec(kind="glue_dir", root=str(root), layout=GLUE_FILES[name])
    return spec
