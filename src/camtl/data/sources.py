"""Reading records: local files, GLUE-format folders, the Hugging Face hub and the cache.

A record is a plain dict with the source's own field names plus ``_file`` (where it came
from) and ``_row`` (1-based: the line where it starts in CSV/TSV/JSONL/CoNLL files, the
position of the record in JSON/Parquet/SQuAD files and hub splits).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from camtl.errors import DataError
from camtl.tasks.kinds.records import Record
from camtl.tasks.spec import FILE_FORMATS, TaskSpec

if TYPE_CHECKING:
    from camtl.tasks.spec import GlueLayout


SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".conll": "conll",
    ".bio": "conll",
}
HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
_FIELD_LIMIT = 2**31 - 1
Quoting = Literal[0, 1, 2, 3]  # csv.QUOTE_MINIMAL, QUOTE_ALL, QUOTE_NONNUMERIC, QUOTE_NONE


# ----------------------------------------------------------------------------- files


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """The file format: ``fmt`` when given, else from the suffix."""
    if fmt is not None:
        if fmt not in FILE_FORMATS:
            raise DataError(f"{path}: unknown format {fmt!r} (known: {', '.join(FILE_FORMATS)})")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        raise DataError(
            f"{path}: cannot tell the format from the suffix {suffix!r}; set "
            f"source.format (one of {', '.join(FILE_FORMATS)})"
        )
    return SUFFIX_FORMATS[suffix]


def read_records(
    path: str | Path,
    fmt: str | None = None,
    columns: list[str] | None = None,
    encoding: str = "utf-8",
    skipped: list[dict[str, Any]] | None = None,
    keep_empty_rows: bool = False,
) -> list[Record]:
    """Read one file into records (format from ``fmt`` or the suffix). ``columns`` names the
    fields of a CSV/TSV file that has no header row; ``encoding`` is the text files'
    (a UTF-8 byte-order mark is dropped either way). ``skipped``: when given, a JSONL line
    that is not a JSON object is appended to it (file, row, error) instead of stopping.
    ``keep_empty_rows``: a CSV/TSV row whose cells are all empty (``,``) is a record, as
    predict needs (one answer or error per input row); training data leaves them out."""
    readers: dict[str, Callable[..., list[Record]]] = {
        "csv": read_csv,
        "tsv": read_tsv,
        "jsonl": read_jsonl,
        "json": read_json,
        "parquet": read_parquet,
        "conll": read_conll,
        "squad": read_squad,
    }
    fmt = detect_format(path, fmt)
    if columns and fmt not in ("csv", "tsv"):
        raise DataError(
            f"{path}: source.columns names the fields of a header-less CSV or "
            f"TSV file; this file is {fmt}"
        )
    if fmt in ("csv", "tsv"):
        return _read_delimited(
            path,
            "," if fmt == "csv" else "\t",
            csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE,
            columns or None,
            encoding,
            keep_empty_rows,
        )
    if fmt == "jsonl":
        return read_jsonl(path, encoding, skipped)
    return readers[fmt](path) if fmt == "parquet" else readers[fmt](path, encoding)


def _codec(encoding: str) -> str:
    """The codec to open a text file with: UTF-8 drops a byte-order mark if there is one."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


