"""Run every Python code block of the documentation under pytest (Sybil), as a reader would.

A reader has the installed package and nothing else: no checkout, no ``examples``, no
``tests``. So each sample is checked before it runs, and fails (not skips) when it

- imports anything but the standard library, tactical and the packages of its extras
  (see ``ALLOWED_IMPORTS``), or
- would only work inside the repository: while a sample runs, the checkout is taken off
  ``sys.path`` (except the directory tactical itself is imported from) and the modules
  imported from it (``examples``, the test suite's helpers) are hidden from ``sys.modules``.

A reader also pastes a page's samples into a file and runs it, so they run as the module
``__main__`` (``__name__`` is set): a class a sample stores must have a name registered with
a codec, as tactical refuses to store ``__main__.X``.

Pages whose samples talk to a broker skip them with ``% skip: start if(not rabbitmq, ...)``
(or ``not redis_server``)
when the server is not reachable; under ``CI=true`` they always run, so a missing server
fails instead of skipping, as the rest of the suite does.

A page's samples are one test (``docs/how-to/outbox-relay.md::samples``), run in order in
one namespace, as the reader's file would: a later sample uses what an earlier one defined,
so they must not be split between pytest-xdist's workers, which hand out the items of one
file one by one (``-n 2``) unless told otherwise. The first failing sample ends the page,
its line named; a page with a skipped sample reports as skipped, with the lines.
"""

from __future__ import annotations

import ast
import os
import site
import socket
import sys
import unittest
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _pytest._code.code import TerminalRepr, TracebackStyle
from sybil import Document, Example, Sybil
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.myst import CodeBlockParser, SkipParser

import tactical

CHECKOUT = Path(__file__).resolve().parent.parent
# What a reader has too, even when it lies inside the checkout (nox's venvs in .nox/): where
# tactical is imported from (an installed wheel's site-packages, or the checkout's src), and
# the running Python's environment with its installed packages.
INSTALLED = frozenset(
    Path(location).resolve()
    for location in (
        str(Path(tactical.__file__).parent.parent),
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        *site.getsitepackages(),
    )
)

# What a reader who ran `pip install "tactical[sql,postgres,rabbitmq,redis,testing]"` can
# import, plus Alembic, which the Alembic how-to is about, and Starlette with httpx2 (its test
# client's HTTP library), which the async how-to builds its web app on.
ALLOWED_IMPORTS = frozenset(
    {
        *sys.stdlib_module_names,
        "tactical",
        "typing_extensions",
        "sqlalchemy",
        "psycopg",
        "pika",
        "redis",
        "pytest",
        "hypothesis",
        "alembic",
        "starlette",
        "httpx2",
        # The observability how-to: the otel extra's API, and the SDK a service configures.
        "opentelemetry",
    }
)


def imports_outside_the_package(source: str) -> list[str]:
    """The modules ``source`` imports that a reader with tactical installed does not have."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom):
            names = [
                "." * node.level + (node.module or "")
            ]  # relative: never available
        else:
            continue
        found += [
            name for name in names if name.partition(".")[0] not in ALLOWED_IMPORTS
        ]
    return found


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _visible_in_checkout(path: Path) -> bool:
    """True for a path a reader would not have: in the checkout, not in what is installed."""
    return _within(path, CHECKOUT) and not any(
        _within(path, root) for root in INSTALLED
    )


def _module_file(module: ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if isinstance(file, str) else None


@contextmanager
def outside_the_checkout() -> Generator[None, None, None]:
    """Run the body as if tactical were installed and the repository were not there."""
    removed = [
        (index, entry)
        for index, entry in enumerate(sys.path)
        if _visible_in_checkout(Path(entry or os.getcwd()).resolve())
    ]
    for index, _ in reversed(removed):
        del sys.path[index]
    hidden: dict[str, ModuleType] = {}
    for name, module in list(sys.modules.items()):
        file = _module_file(module)
        if file is not None and _visible_in_checkout(file):
            hidden[name] = sys.modules.pop(name)
    try:
        yield
    finally:
        # Put back what was removed, keeping what the sample itself added (a page's later
        # samples may rely on it).
        for index, entry in removed:
            sys.path.insert(index, entry)
        for name, module in hidden.items():
            sys.modules.setdefault(name, module)


class StandaloneEvaluator:
    """Sybil's Python evaluator, refusing samples a reader could not run."""

    def __init__(self) -> None:
        self._evaluate = PythonEvaluator()

    def __call__(self, example: Example) -> None:
        __tracebackhide__ = True
        outside = imports_outside_the_package(example.parsed)
        if outside:
            raise AssertionError(
                f"{example.path}, line {example.line}: the sample imports {', '.join(outside)},"
                " which a reader who installed tactical does not have; define what the sample"
                " needs on the page (or use tactical.testing's sample model)"
            )
        # As a script pasted from the page: classes of __main__, which tactical stores
        # only under a name registered with a codec.
        example.namespace["__name__"] = "__main__"
        with outside_the_checkout():
            self._evaluate(example)


