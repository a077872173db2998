"""TaskSpec: everything the pipeline needs to know about one task."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from camtl.constants import SPLITS
from camtl.errors import ConfigError

if TYPE_CHECKING:
    from camtl.tasks.kinds import TaskKind


FILE_FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "conll", "squad")
SOURCE_KINDS = ("files", "offline", "hub", "glue_dir")


@dataclass
class GlueLayout:
    """Where a task's files sit in a local folder and how their columns map to records.

    folder:    sub-folder of ``source.root`` (``root`` itself also works when the files are
               directly inside it)
    files:     split -> file name (GLUE test files carry no labels, so they are left out)
    columns:   record field -> header name, or 0-based column index when ``header`` is False
    label_map: file label value -> class name; a value mapped to None drops the row
    """

    folder: str
    files: dict[str, str]
    columns: dict[str, str | int]
    header: bool = True
    label_field: str = "label"
    label_map: dict[str, str | None] = field(default_factory=dict)


@dataclass
class SourceSpec:
    """Where a task's examples come from.

    kind:
      files    -- local files, ``paths`` maps split -> path (format from ``format`` or suffix)
      offline  -- a built-in offline task, split files in the camtl cache (``camtl data fetch``)
      hub      -- a Hugging Face datasets name (``hub_name``/``hub_config``), needs a network
      glue_dir -- a local GLUE-format folder (``root``) with the task's TSV files
    ``split_names`` renames our splits to the source's (e.g. dev -> validation_matched).
    """

    kind: str = "files"
    format: str | None = None
    paths: dict[str, str] = field(default_factory=dict)
    root: str | None = None
    hub_name: str | None = None
    hub_config: str | None = None
    split_names: dict[str, str] = field(default_factory=dict)
    # files: the field names of header-less CSV/TSV files, in order
    columns: list[str] | None = None
    # files: the text encoding of the files (a UTF-8 byte-order mark is dropped either way)
    encoding: str = "utf-8"
    # a row that fails validation (an empty text, a missing label): stop with its error, or
    # leave it out, count it in the log and list it in the run directory (skipped_rows.jsonl)
    on_bad_rows: Literal["error", "skip"] = "error"
    # keep only the records whose fields equal these values (one subset of a hub dataset
    # that mixes several, e.g. MRQA's {subset: SQuAD})
    filter: dict[str, Any] = field(default_factory=dict)
    # glue_dir: where the task's files sit in the folder and how their columns map to
    # records (the GLUE-family recipes bring theirs; without one, ``paths`` name TSV files
    # with a header row whose columns are the record fields)
    layout: GlueLayout | None = None
    # Offline tasks: dev/test carved from train when the source lacks them.
    package: str | None = None
    license: str | None = None

    def validate(self, path: str, where: str) -> None:
        prefix = f"{where}: " if where else ""
        if self.kind not in SOURCE_KINDS:
            raise ConfigError(
                f"{prefix}key '{path}.kind': {self.kind!r} is not allowed "
                f"(allowed: {', '.join(SOURCE_KINDS)})"
            )
        if self.format is not None and self.format not in FILE_FORMATS:
            raise ConfigError(
                f"{prefix}key '{path}.format': {self.format!r} is not allowed "
                f"(allowed: {', '.join(FILE_FORMATS)})"
            )
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigError(
                f"{prefix}key '{path}.encoding': unknown text encoding {self.encoding!r} "
                "(for example utf-8, latin-1, cp1252, utf-16)"
            ) from None
        for split in self.paths:
            if split not in SPLITS:
                raise ConfigError(
                    f"{prefix}key '{path}.paths.{split}': unknown split "
                    f"(allowed: {', '.join(SPLITS)})"
                )
        if self.kind == "files" and "train" not in self.paths:
            raise ConfigError(f"{prefix}key '{path}.paths.train' is required for kind 'files'")
        if self.kind == "hub" and not self.hub_name:
            raise ConfigError(f"{prefix}key '{path}.hub_name' is required for kind 'hub'")
        if self.kind == "glue_dir" and not self.root:
            raise ConfigError(f"{prefix}key '{path}.root' is required for kind 'glue_dir'")


@dataclass
class CrossFit:
    """Train on every fold of train but one (``held_out``, 0-based, of ``folds``): what a
    cross-fitted teacher sees, so that its outputs on the held-out fold are predictions on
    text it never trained on (``camtl baseline single-task --folds``; camtl.data.folds)."""

    folds: int
    held_out: int

    def validate(self, path: str, where: str) -> None:
        prefix = f"{where}: " if where else ""
        if self.folds < 2:
            raise ConfigError(f"{prefix}key '{path}.folds': must be at least 2, got {self.folds}")
        if not 0 <= self.held_out < self.folds:
            raise ConfigError(
                f"{prefix}key '{path}.held_out': must be 0 to {self.folds - 1} "
                f"(one of {self.folds} folds), got {self.held_out}"
            )


@dataclass
class TaskSpec:
    """One task.

    ``type`` names its kind (camtl.tasks.kinds; docs/tasks.md says what each kind reads
    from ``text_columns`` and ``label_column``). ``labels``: class or tag names in order;
    None means "all values seen in train, sorted". ``options``: the kind's own settings.
    """

    name: str
    type: str
    text_columns: list[str]
    label_column: str
    labels: list[str] | None = None
    metrics: list[str] = field(default_factory=list)
    max_length: int = 128
    doc_stride: int | None = None  # span QA; None: max_length // 2 (span_qa.doc_stride)
    max_train_examples: int | None = None
    max_dev_examples: int | None = None
    max_test_examples: int | None = None
    # a seeded subset of this share of train (after max_train_examples): few-shot runs, and
    # `camtl add-task --fraction`, which picks the same subset for the same fraction
    train_fraction: float | None = None
    # train without one fold of train (a cross-fitted teacher; after train_fraction)
    cross_fit: CrossFit | None = None
    source: SourceSpec = field(default_factory=SourceSpec)
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    # columns made from a record's fields before the kind reads it: name -> a Python format
    # template, e.g. {query: "Does '{span2_text}' refer to '{span1_text}'?"}
    derived_columns: dict[str, str] = field(default_factory=dict)

    def validate(self, path: str, where: str) -> None:
        prefix = f"{where}: " if where else ""
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(
                f"{prefix}key '{path}.name': {self.name!r} must be letters, digits, '_' or '-'"
            )
        kind = self.kind_or_error(path, prefix)
        if len(self.text_columns) not in kind.text_arity:
            raise ConfigError(
                f"{prefix}key '{path}.text_columns': a {self.type} task "
                f"takes {_counts(kind.text_arity)} column(s), "
                f"got {self.text_columns!r}"
            )
        if not self.metrics:
            self.metrics = list(kind.default_metrics)
        for i, metric in enumerate(self.metrics):
            if metric not in kind.metrics:
                raise ConfigError(
                    f"{prefix}key '{path}.metrics[{i}]': {metric!r} is not a "
                    f"{self.type} metric (allowed: {', '.join(kind.metrics)})"
                )
        from camtl.structured import from_dict

        from_dict(kind.Options, dict(self.options or {}), f"{path}.options", where)
        if self.labels is not None:
            for i, label in enumerate(self.labels):
                if label in self.labels[:i]:
                    raise ConfigError(
                        f"{prefix}key '{path}.labels[{i}]': label {label!r} appears twice"
                    )
        if self.max_length < 8:
            raise ConfigError(f"{prefix}key '{path}.max_length': must be at least 8")
        for key in ("max_train_examples", "max_dev_examples", "max_test_examples"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{prefix}key '{path}.{key}': must be a positive integer")
        if self.train_fraction is not None and not 0.0 < self.train_fraction <= 1.0:
            raise ConfigError(
                f"{prefix}key '{path}.train_fraction': must be in (0, 1], got {self.train_fraction}"
            )
        for column, template in self.derived_columns.items():
            try:
                template_fields(template)
            except ValueError as exc:
                raise ConfigError(
                    f"{prefix}key '{path}.derived_columns.{column}': not a format template "
                    f"({exc}); write fields as {{name}} and a literal brace as {{{{ or }}}}"
                ) from None
        if self.cross_fit is not None and kind.fold_fields is None:
            raise ConfigError(
                f"{prefix}key '{path}.cross_fit': a {self.type} task cannot be cross-fitted "
                "(its kind does not name the fields that are its text: fold_fields)"
            )
        kind.check_spec(self, path, prefix)

    def kind_or_error(self, path: str = "task", prefix: str = "") -> TaskKind:
        """The registered kind named by ``type``; ConfigError lists the registered ones."""
        from camtl.tasks.kinds import get_kind, kind_names

        try:
            return get_kind(self.type)
        except KeyError:
            raise ConfigError(
                f"{prefix}key '{path}.type': {self.type!r} is not allowed "
                f"(allowed: {', '.join(map(repr, kind_names()))})"
            ) from None

    @property
    def kind(self) -> TaskKind:
        return self.kind_or_error(self.name)

    @property
    def primary_metric(self) -> str:
        return self.metrics[0] if self.metrics else self.kind.default_metrics[0]

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    def max_examples(self, split: str) -> int | None:
        return getattr(self, f"max_{split}_examples")

    def fraction_size(self, available: int) -> int:
        """How many of ``available`` training examples ``train_fraction`` keeps (>= 1)."""
        if self.train_fraction is None:
            return available
        return max(1, min(available, round(self.train_fraction * available)))


def template_fields(template: str) -> list[str]:
    """The field names a format template reads ("{a} and {b}" -> [a, b])."""
    import string

    names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    if any(not name or not name.isidentifier() for name in names):
        raise ValueError("every {field} must name a column")
    return names


def anchor_paths(task: TaskSpec, base_dir: Path) -> None:
    """Relative data paths are relative to the config file's folder (made absolute, so the
    resolved config saved in a run directory works from anywhere)."""
    source = task.source
    if source.kind in ("files", "hub"):  # glue_dir paths are relative to its root
        source.paths = {
            split: str(base_dir / p) if not Path(p).is_absolute() else p
            for split, p in source.paths.items()
        }
    if source.root and not Path(source.root).is_absolute():
        source.root = str(base_dir / source.root)


def _counts(allowed: tuple[int, ...]) -> str:
    """``1 or 2``; a longer run of numbers as ``3 to 27``."""
    if len(allowed) > 2 and list(allowed) == list(range(allowed[0], allowed[-1] + 1)):
        return f"{allowed[0]} to {allowed[-1]}"
    return " or ".join(map(str, allowed))