@contextlib.contextmanager
def _reading(path: str | Path, encoding: str = "utf-8") -> Iterator[None]:
    """Turn the ways reading a text file fails into one-line DataErrors."""
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a file") from None
    except UnicodeDecodeError as exc:
        shown = "UTF-8" if codecs.lookup(encoding).name == "utf-8" else encoding
        raise DataError(
            f"{path}: not valid {shown} text (byte offset {exc.start}); if the file is in "
            "another encoding, name it in the task's source.encoding (for example latin-1, "
            "cp1252 or utf-16)"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The whole file as text (UTF-8 by default, BOM dropped, newlines kept)."""
    with _reading(path, encoding), open(path, encoding=_codec(encoding), newline="") as handle:
        return handle.read()


def iter_delimited(
    path: str | Path,
    delimiter: str,
    quoting: Quoting = csv.QUOTE_MINIMAL,
    encoding: str = "utf-8",
    keep_empty_rows: bool = False,
) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) of each non-blank row of a CSV/TSV file, streamed; a
    row of empty cells (``,``) counts as blank unless ``keep_empty_rows``."""
    kind = "CSV" if delimiter == "," else "delimited"
    csv.field_size_limit(_FIELD_LIMIT)  # long documents in one cell are fine
    with (
        _reading(path, encoding),
        open(path, encoding=_codec(encoding), newline="") as handle,
    ):
        reader = csv.reader(
            handle, delimiter=delimiter, quoting=quoting, strict=quoting != csv.QUOTE_NONE
        )
        line = 0
        while True:
            start = line + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise DataError(
                    f"{path}, line {reader.line_num}: malformed {kind} row ({exc})"
                ) from None
            line = reader.line_num
            if _is_record(row, keep_empty_rows):
                yield start, row


def _is_record(row: list[str], keep_empty_rows: bool) -> bool:
    """A blank line (nothing, or spaces only: one cell, unquoted) is never a record; a row
    of empty cells (``,``, or a quoted ``""``) is one when ``keep_empty_rows``."""
    if keep_empty_rows:
        return bool(row) and not (len(row) == 1 and row[0] and not row[0].strip())
    return any(cell.strip() for cell in row)


def _read_delimited(
    path: str | Path,
    delimiter: str,
    quoting: Quoting,
    columns: list[str] | None = None,
    encoding: str = "utf-8",
    keep_empty_rows: bool = False,
) -> list[Record]:
    rows = iter_delimited(path, delimiter, quoting, encoding, keep_empty_rows)
    if columns:
        header, like = list(columns), "source.columns"
    else:
        try:
            _, header = next(rows)
        except StopIteration:
            return []
        like = "the header"
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        # a dict keeps the last of two same-named columns; which one the user meant is unknown
        raise DataError(
            f"{path}: column {', '.join(repr(n) for n in repeated)} appears twice in {like}"
        )
    records = []
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(
                f"{path}, line {line}: expected {len(header)} fields like {like}, found {len(row)}"
            )
        record: Record = dict(zip(header, row))
        record.update(_file=str(path), _row=line)
        records.append(record)
    return records


def read_csv(path: str | Path, encoding: str = "utf-8") -> list[Record]:
    """A comma-separated file with a header row; values stay strings."""
    return _read_delimited(path, ",", csv.QUOTE_MINIMAL, encoding=encoding)


def read_tsv(path: str | Path, encoding: str = "utf-8") -> list[Record]:
    """A tab-separated file with a header row, quoting off (quotes are text, as in GLUE)."""
    return _read_delimited(path, "\t", csv.QUOTE_NONE, encoding=encoding)


def _lines(path: str | Path, encoding: str = "utf-8") -> list[str]:
    """Lines split on \n only (JSON strings may hold other line separators)."""
    return [line.rstrip("\r") for line in _read_text(path, encoding).split("\n")]


def _json_error(path: str | Path, exc: json.JSONDecodeError, line: int | None = None) -> DataError:
    return DataError(
        f"{path}, line {line or exc.lineno}: malformed JSON ({exc.msg} at column {exc.colno})"
    )


def read_jsonl(
    path: str | Path, encoding: str = "utf-8", skipped: list[dict[str, Any]] | None = None
) -> list[Record]:
    """One JSON object per line; blank lines are skipped. ``skipped``: see read_records."""
    records = []
    for number, line in enumerate(_lines(path, encoding), start=1):
        if not line.strip():
            continue
        try:
            records.append(_jsonl_record(path, line, number))
        except DataError as exc:
            if skipped is None:
                raise
            skipped.append({"file": str(path), "row": number, "error": str(exc)})
    return records


def _jsonl_record(path: str | Path, line: str, number: int) -> Record:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc, number) from None
    except (RecursionError, ValueError) as exc:  # nesting too deep, a 4,300-digit integer
        raise DataError(f"{path}, line {number}: unreadable JSON ({exc})") from None
    if not isinstance(value, dict):
        kind = type(value).__name__
        raise DataError(f"{path}, line {number}: expected a JSON object, got {kind}")
    return {**value, "_file": str(path), "_row": number}


