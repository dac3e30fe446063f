"""Give the re-exported public names their public module, as tracebacks and docs show it."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping

__all__ = ["publish"]


def publish(module: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Set ``__module__`` of the classes and functions in ``names`` to ``module``.

    A traceback then reads ``tactical.AggregateNotFound``, not ``tactical._errors.…``. Names
    already in a public module (re-exported twice) keep it. Classes that declare annotations
    keep their defining module: ``typing.get_type_hints`` (and so the codec) resolves their
    string annotations in the namespace of ``__module__``.
    """
    for name in names:
        value = namespace[name]
        if not (isinstance(value, type) or inspect.isfunction(value)):
            continue
        current: str = value.__module__
        if not any(part.startswith("_") for part in current.split(".")):
            continue
        if isinstance(value, type) and vars(value).get("__annotations__"):
            continue
        value.__module__ = module
