"""Sphinx extension: Graphviz diagrams kept as ``.dot`` sources, inlined as SVG at build time.

Usage in a MyST page::

    ```{diagram} /diagrams/layers.dot
    :alt: What the diagram shows, for screen readers.
    :caption: The caption under it.
    ```

The build runs Graphviz's ``dot`` (Debian package ``graphviz``; no network) and puts the SVG
into the page itself rather than linking an image: inline, the diagram's text, lines and
fills are coloured by ``_static/diagrams.css`` from furo's own colour variables, so it reads
in the light and the dark theme alike, and follows furo's theme switch. The build stops with
an error naming the package when ``dot`` is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html import escape
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ConfigError, ExtensionError
from sphinx.util.docutils import SphinxDirective

MISSING_DOT = (
    "the docs' diagrams need Graphviz's `dot`, which is not on PATH: install Graphviz "
    "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz), or set "
    "`diagram_dot` in docs/conf.py to its path"
)


def render_svg(dot: str, source: str, name: str, alt: str) -> str:
    """Run ``dot -Tsvg`` on ``source``; return an ``<svg>`` element ready to inline."""
    result = subprocess.run(  # noqa: S603 - a fixed program with fixed arguments
        [dot, "-Tsvg"], input=source, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ExtensionError(f"dot failed on {name}: {result.stderr.strip()}")
    svg = result.stdout[result.stdout.index("<svg") :]
    svg = re.sub(r"<!--.*?-->\n?", "", svg, flags=re.DOTALL)
    # Graphviz titles every node and edge with its internal name: noise for a reader
    # hovering it, and for a screen reader, which gets the diagram's own title instead.
    svg = re.sub(r"<title>.*?</title>\n?", "", svg, flags=re.DOTALL)
    # Several diagrams share a page: keep their element ids apart.
    svg = re.sub(r'\bid="', f'id="{name}-', svg)
    return svg.replace(
        "<svg",
        f'<svg class="diagram-svg" role="img" aria-labelledby="{name}-title"',
        1,
    ).replace(">", f'>\n<title id="{name}-title">{escape(alt)}</title>', 1)


class DiagramDirective(SphinxDirective):
    """``{diagram} path.dot`` with ``:alt:`` (required) and ``:caption:``."""

    required_arguments = 1
    has_content = False
    option_spec: ClassVar[dict[str, Any]] = {
        "alt": directives.unchanged_required,
        "caption": directives.unchanged,
    }

    def run(self) -> list[nodes.Node]:
        relative, absolute = self.env.relfn2path(self.arguments[0], self.env.docname)
        path = Path(absolute)
        if "alt" not in self.options:
            raise self.error(f"diagram {relative}: give it an :alt: text")
        self.env.note_dependency(relative)
        svg = render_svg(
            self.config.diagram_dot,
            path.read_text(encoding="utf-8"),
            path.stem,
            self.options["alt"],
        )
        figure = nodes.figure(classes=["diagram"])
        figure += nodes.raw("", svg, format="html")
        if "caption" in self.options:
            text_nodes, messages = self.state.inline_text(
                self.options["caption"], self.lineno
            )
            figure += nodes.caption(self.options["caption"], "", *text_nodes)
            figure += messages
        return [figure]


def _require_dot(app: Sphinx, config: Config) -> None:
    found = shutil.which(config.diagram_dot)
    if found is None:
        raise ConfigError(MISSING_DOT)
    config.diagram_dot = found


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("diagram_dot", "dot", "env", types=frozenset({str}))
    app.add_directive("diagram", DiagramDirective)
    app.connect("config-inited", _require_dot)
    app.add_css_file("diagrams.css")
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