def read_json(path: str | Path, encoding: str = "utf-8") -> list[Record]:
    """A JSON list of objects (a SQuAD-format file is recognised and read as SQuAD)."""
    try:
        data = json.loads(_read_text(path, encoding))
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc) from None
    if _is_squad(data):
        return _squad_records(path, data)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    records = []
    for number, value in enumerate(data, start=1):
        if not isinstance(value, dict):
            raise DataError(
                f"{path}, row {number}: expected a JSON object, got {type(value).__name__}"
            )
        records.append({**value, "_file": str(path), "_row": number})
    return records


def _plain(value: Any) -> Any:
    """NaN floats (missing cells) become None; everything else as is."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def read_parquet(path: str | Path) -> list[Record]:
    """A Parquet file (pyarrow); values become plain Python objects."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not Path(path).exists():
        raise DataError(f"{path}: file not found")
    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise DataError(f"{path}: cannot read as Parquet ({message})") from None
    return [
        {**{k: _plain(v) for k, v in row.items()}, "_file": str(path), "_row": number}
        for number, row in enumerate(rows, start=1)
    ]


def read_conll(path: str | Path, encoding: str = "utf-8") -> list[Record]:
    """``token<TAB or space>tag`` per line (the tag is the last field), blank line between
    sentences, ``-DOCSTART-`` lines skipped -> ``{"tokens": [...], "tags": [...]}``."""
    records: list[Record] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0

    def flush() -> None:
        nonlocal tokens, tags
        if tokens:
            records.append({"tokens": tokens, "tags": tags, "_file": str(path), "_row": start})
        tokens, tags = [], []

    for number, line in enumerate(_lines(path, encoding), start=1):
        if not line.strip() or line.startswith("-DOCSTART-"):
            flush()
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        parts = [part.strip() for part in parts]
        if len(parts) < 2 or not parts[0] or not parts[-1]:
            raise DataError(f"{path}, line {number}: expected 'token<TAB>tag', got {line!r}")
        if not tokens:
            start = number
        tokens.append(parts[0])
        tags.append(parts[-1])
    flush()
    return records


def _is_squad(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("data"), list)


def read_squad(path: str | Path, encoding: str = "utf-8") -> list[Record]:
    """SQuAD v1.1 JSON -> one record per question:
    ``{"id", "title", "question", "context", "answers": {"text": [...], "answer_start": [...]}}``.
    """
    try:
        data = json.loads(_read_text(path, encoding))
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc) from None
    if not _is_squad(data):
        raise DataError(f"{path}: not SQuAD format (expected an object with a 'data' list)")
    return _squad_records(path, data)


