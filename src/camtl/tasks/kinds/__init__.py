"""Task kinds, one module each, registered by name (the ``type`` of a task in a config).

Adding a kind: subclass ``TaskKind`` in a new module here, decorate it with
``@register_kind("name")`` and import the module below. tests/test_kinds.py then runs it
from record to metric on the tiny encoders.
"""

from camtl.tasks.kinds import (  # noqa: F401  (imported to register)
    classification,
    multi_label,
    multiple_choice,
    regression,
    span_qa,
    token_tagging,
)
from camtl.tasks.kinds.base import (
    BatchField,
    KindSample,
    ScoringContext,
    TaskKind,
    all_batch_fields,
    get_kind,
    higher_is_better,
    kind_names,
    register_kind,
)

__all__ = [
    "BatchField",
    "KindSample",
    "ScoringContext",
    "TaskKind",
    "all_batch_fields",
    "get_kind",
    "higher_is_better",
    "kind_names",
    "register_kind",
]
