"""Sphinx configuration for tactical's documentation."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import sys
import typing
from abc import ABC
from pathlib import Path
from typing import Any

# autodoc imports tactical: the installed one (nox -s docs installs the wheel), or else this
# checkout's source, so that the docs also build from a checkout without installing.
if importlib.util.find_spec("tactical") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
# The docs' own extensions (diagrams).
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "tactical"
author = "The tactical developers"
copyright = "2026, The tactical developers"
try:
    release = importlib.metadata.version("tactical")
except (
    importlib.metadata.PackageNotFoundError
):  # building from a checkout without installing
    release = "0+unknown"
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "diagrams",
]
myst_enable_extensions = ["colon_fence", "deflist"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "conftest.py", "test_pages.py", "_ext", "diagrams"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Inventories are vendored (from Debian's python3.11-doc and python-sqlalchemy-doc packages)
# so the build needs no network; links still point at the published documentation.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", "_inventories/python-3.11.inv"),
    "sqlalchemy": (
        "https://docs.sqlalchemy.org/en/20/",
        "_inventories/sqlalchemy-1.4.inv",
    ),
}
# Type variables appear in signatures but have no page of their own.
nitpick_ignore_regex = [
    ("py:.*", r"(.*\.)?(IdT\w*|KeyT|A|C|E|H|K|M|PM|R|T|P|U|V|_Clear)"),
    # The protocol a command class matches for CommandBus.register's type check.
    ("py:class", r"tactical\._commands\._CommandClass"),
    # Annotations written against `import sqlalchemy as sa` are shown as written.
    ("py:class", r"sa\.\w+"),
    # Hypothesis publishes no inventory we vendor; its names are plain text here.
    ("py:.*", r"hypothesis\..*"),
    # Nor do redis-py and pika.
    ("py:.*", r"(redis|pika)\..*"),
    # asyncio.Event resolves to the module defining it, which the inventory does not list; and
    # SQLAlchemy's AsyncEngine is imported for type checking only (the vendored 1.4 inventory).
    ("py:class", r"asyncio\.locks\.Event|AsyncEngine|AsyncConnection"),
    # The contract suite's sample model, documented in the suite's own docstring.
    ("py:class", r"tactical\.testing\._contract\.\w+"),
    # The async contract's driver, a fixture's internals (users only call run_on_loop).
    ("py:class", r"tactical\.testing\._async_driver\.\w+"),
]

html_theme = "furo"
html_title = "tactical"
html_static_path = ["_static"]

# The modules whose ``__all__`` is tactical's public API (docs/reference/api.md).
PUBLIC_MODULES = (
    "tactical",
    "tactical.sqlalchemy",
    "tactical.outbox",
    "tactical.outbox.rabbitmq",
    "tactical.outbox.redis_streams",
    "tactical.projections",
    "tactical.testing",
)


@functools.cache
def _public_names() -> frozenset[str]:
    names: set[str] = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names |= {
            name for name in module.__all__ if isinstance(getattr(module, name), type)
        }
    return frozenset(names)


def _is_private(base: Any) -> bool:
    cls = typing.get_origin(base) or base
    if not isinstance(cls, type):
        return False
    if cls.__name__.startswith("_"):
        return True
    return cls.__module__.startswith("tactical") and cls.__name__ not in _public_names()


def _public_ancestors(base: Any) -> list[Any]:
    """``base`` itself when public, else the public classes it derives from (not object/ABC)."""
    if not _is_private(base):
        return [base]
    cls = typing.get_origin(base) or base
    found: list[Any] = []
    for parent in getattr(cls, "__orig_bases__", cls.__bases__):
        if parent in (object, ABC) or typing.get_origin(parent) is typing.Generic:
            continue
        found += [a for a in _public_ancestors(parent) if a not in found]
    return found


def hide_private_bases(
    app: Any, name: str, obj: Any, options: Any, bases: list[Any]
) -> None:
    """Show a class's public ancestors instead of tactical's private base classes.

    ``Entity`` derives from ``_EntityBase`` and the units of work from
    ``TransactionalUnitOfWork``: implementation details a reader cannot import or look up.
    """
    public: list[Any] = []
    for base in bases:
        public += [a for a in _public_ancestors(base) if a not in public]
    bases[:] = public or [object]


def setup(app: Any) -> None:
    app.connect("autodoc-process-bases", hide_private_bases)