# JSON's names for the types a SQuAD file holds, for messages about the file (not Python's)
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", int: "an integer"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a number"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _need(path: str | Path, where: str, node: Any, key: str, kind: type) -> Any:
    if not isinstance(node, dict):
        raise DataError(f"{path}: {where}: expected an object with '{key}', got {_json_type(node)}")
    if key not in node:
        raise DataError(f"{path}: {where}: '{key}' is missing")
    value = node[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DataError(
            f"{path}: {where}.{key}: expected {_JSON_TYPES[kind]}, got {_json_type(value)}"
        )
    return value


def _squad_records(path: str | Path, data: dict[str, Any]) -> list[Record]:
    records: list[Record] = []
    for a, article in enumerate(data["data"]):
        title = article.get("title", "") if isinstance(article, dict) else ""
        for p, para in enumerate(_need(path, f"data[{a}]", article, "paragraphs", list)):
            where = f"data[{a}].paragraphs[{p}]"
            context = _need(path, where, para, "context", str)
            for q, qa in enumerate(_need(path, where, para, "qas", list)):
                records.append(
                    _squad_question(path, f"{where}.qas[{q}]", qa, context, title, len(records) + 1)
                )
    return records


def _squad_question(
    path: str | Path, where: str, qa: Any, context: str, title: str, number: int
) -> Record:
    question = _need(path, where, qa, "question", str)
    answers = _need(path, where, qa, "answers", list)
    texts, starts = [], []
    for i, answer in enumerate(answers):
        texts.append(_need(path, f"{where}.answers[{i}]", answer, "text", str))
        starts.append(_need(path, f"{where}.answers[{i}]", answer, "answer_start", int))
    return {
        "id": str(qa.get("id", f"q{number}")),
        "title": title,
        "question": question,
        "context": context,
        "answers": {"text": texts, "answer_start": starts},
        "_file": str(path),
        "_row": number,
    }


# ----------------------------------------------------------------------------- splits


def read_split(spec: TaskSpec, split: str) -> list[Record] | None:
    """The records of one split (those ``source.filter`` keeps), or None when the task's
    source has no such split."""
    records = _read_source_split(spec, split)
    wanted = spec.source.filter
    if records is None or not wanted:
        return records
    return [r for r in records if all(r.get(k) == v for k, v in wanted.items())]


def _read_source_split(spec: TaskSpec, split: str) -> list[Record] | None:
    kind = spec.source.kind
    if kind == "files":
        path = spec.source.paths.get(split)
        return (
            None
            if path is None
            else read_records(path, spec.source.format, spec.source.columns, spec.source.encoding)
        )
    if kind == "glue_dir":
        return _read_glue_dir(spec, split)
    if kind == "hub":
        return _read_hub(spec, split)
    if kind == "offline":
        return _read_offline(spec, split)
    raise DataError(f"task '{spec.name}': unknown source kind {kind!r}")


def source_label(spec: TaskSpec, split: str) -> str:
    """Where a split comes from, for messages (a path, or the hub name and split)."""
    source = spec.source
    if source.kind == "files":
        path = source.paths.get(split) or source.paths.get("train")
        return str(path) if path else f"task '{spec.name}'"
    if source.kind == "glue_dir":
        glue_path = _glue_path(spec, split)
        return str(glue_path) if glue_path is not None else str(source.root)
    if source.kind == "hub":
        return _hub_label(spec, _hub_split(spec, split) or split)
    return f"task '{spec.name}' ({source.kind} cache, split {split})"


# --- offline cache


def _read_offline(spec: TaskSpec, split: str) -> list[Record] | None:
    from camtl.data.offline import task_split_path  # written by the offline builders

    path = Path(task_split_path(spec.name, split))
    return read_jsonl(path) if path.exists() else None


# --- GLUE-format folders


def _glue_path(spec: TaskSpec, split: str) -> Path | None:
    """The file of a split in a GLUE-format folder (``root`` or ``root/<task folder>``)."""
    root = Path(str(spec.source.root))
    layout = spec.source.layout
    name = spec.source.paths.get(split) or (layout.files.get(split) if layout else None)
    if name is None:
        return None
    candidates = [root / layout.folder / name, root / name] if layout else [root / name]
    return next((path for path in candidates if path.exists()), candidates[0])


def _read_glue_dir(spec: TaskSpec, split: str) -> list[Record] | None:
    layout = spec.source.layout
    if layout is None and not spec.source.paths:
        raise DataError(
            f"task '{spec.name}': source kind 'glue_dir' needs source.layout (the "
            "GLUE-family recipes of 'camtl data list' bring theirs) or source.paths "
            "(split -> TSV file inside source.root)"
        )
    path = _glue_path(spec, split)
    if path is None:
        return None
    if not path.exists() and split == "test" and "test" not in spec.source.paths:
        return None  # an optional test file of the recipe that this folder lacks
    if not path.exists():
        raise DataError(
            f"{path}: file not found (task '{spec.name}', split '{split}', "
            f"source.root {spec.source.root})"
        )
    if layout is None:
        return read_tsv(path)
    return _glue_records(path, layout)


def _glue_records(path: Path, layout: GlueLayout) -> list[Record]:
    """Rows of a GLUE TSV renamed to the hub's fields, labels mapped to class names."""
    rows = iter_delimited(path, "\t", csv.QUOTE_NONE)
    index: dict[str, int] = {}
    if layout.header:
        header = next(rows, (0, []))[1]
        for field_name, column in layout.columns.items():
            if column not in header:
                raise DataError(
                    f"{path}: missing column '{column}' (columns present: {', '.join(header)})"
                )
            index[field_name] = header.index(column)
    else:
        index = {field_name: int(column) for field_name, column in layout.columns.items()}
    width = max(index.values()) + 1
    records = []
    for line, row in rows:
        if len(row) < width:
            raise DataError(
                f"{path}, line {line}: expected at least {width} tab-separated "
                f"fields, found {len(row)}"
            )
        record: Record = {field_name: row[i] for field_name, i in index.items()}
        label = record.get(layout.label_field)
        if label in layout.label_map:
            if layout.label_map[label] is None:
                continue
            record[layout.label_field] = layout.label_map[label]
        record.update(_file=str(path), _row=line)
        records.append(record)
    return records


# --- the Hugging Face hub


def _hub_split(spec: TaskSpec, split: str) -> str | None:
    """Our split's name on the hub; None when the source does not offer it.

    With ``split_names`` set, exactly the splits named there exist; without it, dev is
    'validation' and the others keep their names.
    """
    source = spec.source
    if source.split_names:
        return source.split_names.get(split)
    if source.paths and split not in source.paths:
        return None
    return HUB_SPLITS.get(split, split)


def _hub_label(spec: TaskSpec, hub_split: str) -> str:
    config = f":{spec.source.hub_config}" if spec.source.hub_config else ""
    return f"{spec.source.hub_name}{config}/{hub_split}"


def _hub_error(spec: TaskSpec, hub_split: str, exc: BaseException) -> DataError:
    lines = str(exc).strip().splitlines()
    detail = f"{exc.__class__.__name__}: {lines[0][:200]}" if lines else exc.__class__.__name__
    return DataError(
        f"hub dataset {_hub_label(spec, hub_split)}: cannot load ({detail}); "
        "without a network, download the data and use a local source "
        "(source kind 'glue_dir' for GLUE-format folders, or 'files')"
    )


def _read_hub(spec: TaskSpec, split: str) -> list[Record] | None:
    hub_split = _hub_split(spec, split)
    if hub_split is None:
        return None
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"task '{spec.name}': reading from the hub needs the 'datasets' "
            "package (pip install 'camtl[hub]')"
        ) from None
    kwargs: dict[str, Any] = {"split": hub_split}
    if spec.source.paths:  # packaged builders (json, csv, parquet) over local files
        kwargs["data_files"] = {_hub_split(spec, s) or s: p for s, p in spec.source.paths.items()}
    try:
        dataset = datasets.load_dataset(spec.source.hub_name, spec.source.hub_config, **kwargs)
    except Exception as exc:
        if not spec.source.split_names and "unknown split" in str(exc).lower():
            return None
        raise _hub_error(spec, hub_split, exc) from None
    return hub_records(spec, dataset, _hub_label(spec, hub_split))


