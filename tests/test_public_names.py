"""Public names show a public module in tracebacks, reprs and the API docs."""

from __future__ import annotations

import importlib
import inspect
import traceback

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
