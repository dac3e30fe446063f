"""Structural state: a comparable picture of a value that looks inside its entities.

The unit of work compares pictures to find which aggregates changed; tests compare them to
check a mapper's round trip (an entity's ``==`` compares ids only).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import enum
import operator
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import cast

__all__ = ["structural_state"]

# Immutable values (exactly these types, not subclasses): their picture is the value itself.
# Checked first because copying them (below) was most of the cost of a snapshot.
_ATOMIC: frozenset[type] = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        bytes,
        Decimal,
        uuid.UUID,
        dt.date,
        dt.datetime,
        dt.time,
        dt.timedelta,
    }
)


_all_atomic = _ATOMIC.issuperset

_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}
# Per dataclass type: a function returning its field values in order (attrgetter, in C).
_FIELD_READERS: dict[type, Callable[[object], tuple[object, ...]] | None] = {}


def _dataclass_field_names(kind: type) -> tuple[str, ...] | None:
    """The field names of dataclass ``kind`` (None for other types), looked up once per type."""
    try:
        return _FIELD_NAMES[kind]
    except KeyError:
        pass
    names = (
        tuple(f.name for f in dataclasses.fields(kind)) if dataclasses.is_dataclass(kind) else None
    )
    if len(_FIELD_NAMES) >= 4096:  # types made at run time: keep the caches bounded
        _FIELD_NAMES.clear()
        _FIELD_READERS.clear()
    _FIELD_NAMES[kind] = names
    return names


def _field_reader(kind: type) -> Callable[[object], tuple[object, ...]] | None:
    try:
        return _FIELD_READERS[kind]
    except KeyError:
        pass
    names = _dataclass_field_names(kind)
    reader = None if names is None else _reader_of(names)
    _FIELD_READERS[kind] = reader
    return reader


def _reader_of(names: tuple[str, ...]) -> Callable[[object], tuple[object, ...]]:
    if len(names) != 1:
        return operator.attrgetter(*names) if names else lambda _: ()
    (name,) = names  # attrgetter of one name returns the value, not a tuple
    return lambda value: (getattr(value, name),)


def structural_state(value: object) -> object:
    """A comparable, alias-free picture of ``value`` for change detection.

    Unlike ``==`` it looks inside entities (whose equality is by id only): two aggregates
    have equal structural states exactly when all their fields, recursively, are equal.

    Args:
        value: Any value: an aggregate, an entity, a value object, a collection, a scalar.

    Returns:
        Nested tuples of each dataclass's type and field pictures (collections likewise);
        compare two with ``==``.

    .. versionadded:: 0.1.0
    """
    kind: type[object] = type(value)
    if kind in _ATOMIC:
        return value
    # A call per field was most of the cost of a picture: members that are all atomic (most
    # entities, most lists) are checked at once, in C; others are tested inline, one by one.
    reader = _FIELD_READERS.get(kind) or _field_reader(kind)
    if reader is not None:
        values = reader(value)
        if _all_atomic(map(type, values)):
            return (kind, values)
        return (kind, tuple([v if type(v) in _ATOMIC else structural_state(v) for v in values]))
    if kind is list or kind is tuple or isinstance(value, list | tuple):
        items = cast("Iterable[object]", value)
        if _all_atomic(map(type, items)):
            return (kind, tuple(items))
        return (kind, tuple([i if type(i) in _ATOMIC else structural_state(i) for i in items]))
    if isinstance(value, dict):
        mapping = cast("dict[object, object]", value)
        return (dict, tuple((k, structural_state(v)) for k, v in mapping.items()))
    if isinstance(value, set | frozenset):
        members = cast("Iterable[object]", value)
        return (kind, frozenset(map(structural_state, members)))
    if isinstance(value, str | int | float | enum.Enum) or value is None:
        return value
    # Other values (subclasses of the atomic types, user types) are compared by equality; a mutable
    # one is copied so that later in-place changes still show up as a difference.
    return copy.deepcopy(value)