def _class_names(feature: Any) -> tuple[list[str] | None, bool]:
    """(class names, is a list column) when a hub feature holds ClassLabel values."""
    names = getattr(feature, "names", None)
    if isinstance(names, list):
        return names, False
    inner = getattr(feature, "feature", None)
    inner_names = getattr(inner, "names", None)
    return (inner_names, True) if isinstance(inner_names, list) else (None, False)


def _name_of(names: list[str], value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return names[value] if 0 <= value < len(names) else None
    return value


def hub_records(spec: TaskSpec, dataset: Any, label: str) -> list[Record]:
    """Records of a hub split; ClassLabel integers become their class names (unless the
    task's labels are the integer codes) and rows whose label is -1 (no gold label) drop."""
    features = getattr(dataset, "features", None) or {}
    converters: dict[str, tuple[list[str], bool]] = {}
    for column, feature in features.items():
        names, is_list = _class_names(feature)
        if names and not (spec.labels and not set(names) & set(spec.labels)):
            converters[column] = (names, is_list)
    rows = dataset.to_list() if hasattr(dataset, "to_list") else list(dataset)
    records = []
    for number, row in enumerate(rows, start=1):
        record: Record = dict(row)
        for column, (names, is_list) in converters.items():
            value = record.get(column)
            record[column] = (
                [_name_of(names, v) for v in value]
                if is_list and value is not None
                else _name_of(names, value)
            )
        if spec.label_column in converters and record.get(spec.label_column) is None:
            continue
        record.update(_file=label, _row=number)
        records.append(record)
    return records
