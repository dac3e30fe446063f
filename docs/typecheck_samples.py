"""Write the documentation's Python samples out as modules, for mypy and pyright to check.

Sybil runs every ```` ```python ```` block of the docs and README (``nox -s docs``); this makes
the same blocks type-checked as a user's code would be: one module per page, its blocks in
page order (a page's later blocks use the names of its earlier ones). ``{code-block}`` blocks
are illustrations (misuse, fragments) and are left out here; Sybil still runs them unless the
page skips them (``% skip: next``), so they too may only import what a reader has.

Usage: ``python docs/typecheck_samples.py OUTPUT_DIRECTORY``, then run the checkers on that
directory from the project root (``nox -s typecheck`` does both).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def module_name(page: Path) -> str:
    """``docs/how-to/alembic.md`` -> ``sample_how_to_alembic``: unique and importable."""
    relative = page.relative_to(ROOT).with_suffix("")
    parts = relative.parts[1:] if relative.parts[0] == "docs" else relative.parts
    return "sample_" + "_".join(re.sub(r"\W", "_", part).lower() for part in parts)


def write_samples(output: Path) -> list[Path]:
    """Write one module per page that has samples into ``output`` (emptied first)."""
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    written: list[Path] = []
    for page in PAGES:
        blocks = BLOCK.findall(page.read_text(encoding="utf-8"))
        if not blocks:
            continue
        module = output / f"{module_name(page)}.py"
        header = (
            f'"""The Python samples of {page.relative_to(ROOT)}, in page order."""\n\n'
        )
        module.write_text(header + "\n\n".join(blocks), encoding="utf-8")
        written.append(module)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    modules = write_samples(Path(sys.argv[1]))
    print(f"wrote {len(modules)} sample modules to {sys.argv[1]}")
