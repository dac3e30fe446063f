"""The type-checked modules in tests/typing cover the whole public API and check misuse both ways.

mypy and pyright check those modules (``nox -s typecheck``); these tests guard what the checkers
cannot see: that a newly exported name is not forgotten, and that every expected error is
expected from both checkers.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

TYPING = Path(__file__).parent / "typing"
CHECKS = sorted(TYPING.glob("check_*.py"))


def imported_names(module: str) -> set[str]:
    """Names the check modules import from ``module``."""
    names: set[str] = set()
    for path in CHECKS:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == module:
                names.update(alias.name for alias in node.names)
    return names


class TestTypingChecks:
    @pytest.mark.parametrize(
        "module",
        [
            "tactical",
            "tactical.sqlalchemy",
            "tactical.testing",
            "tactical.outbox",
            "tactical.projections",
        ],
    )
    def test_every_public_name_is_type_checked(self, module: str) -> None:
        """Each name in a public module's __all__ is imported by some tests/typing module."""
        public = set(importlib.import_module(module).__all__)
        assert public - imported_names(module) == set()

    def test_every_expected_error_is_expected_from_both_checkers(self) -> None:
        """A line that expects a mypy error also expects a pyright error, and the reverse."""
        one_sided = []
        for path in CHECKS:
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                mypy = re.search(r"# type: ignore\[[\w, -]+\]", line)
                pyright = re.search(r"# pyright: ignore\[[\w, ]+\]", line)
                if bool(mypy) != bool(pyright):
                    one_sided.append(f"{path.name}:{number}")
        assert one_sided == []

    def test_the_checks_include_misuse(self) -> None:
        """Each check module has expected errors, so the checkers are shown rejecting misuse."""
        for path in CHECKS:
            assert "# pyright: ignore[" in path.read_text(encoding="utf-8"), path.name
