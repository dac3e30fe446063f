"""Public names show a public module in tracebacks, reprs and the API docs."""

from __future__ import annotations

import importlib
import inspect
import re
import traceback
from pathlib import Path

import pytest

from tactical import AggregateNotFound, EventHandlerError
from tactical.testing import Counter

PUBLIC = [
    "tactical",
    "tactical.sqlalchemy",
    "tactical.outbox",
    "tactical.projections",
    "tactical.testing",
]


def declares_annotations(value: object) -> bool:
    """Model classes keep their defining module: their string annotations resolve there."""
    return isinstance(value, type) and bool(vars(value).get("__annotations__"))


class TestPublicModules:
    @pytest.mark.parametrize("module", PUBLIC)
    def test_every_exported_class_and_function_has_a_public_module(self, module: str) -> None:
        """Each class or function in a public __all__ names a public module that exports it."""
        exported = importlib.import_module(module)
        wrong = []
        for name in exported.__all__:
            value = getattr(exported, name)
            if not (isinstance(value, type) or inspect.isfunction(value)):
                continue
            if declares_annotations(value):
                continue
            home = value.__module__
            public = not any(part.startswith("_") for part in home.split("."))
            if not (public and name in importlib.import_module(home).__all__):
                wrong.append(f"{name}: {home}")
        assert wrong == []

    def test_a_traceback_shows_the_public_name_of_an_error(self) -> None:
        """tactical.AggregateNotFound, not tactical._errors.AggregateNotFound."""
        try:
            raise AggregateNotFound(Counter, 1)
        except AggregateNotFound as error:
            shown = "".join(traceback.format_exception(error))
        assert "tactical.AggregateNotFound: Counter with id 1 not found" in shown
        assert "tactical._errors" not in shown
        assert repr(EventHandlerError).startswith("<class 'tactical.EventHandlerError'")


# Bases that hold what sync and async classes share, written once: what a public class gets
# from them was its own before, and must stay in the API reference.
SHARED_BASES = {
    "tactical._memory.InMemoryStorage",
    "tactical.outbox._worker.WorkerCore",
    "tactical.outbox._worker.SyncWorker",
    "tactical.outbox._worker.AsyncWorker",
    "tactical.outbox._worker.IdlingWorker",
    "tactical.outbox._worker.AsyncIdlingWorker",
    "tactical.outbox._worker.DocumentedRun",
    "tactical.outbox._consumer_flow.Consuming",
    "tactical.outbox._consumer_flow.AsyncConsuming",
}


def test_the_api_reference_renders_what_shared_bases_give_public_classes() -> None:
    """A public property or method a documented class inherits from a shared base is rendered.

    autodoc renders a class's own members only (a ``:members:`` list adds no inherited one),
    so ``InMemoryUnitOfWork.store``, moved into ``InMemoryStorage``, needs an
    ``autoproperty`` of its own in the reference.
    """
    reference = Path(__file__).parents[1] / "docs" / "reference"
    text = "\n".join(page.read_text(encoding="utf-8") for page in reference.glob("*.md"))
    rendered = set(re.findall(r"\.\. auto(?:method|property|attribute):: ([\w.]+)", text))
    missing = []
    for path in sorted(set(re.findall(r"\.\. autoclass:: ([\w.]+)", text))):
        module, name = path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        for base in cls.__mro__[1:]:
            if f"{base.__module__}.{base.__qualname__}" not in SHARED_BASES:
                continue
            for attribute in vars(base):
                if attribute.startswith("_") or attribute in vars(cls):
                    continue
                if f"{path}.{attribute}" not in rendered:
                    missing.append(f"{path}.{attribute}")
    assert missing == []
