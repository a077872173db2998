"""The test suite's own layout: no test module imports another (shared helpers are fixtures
in conftest.py or functions in camtl.testing)."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
IMPORT_OF_A_TEST_MODULE = re.compile(r"^\s*(from|import)\s+tests\.test_", re.MULTILINE)


def test_no_test_module_imports_another() -> None:
    offenders = [
        f"{path.name}: {match.group(0).strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        for match in IMPORT_OF_A_TEST_MODULE.finditer(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, f"move the shared helper to conftest.py or camtl.testing: {offenders}"
