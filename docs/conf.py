"""Sphinx configuration for tactical's documentation."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path

# autodoc imports tactical: the installed one (nox -s docs installs the wheel), or else this
# checkout's source, so that the docs also build from a checkout without installing.
if importlib.util.find_spec("tactical") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

project = "tactical"
author = "The tactical developers"
copyright = "2026, The tactical developers"
try:
    release = importlib.metadata.version("tactical")
except importlib.metadata.PackageNotFoundError:  # building from a checkout without installing
    release = "0+unknown"
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
myst_enable_extensions = ["colon_fence", "deflist"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "conftest.py"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Inventories are vendored (from Debian's python3.11-doc and python-sqlalchemy-doc packages)
# so the build needs no network; links still point at the published documentation.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", "_inventories/python-3.11.inv"),
    "sqlalchemy": ("https://docs.sqlalchemy.org/en/20/", "_inventories/sqlalchemy-1.4.inv"),
}
# Type variables and private bases appear in signatures but have no page of their own.
nitpick_ignore_regex = [
    ("py:.*", r"(.*\.)?(IdT\w*|A|E|T|P|U|V|_[A-Za-z]\w*)"),
    # The shared base of tactical's units of work is an implementation detail.
    ("py:class", r"tactical\._uow\.TransactionalUnitOfWork"),
    # Annotations written against `import sqlalchemy as sa` are shown as written.
    ("py:class", r"sa\.\w+"),
    # Hypothesis publishes no inventory we vendor; its names are plain text here.
    ("py:.*", r"hypothesis\..*"),
    # Nor do redis-py and pika.
    ("py:.*", r"(redis|pika)\..*"),
    # The contract suite's sample model, documented in the suite's own docstring.
    ("py:class", r"tactical\.testing\._contract\.\w+"),
]

html_theme = "furo"
html_title = "tactical"
