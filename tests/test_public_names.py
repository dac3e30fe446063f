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
        wrong: list[str] = []
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


# pytest suites to subclass: their members are the suite's tests and helpers, which pytest runs.
SUITES = {"tactical.testing.UnitOfWorkContract", "tactical.testing.AsyncUnitOfWorkContract"}

# A directive, its options and their continuation lines (a long ``:members:`` list).
DIRECTIVE = re.compile(
    r"^( *)\.\. auto(\w+):: ([\w.]+)\n((?:\1   :[\w-]+:.*\n(?:\1    +[^ .:].*\n)*)*)",
    re.MULTILINE,
)


def rendered_by_autodoc(text: str) -> tuple[dict[str, dict[str, str]], set[str]]:
    """The classes the reference documents with their options, and the members it names."""
    classes: dict[str, dict[str, str]] = {}
    members: set[str] = set()
    for match in DIRECTIVE.finditer(text):
        kind, path, options = match.group(2), match.group(3), match.group(4)
        if kind in ("class", "exception"):
            found = re.findall(r":([\w-]+):[ ]*(.*)", re.sub(r"\n +(?![ :])", " ", options))
            classes[path] = {"members": "*", **{name: value.strip() for name, value in found}}
        elif kind in ("method", "property", "attribute"):
            members.add(path)
    return classes, members


def is_rendered(
    path: str, name: str, classes: dict[str, dict[str, str]], members: set[str]
) -> bool:
    """Whether autodoc renders ``name`` of the class documented as ``path``.

    autodoc renders a class's own members, those named by its ``:members:`` list or, with a
    bare one, those with a docstring; inherited ones only with ``:inherited-members:``.
    """
    if f"{path}.{name}" in members:
        return True
    options = classes[path]
    if "no-members" in options:
        return False
    module, _, qualname = path.rpartition(".")
    cls = getattr(importlib.import_module(module), qualname)
    if name not in vars(cls) and "inherited-members" not in options:
        return False
    listed = options["members"]
    if listed in ("", "*"):
        return bool(inspect.getdoc(getattr(cls, name)))
    return name in {member.strip() for member in listed.split(",")}


def test_the_api_reference_renders_every_public_property_and_method_of_its_classes() -> None:
    """What a documented class offers is rendered: its own, or inherited from a private core.

    autodoc renders a class's own members only (a ``:members:`` list adds no inherited one),
    so a public class whose properties and methods live in a private base shared by its sync
    and async kinds (the relays' ``batch_size``, the units of work's ``bus``) needs
    ``:inherited-members:``. What comes from a documented public base is rendered there;
    what overrides another library's method (a SQLAlchemy type's hooks) is that library's.
    """
    reference = Path(__file__).parents[1] / "docs" / "reference"
    text = "\n".join(page.read_text(encoding="utf-8") for page in reference.glob("*.md"))
    classes, members = rendered_by_autodoc(text)
    by_path: dict[str, type] = {}
    for path in classes:
        module, _, qualname = path.rpartition(".")
        by_path[path] = getattr(importlib.import_module(module), qualname)
    documented = {cls: path for path, cls in by_path.items()}
    missing: list[str] = []
    for path in sorted(set(classes) - SUITES):
        cls = by_path[path]
        for name in dir(cls):
            if name.startswith("_"):
                continue
            owners: list[type] = [base for base in cls.__mro__ if name in vars(base)]
            if any(not base.__module__.startswith("tactical") for base in owners):
                continue  # Python's or another library's
            value: object = vars(owners[0])[name]
            if not isinstance(value, (property, classmethod, staticmethod)) and not callable(value):
                continue  # a data attribute, described by its class
            home = next((documented[base] for base in owners if base in documented), path)
            if not is_rendered(home, name, classes, members):
                missing.append(f"{path}.{name}")
    assert missing == []
