"""Reading one field of a source record, with one-line errors naming the file and row.

The task kinds share these; every problem is a ``DataError`` that points at the record.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from camtl.errors import DataError

Record = dict[str, Any]
# keys the readers add to every record: the file it came from and its 1-based row
META_KEYS = ("_file", "_row")


def where(record: Record) -> str:
    return f"{record.get('_file', '<records>')}, row {record.get('_row', '?')}"


def field(record: Record, column: str) -> Any:
    """A record's value; a missing column names the columns that are there."""
    if column not in record:
        present = ", ".join(str(k) for k in record if k not in META_KEYS) or "none"
        raise DataError(f"{where(record)}: missing column '{column}' (columns present: {present})")
    return record[column]


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def label_key(value: Any) -> str | None:
    """The string form a class label or tag is matched by: the numbers ``1`` and ``1.0`` and
    the text ``"1"`` agree; text is compared as written (a CSV cell ``1.0`` is not ``"1"``)."""
    if is_missing(value) or (isinstance(value, str) and not value.strip()):
        return None  # an empty CSV cell is a missing label, not a class named ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def label_in(record: Record, column: str, value: Any) -> str | None:
    """``label_key`` of a value read from ``record``'s ``column``: text or a number; a list
    or mapping is an error naming the row, not a class named ``"['pos']"``."""
    if not is_missing(value) and not isinstance(value, (str, int, float)):
        raise DataError(
            f"{where(record)}: column '{column}' holds a {type(value).__name__} where a label "
            "(text or a number) belongs"
        )
    return label_key(value)


def unicode_problem(value: str) -> str | None:
    """Why ``value`` is not valid Unicode, or None. JSON can carry a lone surrogate
    (``"\\ud800"``), which no tokenizer can encode; files, predict and serve refuse it alike."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid Unicode ({exc.reason} at character {exc.start})"
    return None


def check_unicode(record: Record, column: str, value: str) -> str:
    """``value``, or a DataError naming the row when it is not valid Unicode."""
    problem = unicode_problem(value)
    if problem:
        raise DataError(f"{where(record)}: column '{column}' is {problem}")
    return value


def show(labels: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(labels[:limit])
    return shown + (f", ... ({len(labels)} in all)" if len(labels) > limit else "")


def sort_labels(keys: Iterable[str]) -> list[str]:
    """Sorted; integer-like labels sort by value (2 before 10)."""
    keys = set(keys)
    try:
        return sorted(keys, key=int)
    except ValueError:
        return sorted(keys)


def as_list(record: Record, column: str) -> list[Any]:
    """A list column; a string is split on whitespace (handy for CSV files)."""
    value = field(record, column)
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)):
        return list(value)
    raise DataError(
        f"{where(record)}: column '{column}' must hold a list, got {type(value).__name__}"
    )


def text(record: Record, column: str, allow_empty: bool = False) -> str:
    """The record's text in ``column``; an empty one is an error unless ``allow_empty``
    (a missing value, such as an empty CSV cell, reads as empty)."""
    value = field(record, column)
    if is_missing(value):
        value = ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise DataError(
            f"{where(record)}: column '{column}' must hold text, got {type(value).__name__}"
        )
    if not allow_empty and not value.strip():
        raise DataError(f"{where(record)}: empty text in column '{column}'")
    return check_unicode(record, column, value)


def class_index(record: Record, column: str, index: dict[str, int], labels: Sequence[str]) -> int:
    """The index of the record's class label in ``labels``."""
    key = label_in(record, column, field(record, column))
    if key is None:
        raise DataError(f"{where(record)}: missing label in column '{column}'")
    if key not in index:
        raise DataError(
            f"{where(record)}: label {key!r} in column '{column}' is not one of "
            f"the task's labels ({show(labels)})"
        )
    return index[key]


def record_id(record: Record, split: str) -> str:
    """The record's ``id`` field, or one made from its split and row."""
    raw = record.get("id")
    return str(raw) if not is_missing(raw) and str(raw) else f"{split}-{record.get('_row', '?')}"
