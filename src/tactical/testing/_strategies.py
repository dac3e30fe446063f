"""Hypothesis strategies that build valid value objects and aggregates from their types."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar, get_args, get_origin, get_type_hints, overload

from hypothesis import reject
from hypothesis import strategies as st

from tactical._generics import substitute, type_bindings
from tactical._model import ValueObject

__all__ = ["aggregates", "strategy_for", "value_objects"]

V = TypeVar("V", bound=ValueObject)
T = TypeVar("T")

# Collections stay small: domain rules are found with few elements, and big ones are slow.
_MAX_SIZE = 5
# Amounts stay within what money-like arithmetic handles in the default decimal context.
_MAX_DECIMAL = Decimal(10**12)


def value_objects(cls: type[V], /, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[V]:
    """A strategy for valid instances of the value object class ``cls``.

    Every ``__init__`` field gets a strategy from its annotation (see :func:`strategy_for`)
    unless given in ``fields``. Candidates that ``cls``'s validation refuses (it raises
    ``ValueError``, so any :class:`~tactical.DomainError`) are rejected, so every value
    drawn is valid. When validation refuses most candidates, Hypothesis reports a health
    check failure: pass a strategy for the constrained field, e.g.
    ``value_objects(Money, currency=st.sampled_from(["EUR", "USD"]))``.

    Args:
        cls: The :class:`~tactical.ValueObject` subclass to build.
        fields: Strategies for some of its fields, by name.

    Returns:
        A strategy of valid ``cls`` instances.

    Raises:
        TypeError: ``cls`` is not a value object class, or ``fields`` names a non-field.

    .. versionadded:: 0.1.0
    """
    if not issubclass(cls, ValueObject):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"value_objects() takes a ValueObject subclass, got {cls!r}")
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = fields.keys() - set(names)
    if unknown:
        raise TypeError(
            f"value_objects({cls.__qualname__}) got unknown field(s) "
            f"{', '.join(sorted(unknown))}; fields are {', '.join(names)}"
        )
    hints = _hints(cls)
    arguments = {
        name: fields[name] if name in fields else strategy_for(hints[name]) for name in names
    }
    return st.fixed_dictionaries(arguments).map(partial(_construct, cls))


def aggregates(
    factory: Callable[..., T], /, **arguments: st.SearchStrategy[Any]
) -> st.SearchStrategy[T]:
    """A strategy for aggregates built by calling ``factory`` with generated arguments.

    ``factory`` is the aggregate class or a factory function or classmethod (the command
    that creates it, such as ``InsurancePolicy.draft``). Its required parameters get
    strategies from their annotations unless given in ``arguments``; parameters with a
    default keep it unless given (for an aggregate they are usually lifecycle state, such as
    a status or ``version``, that only commands should change). Arguments the factory
    refuses with ``ValueError`` (any :class:`~tactical.DomainError`) are rejected.

    Args:
        factory: The aggregate class, or a callable that creates an aggregate.
        arguments: Strategies for some of its parameters, by name.

    Returns:
        A strategy of what ``factory`` returns.

    Raises:
        TypeError: ``arguments`` names a parameter the factory does not have, or a required
            parameter has no annotation and no strategy in ``arguments``.

    .. versionadded:: 0.1.0
    """
    parameters = inspect.signature(factory).parameters
    unknown = arguments.keys() - parameters.keys()
    if unknown:
        raise TypeError(
            f"aggregates({_name(factory)}) got unknown parameter(s) "
            f"{', '.join(sorted(unknown))}; it takes {', '.join(parameters)}"
        )
    hints = _hints(factory)
    drawn: dict[str, st.SearchStrategy[Any]] = {}
    for name, parameter in parameters.items():
        if name in arguments:
            drawn[name] = arguments[name]
        elif parameter.default is inspect.Parameter.empty and parameter.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            if name not in hints:
                raise TypeError(
                    f"aggregates({_name(factory)}): parameter {name!r} has no annotation; "
                    "pass a strategy for it"
                )
            drawn[name] = strategy_for(hints[name])
    return st.fixed_dictionaries(drawn).map(partial(_construct, factory))


@overload
def strategy_for(annotation: type[T]) -> st.SearchStrategy[T]: ...


@overload
def strategy_for(annotation: Any) -> st.SearchStrategy[Any]: ...


def strategy_for(annotation: Any) -> st.SearchStrategy[Any]:
    """The strategy :func:`value_objects` and :func:`aggregates` use for an annotation.

    Value objects are built with :func:`value_objects`; enums are sampled; ``Decimal`` is
    finite with two decimal places and at most 10**12 in size; ``datetime`` is
    timezone-aware (UTC); ``str`` holds no NUL and no lone surrogate and ``float`` is
    finite (what :class:`~tactical.JsonCodec` stores); ``X | None``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``,
    ``frozenset[X]``, ``set[X]``, ``dict[K, V]`` and ``Literal[...]`` are built from their
    parts (at most five elements); anything else comes from
    :func:`hypothesis.strategies.from_type`.

    Given a class (``strategy_for(Money)``, ``strategy_for(list[Money])``), type checkers
    see a strategy of that type; other annotations (``Money | None``, ``Literal[...]``)
    give a strategy of ``Any``.

    Args:
        annotation: A type or type annotation, as written on a field.

    Returns:
        A strategy of values of ``annotation``.

    .. versionadded:: 0.1.0

    .. versionchanged:: 0.2.0
       ``str`` draws no NUL or lone surrogate and ``float`` no NaN or infinity.
    """
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        return st.one_of(*(strategy_for(arg) for arg in args))
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0]), max_size=_MAX_SIZE).map(tuple)
        return st.tuples(*(strategy_for(arg) for arg in args))
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=_MAX_SIZE)
    if origin is frozenset:
        return st.frozensets(strategy_for(args[0]), max_size=_MAX_SIZE)
    if origin is set:
        return st.sets(strategy_for(args[0]), max_size=_MAX_SIZE)
    if origin is dict:
        return st.dictionaries(strategy_for(args[0]), strategy_for(args[1]), max_size=_MAX_SIZE)
    if isinstance(annotation, type):
        if issubclass(annotation, ValueObject):
            return value_objects(annotation)
        if issubclass(annotation, enum.Enum):
            return st.sampled_from(annotation)
        if annotation is Decimal:
            return st.decimals(
                min_value=-_MAX_DECIMAL, max_value=_MAX_DECIMAL, allow_nan=False, places=2
            )
        if annotation is datetime:
            return st.datetimes(timezones=st.just(UTC))
        if annotation is str:
            return st.text(_STORABLE_CHARACTERS)
        if annotation is float:
            return st.floats(allow_nan=False, allow_infinity=False)
    return _from_type(annotation)


# What a store can carry (JsonCodec refuses the rest): no lone surrogate, no NUL.
_SURROGATES: tuple[typing.Literal["Cs"]] = ("Cs",)
_STORABLE_CHARACTERS = st.characters(exclude_categories=_SURROGATES, exclude_characters="\x00")


def _hints(factory: Callable[..., object]) -> dict[str, Any]:
    hints = get_type_hints(factory)
    if isinstance(factory, type):
        # `id: IdT` of Entity[UUID] is a UUID: resolve generic bases' type parameters.
        bindings = type_bindings(factory)
        hints = {name: substitute(hint, bindings) for name, hint in hints.items()}
    return hints


def _from_type(thing: Any) -> st.SearchStrategy[Any]:
    return st.from_type(thing)


def _construct(factory: Callable[..., T], arguments: dict[str, Any]) -> T:
    try:
        return factory(**arguments)
    except ValueError:
        reject()


def _name(factory: Callable[..., object]) -> str:
    return getattr(factory, "__qualname__", repr(factory))
