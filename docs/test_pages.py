"""Checks on the documentation's pages themselves, beyond running their samples (conftest.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(
    [
        *(page for page in (ROOT / "docs").rglob("*.md") if "_build" not in page.parts),
        ROOT / "README.md",
    ]
)
# Characters of a code line that fit furo's content column at a 1280 px wide window without
# scrolling (about 93 in Chromium's default monospace font), with a margin for wider fonts.
CODE_WIDTH = 88
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
# Fenced directives whose body is not shown as code.
NOT_CODE = re.compile(r"^\{(eval-rst|toctree|include|diagram|figure|image)\}")


def code_blocks(page: Path) -> list[tuple[int, str, list[str]]]:
    """The fenced code blocks of ``page``: (line of the opening fence, info string, lines)."""
    blocks: list[tuple[int, str, list[str]]] = []
    fence: str | None = None
    for number, line in enumerate(
        page.read_text(encoding="utf-8").splitlines(), start=1
    ):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence, info, start, body = (
                opening["fence"],
                opening["info"].strip(),
                number,
                [],
            )
        elif fence is not None and line.strip() == fence:
            if not NOT_CODE.match(info):
                blocks.append((start, info, body))
            fence = None
        elif fence is not None:
            body.append(line)
    return blocks


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


class TestCodeBlocks:
    @pytest.mark.parametrize("page", PAGES, ids=_page_id)
    def test_no_code_line_scrolls_sideways(self, page: Path) -> None:
        """Every line of a code block fits the page's content width (CODE_WIDTH characters)."""
        too_wide = [
            f"{_page_id(page)}:{start + offset + 1}: {len(line)} characters: {line.strip()}"
            for start, _, body in code_blocks(page)
            for offset, line in enumerate(body)
            if len(line) > CODE_WIDTH
        ]
        assert not too_wide, (
            f"code lines wider than {CODE_WIDTH} characters:\n" + "\n".join(too_wide)
        )

    @pytest.mark.parametrize("page", PAGES, ids=_page_id)
    def test_every_sample_test_function_is_called(self, page: Path) -> None:
        """A ``def test_...`` in a page's samples is also called there, so the docs run it."""
        samples = [
            "\n".join(body)
            for _, info, body in code_blocks(page)
            if info == "python" or info.startswith("python ")
        ]
        defined: set[str] = set()
        called: set[str] = set()
        for sample in samples:
            tree = ast.parse(sample)
            defined |= {
                node.name
                for node in tree.body
                if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
            }
            called |= {
                node.func.id
                for node in ast.walk(tree)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            }
        assert defined <= called, (
            f"never called on the page: {sorted(defined - called)}"
        )

    def test_the_pages_are_found(self) -> None:
        """The checks above see the tutorial and the index (a wrong glob would check nothing)."""
        names = {_page_id(page) for page in PAGES}
        assert {"docs/index.md", "docs/tutorial/insurance.md", "README.md"} <= names


class TestWording:
    @pytest.mark.parametrize("page", PAGES, ids=_page_id)
    def test_no_page_cites_documents_readers_do_not_have(self, page: Path) -> None:
        """Pages state a rule and its reason instead of citing the project's design notes."""
        text = page.read_text(encoding="utf-8").lower()
        assert "design document" not in text
