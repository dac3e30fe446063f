"""Type parameters of generic classes, resolved to the types a subclass binds them to.

``class Policy(AggregateRoot[UUID])`` binds the ``IdT`` of ``Entity`` to ``UUID``: the codec,
the in-memory unit of work and the Hypothesis strategies read field annotations through these
bindings, so a field declared as ``id: IdT`` is treated as a ``UUID``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar


def type_bindings(cls: type) -> dict[Any, Any]:
    """TypeVar -> concrete type, from ``class X(Base[int])``-style generic bases.

    Bindings pass through generic subclasses: with ``class Saga(AggregateRoot[KeyT])`` and
    ``class Pickup(Saga[UUID])``, ``Entity``'s ``IdT`` is ``UUID`` in ``Pickup``.
    """
    raw: dict[Any, Any] = {}
    for klass in reversed(cls.__mro__):
        for base in getattr(klass, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            parameters = getattr(origin, "__parameters__", ())
            for parameter, argument in zip(parameters, typing.get_args(base), strict=False):
                if argument is not parameter:
                    raw[parameter] = argument
    chained: dict[Any, Any] = {}
    for parameter, argument in raw.items():
        seen = {parameter}
        while isinstance(argument, TypeVar) and argument in raw and argument not in seen:
            seen.add(argument)
            argument = raw[argument]
        if not isinstance(argument, TypeVar):
            chained[parameter] = argument
    return {
        parameter: substitute(
            raw[parameter] if parameter not in chained else chained[parameter], chained
        )
        for parameter in raw
    }


def substitute(annotation: Any, bindings: Mapping[Any, Any]) -> Any:
    """``annotation`` with its type variables replaced as ``bindings`` say (unbound: their bound)."""
    if isinstance(annotation, TypeVar):
        return bindings.get(annotation, annotation.__bound__ or Any)
    args = typing.get_args(annotation)
    # __parameters__ lists the type variables at any depth (`Box[T] | None` has T).
    if not args or not getattr(annotation, "__parameters__", ()):
        return annotation
    origin = typing.get_origin(annotation)
    substituted = tuple(substitute(a, bindings) for a in args)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[substituted]  # noqa: UP007  (built from a tuple at run time)
    return origin[substituted]