def _reachable(port: int) -> bool:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        return True
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _setup(namespace: dict[str, Any]) -> None:
    namespace["rabbitmq"] = _reachable(5672)
    namespace["redis_server"] = _reachable(6379)


def _teardown(_namespace: dict[str, Any]) -> None:
    # The observability how-to sets OpenTelemetry's global tracer provider, which can be
    # set once a process: unset it (as OpenTelemetry's own tests do) so later pages run
    # untraced, as they would on their own.
    if "opentelemetry.trace" not in sys.modules:
        return
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER_SET_ONCE = Once()  # pyright: ignore[reportPrivateUsage]
    trace._TRACER_PROVIDER = None  # pyright: ignore[reportPrivateUsage]


SYBIL = Sybil(
    parsers=[CodeBlockParser("python", StandaloneEvaluator()), SkipParser()],
    patterns=["*.md"],
    excludes=["changelog.md"],
)


# pytest's node constructors take untyped keyword arguments (**kw), which pyright strict
# reports as partially unknown where they are called.
class PageSamples(pytest.Item):
    """The Python samples of a page, run in order in the page's namespace."""

    def __init__(self, *, document: Document, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # pyright: ignore[reportUnknownMemberType]
        self.document = document

    def runtest(self) -> None:
        # The reason of each skip: the lines of the samples it skipped.
        skipped: dict[str, list[str]] = {}
        for example in self.document.examples():
            try:
                example.evaluate()
            except unittest.SkipTest as skip:
                skipped.setdefault(str(skip), []).append(str(example.line))
            except Exception as error:
                error.add_note(
                    f"in the sample at {self.path.name}, line {example.line}"
                )
                raise
        if skipped:
            pytest.skip(
                "; ".join(
                    f"{reason} (lines {', '.join(lines)})"
                    for reason, lines in skipped.items()
                )
            )

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: TracebackStyle | None = None,
    ) -> str | TerminalRepr:
        """The traceback from the failing sample's line on (or from this file, when it
        refused the sample), short (each frame's line) unless ``--tb=long``: pytest would
        show a frame of a page as the page's text from its top."""
        for start in (self.path, Path(__file__)):
            if any(entry.path == start for entry in excinfo.traceback):
                excinfo.traceback = excinfo.traceback.cut(path=start)
                break
        if style is None and self.config.getoption("tbstyle") != "long":
            style = "short"
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.path.name}: its Python samples"


class Page(pytest.File):
    """A page of the docs: one test, its samples, with the namespace they share."""

    document: Document

    def collect(self) -> Iterator[pytest.Item]:
        self.document = SYBIL.parse(self.path)
        yield PageSamples.from_parent(  # pyright: ignore[reportUnknownMemberType]
            self, name="samples", document=self.document
        )

    def setup(self) -> None:
        _setup(self.document.namespace)

    def teardown(self) -> None:
        _teardown(self.document.namespace)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Page | None:
    if SYBIL.should_parse(file_path):
        return Page.from_parent(parent, path=file_path)  # pyright: ignore[reportUnknownMemberType]
    return None
