"""Queries: one declarative definition of which aggregates a finder returns, for every store.

A :class:`Query` names an aggregate type and a predicate over the fields of its stored JSON
state (``Field("holder.id") == holder_id``). Its meaning is defined here, on that JSON
state, by :meth:`Query.matches`: the in-memory store and the unit of work (for what the
transaction has changed but not stored) evaluate it so, and the SQL storage compiles the
same predicate to SQL with the same answers (JSON paths on the document column, or the
columns of a relational mapper). The contract suite runs the same finder tests on every
store to keep them honest.

Comparisons are two-valued: a missing or null field equals only ``None``, is unequal to
any other value, and is neither less nor greater than anything.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from decimal import Decimal
from typing import Any, ClassVar, Final, Generic, Literal, TypeAlias, TypeVar
from uuid import UUID

from tactical._codec_values import uuid_text
from tactical._generics import substitute, type_bindings
from tactical._model import AggregateRoot

__all__ = [
    "Comparison",
    "Conjunction",
    "Disjunction",
    "Field",
    "Negation",
    "OneOf",
    "Predicate",
    "Query",
    "json_scalar",
    "value_at",
]

A = TypeVar("A", bound=AggregateRoot[Any])

Scalar: TypeAlias = str | int | float | bool | None
"""A comparand as the JSON state holds it."""

Operator: TypeAlias = Literal["==", "<", "<=", ">", ">="]
ORDERING: Final = ("<", "<=", ">", ">=")


class Predicate:
    """A condition on an aggregate's stored state; combine with ``&``, ``|`` and ``~``.

    Made by comparing a :class:`Field` (``Field("status") == PolicyStatus.ACTIVE``); never
    built directly.

    .. versionadded:: 0.2.0
    """

    __slots__ = ()

    def __and__(self, other: Predicate) -> Predicate:
        """Both conditions hold."""
        return Conjunction((self, _predicate(other)))

    def __or__(self, other: Predicate) -> Predicate:
        """Either condition holds."""
        return Disjunction((self, _predicate(other)))

    def __invert__(self) -> Predicate:
        """The condition does not hold."""
        return Negation(self)

    def matches(self, state: Mapping[str, Any]) -> bool:  # pragma: no cover  (abstract)
        """Whether the JSON ``state`` satisfies the condition."""
        raise NotImplementedError


def _predicate(value: object) -> Predicate:
    if not isinstance(value, Predicate):
        raise TypeError(
            f"a query condition combines with another condition, got {type(value).__qualname__} "
            f"{value!r} (compare a Field: Field('status') == ...)"
        )
    return value


class Comparison(Predicate):
    """``path operator value``, on the JSON value at ``path``."""

    __slots__ = ("operator", "path", "raw", "value")

    def __init__(
        self, path: tuple[str, ...], operator: Operator, value: Scalar, raw: object = None
    ) -> None:
        self.path, self.operator, self.value = path, operator, value
        self.raw = value if raw is None else raw  # the value compared, before encoding

    def matches(self, state: Mapping[str, Any]) -> bool:
        found: Any = value_at(state, self.path)
        wanted: Any = self.value
        if self.operator == "==":
            return _equal(found, wanted)
        if not (
            (_is_number(found) and _is_number(wanted))
            or (type(found) is str and type(wanted) is str)
        ):
            return False  # null, or another JSON type: neither below nor above
        if self.operator == "<":
            return bool(found < wanted)
        if self.operator == "<=":
            return bool(found <= wanted)
        if self.operator == ">":
            return bool(found > wanted)
        return bool(found >= wanted)

    def __repr__(self) -> str:
        return f"Field({'.'.join(self.path)!r}) {self.operator} {self.value!r}"


class OneOf(Predicate):
    """The JSON value at ``path`` equals one of ``values``."""

    __slots__ = ("path", "raw", "values")

    def __init__(
        self, path: tuple[str, ...], values: tuple[Scalar, ...], raw: tuple[object, ...] = ()
    ) -> None:
        self.path, self.values = path, values
        self.raw = raw or values  # the values compared, before encoding

    def matches(self, state: Mapping[str, Any]) -> bool:
        found = value_at(state, self.path)
        return any(_equal(found, wanted) for wanted in self.values)

    def __repr__(self) -> str:
        return f"Field({'.'.join(self.path)!r}).one_of({list(self.values)!r})"


class Conjunction(Predicate):
    """Every one of ``parts`` holds (true when there are none)."""

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[Predicate, ...]) -> None:
        self.parts = parts

    def matches(self, state: Mapping[str, Any]) -> bool:
        return all(part.matches(state) for part in self.parts)

    def __repr__(self) -> str:
        return "(" + " & ".join(map(repr, self.parts)) + ")" if self.parts else "(everything)"


class Disjunction(Predicate):
    """At least one of ``parts`` holds."""

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[Predicate, ...]) -> None:
        self.parts = parts

    def matches(self, state: Mapping[str, Any]) -> bool:
        return any(part.matches(state) for part in self.parts)

    def __repr__(self) -> str:
        return "(" + " | ".join(map(repr, self.parts)) + ")"


class Negation(Predicate):
    """``part`` does not hold."""

    __slots__ = ("part",)

    def __init__(self, part: Predicate) -> None:
        self.part = part

    def matches(self, state: Mapping[str, Any]) -> bool:
        return not self.part.matches(state)

    def __repr__(self) -> str:
        shown = repr(self.part)
        return f"~{shown}" if shown.startswith("(") else f"~({shown})"


def _is_number(value: object) -> bool:
    return type(value) is int or type(value) is float


def _equal(found: object, wanted: Scalar) -> bool:
    """JSON equality: numbers by value, booleans only to booleans, null only to None."""
    if wanted is None or found is None:
        return found is wanted
    if isinstance(wanted, bool) or isinstance(found, bool):
        return found is wanted
    if _is_number(wanted):
        return _is_number(found) and found == wanted
    return type(found) is type(wanted) and found == wanted


def value_at(state: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The JSON value at ``path`` in ``state``; None where a step is missing or not an object."""
    value: Any = state
    for step in path:
        if not isinstance(value, dict):
            return None
        value = typing.cast("dict[str, Any]", value).get(step)
    return value


def json_scalar(value: object, *, where: str) -> Scalar:
    """``value`` as the codec stores it, for a comparison (a UUID as its text, say).

    Raises:
        TypeError: ``value`` is not stored as a JSON scalar tactical can compare the same
            way in memory and in SQL (a value object, a Decimal, a datetime: compare one
            of its fields, or a field of another type, instead).
    """
    if value is None or type(value) in (str, int, float, bool):
        return typing.cast("Scalar", value)
    if isinstance(value, UUID):
        return uuid_text(value)
    if isinstance(value, enum.Enum):
        return json_scalar(value.value, where=where)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal | dt.datetime):
        reason = (
            "Decimals are stored as text, whose order and equality are not the number's"
            if isinstance(value, Decimal)
            else "datetimes are stored as text with an offset, whose order is not the time's"
        )
        raise TypeError(f"{where}: cannot compare {value!r}: {reason}")
    raise TypeError(
        f"{where}: cannot compare a {type(value).__qualname__} ({value!r}): queries compare "
        "strings, numbers, booleans, UUIDs, enums, dates or None; compare one of its fields"
    )


class Field:
    """A field of an aggregate's stored state, to compare in a :class:`Query`.

    ``path`` names a field of the aggregate, or a field of a value object or child entity
    it holds, with dots: ``Field("holder.id")``, ``Field("coverage_period.start")``.
    Compare it with ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` or :meth:`one_of` to get a
    condition; combine conditions with ``&``, ``|`` and ``~``::

        active = (Field("holder.id") == holder_id) & (Field("status") == PolicyStatus.ACTIVE)

    Values are compared as they are stored (a UUID as its text, an enum as its value, a
    date in ISO form): strings, integers, floats, booleans, UUIDs, enums and dates. Order
    comparisons take numbers, strings (compared by code point, the same in memory, on
    SQLite and on PostgreSQL whatever its collation) and dates. Collections (lists,
    tuples, dicts) cannot be stepped into.

    .. versionadded:: 0.2.0
    """

    __slots__ = ("path",)

    path: tuple[str, ...]

    def __init__(self, path: str) -> None:
        given: object = path
        steps = tuple(given.split(".")) if isinstance(given, str) else ()  # pyright: ignore[reportUnnecessaryIsInstance]
        if not steps or not all(step.isidentifier() for step in steps):
            raise ValueError(
                f"a Field path is field names joined by dots ('holder.id'), got {path!r}"
            )
        self.path = steps

    def _where(self) -> str:
        return f"Field({'.'.join(self.path)!r})"

    def __eq__(self, value: object) -> Predicate:  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
        """The field holds ``value`` (``None``: it is missing or null)."""
        return Comparison(self.path, "==", json_scalar(value, where=self._where()), value)

    def __ne__(self, value: object) -> Predicate:  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
        """The field does not hold ``value`` (a null field is unequal to any other value)."""
        return Negation(self == value)

    def _ordered(self, operator: Operator, value: object) -> Predicate:
        scalar = json_scalar(value, where=self._where())
        if scalar is None or isinstance(scalar, bool):
            raise TypeError(
                f"{self._where()} {operator} {value!r}: only numbers, strings and "
                "dates have an order"
            )
        return Comparison(self.path, operator, scalar, value)

    def __lt__(self, value: object) -> Predicate:
        """The field holds a value below ``value`` (a null field never does)."""
        return self._ordered("<", value)

    def __le__(self, value: object) -> Predicate:
        """The field holds a value at most ``value``."""
        return self._ordered("<=", value)

    def __gt__(self, value: object) -> Predicate:
        """The field holds a value above ``value``."""
        return self._ordered(">", value)

    def __ge__(self, value: object) -> Predicate:
        """The field holds a value at least ``value``."""
        return self._ordered(">=", value)

    def one_of(self, values: Iterable[object]) -> Predicate:
        """The field holds one of ``values`` (none, for no values)."""
        where, raw = self._where(), tuple(values)
        return OneOf(self.path, tuple(json_scalar(v, where=where) for v in raw), raw)

    # == builds a Predicate, so a Field is not hashable (as a dataclass with eq and no hash).
    __hash__: ClassVar[None] = None  # type: ignore[assignment]  # pyright: ignore[reportIncompatibleMethodOverride]

    def __repr__(self) -> str:
        return self._where()


class Query(Generic[A]):
    """Which aggregates of one type a finder returns: conditions on their stored state.

    Pass it to a repository's ``find`` (or ``find_one``): the unit of work returns the
    aggregates whose state satisfies every condition, as the database would see them
    inside the transaction: those stored, less those removed in the transaction, with
    the aggregates added or changed in it judged by their state now. Each is tracked like
    one from ``get`` (change it and commit to save it; the same object for the same id).

    One definition serves every store: the in-memory store evaluates it on the JSON state
    it keeps, the SQL unit of work compiles it to a JSON-path condition on the document
    (SQLite and PostgreSQL) or, for a type stored by a relational mapper, to a condition on
    the mapper's columns. Write the queries of a repository of yours as functions::

        def active_by_holder(holder_id: UUID) -> Query[InsurancePolicy]:
            return Query(
                InsurancePolicy,
                Field("holder.id") == holder_id,
                Field("status") == PolicyStatus.ACTIVE,
                order_by=("coverage_period.start",),
            )

    Args:
        aggregate_type: The aggregate class to find.
        *where: Conditions that must all hold; none finds every aggregate of the type.
        order_by: Field paths to sort the results by, ascending, nulls first (sorted by
            the unit of work on the stored JSON values, so the same on every store); ties,
            and results without it, are in the order of their ids' text.

    Raises:
        TypeError: ``aggregate_type`` is not an :class:`~tactical.AggregateRoot` subclass,
            a condition is not one, or a compared value does not fit the field (a ``str``
            for a ``UUID`` field, say; the message names the field).
        ValueError: A path names no field of the aggregate, or steps into a collection.

    .. versionadded:: 0.2.0
    """

    __slots__ = ("aggregate_type", "order_by", "predicate")

    aggregate_type: type[A]
    predicate: Predicate
    order_by: tuple[tuple[str, ...], ...]

    def __init__(
        self, aggregate_type: type[A], /, *where: Predicate, order_by: Sequence[str] = ()
    ) -> None:
        candidate: object = aggregate_type
        if not (isinstance(candidate, type) and issubclass(candidate, AggregateRoot)):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"Query takes an AggregateRoot subclass, got {aggregate_type!r}")
        parts = tuple(_predicate(p) for p in where)
        self.aggregate_type = aggregate_type
        self.predicate = parts[0] if len(parts) == 1 else Conjunction(parts)
        given: object = order_by
        paths = (given,) if isinstance(given, str) else order_by
        self.order_by = tuple(Field(path).path for path in paths)
        for path in self.order_by:
            _check_path(aggregate_type, path, ())
        _check_values(aggregate_type, self.predicate)

    def matches(self, state: Mapping[str, Any]) -> bool:
        """Whether an aggregate whose JSON state is ``state`` is found by this query."""
        return self.predicate.matches(state)

    def sort_key(self, state: Mapping[str, Any], key: str) -> tuple[Any, ...]:
        """The key sorting a found aggregate (``state``, its id as text ``key``)."""
        values: list[Any] = []
        for path in self.order_by:
            value = value_at(state, path)
            # Nulls first; values of one field are of one JSON type.
            values.append((value is not None, value if value is not None else 0))
        return (*values, key)

    def __repr__(self) -> str:
        order = f", order_by={['.'.join(p) for p in self.order_by]!r}" if self.order_by else ""
        return f"Query({self.aggregate_type.__qualname__}, {self.predicate!r}{order})"


def _check_values(aggregate_type: type[Any], predicate: Predicate) -> None:
    if isinstance(predicate, Comparison):
        _check_path(aggregate_type, predicate.path, (predicate.raw,))
    elif isinstance(predicate, OneOf):
        _check_path(aggregate_type, predicate.path, predicate.raw)
    elif isinstance(predicate, Conjunction | Disjunction):
        for part in predicate.parts:
            _check_values(aggregate_type, part)
    elif isinstance(predicate, Negation):
        _check_values(aggregate_type, predicate.part)


def _check_path(aggregate_type: type[Any], path: tuple[str, ...], values: Sequence[object]) -> None:
    """Refuse a path that names no field, or stored ``values`` of another JSON type."""
    owner: type = aggregate_type
    annotation: Any = None
    for index, step in enumerate(path):
        shown = ".".join(path[: index + 1])
        if step not in _field_names(owner):
            raise ValueError(
                f"Query on {aggregate_type.__qualname__}: {shown!r} names no field "
                f"of {owner.__qualname__}"
            )
        hints = typing.get_type_hints(owner)
        annotation = _plain(substitute(hints[step], type_bindings(owner)))
        if index < len(path) - 1:
            if not (isinstance(annotation, type) and is_dataclass(annotation)):
                raise ValueError(
                    f"Query on {aggregate_type.__qualname__}: {shown!r} is not a value object "
                    "or entity to step into (collections cannot be queried)"
                )
            owner = annotation
    _check_kind(aggregate_type, path, annotation, values)


def _field_names(owner: type) -> set[str]:
    """The dataclass fields of ``owner`` (none if it is not a dataclass)."""
    dataclass: Any = owner
    return {f.name for f in fields(dataclass)} if is_dataclass(dataclass) else set()


def _plain(annotation: Any) -> Any:
    """``annotation`` without ``Annotated``, ``NewType`` and ``| None``."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif hasattr(annotation, "__supertype__"):
            annotation = annotation.__supertype__
        elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _check_kind(
    aggregate_type: type[Any], path: tuple[str, ...], annotation: Any, values: Sequence[object]
) -> None:
    """Refuse a compared value the field cannot hold (a str for a UUID field, say)."""
    if not isinstance(annotation, type) or annotation in (object, Any):
        return  # Any, a union of several types, a type variable: not checked
    for value in values:
        if value is None:
            continue
        if annotation is float:
            fits = type(value) in (int, float)
        elif annotation is int:
            fits = type(value) is int
        else:
            fits = isinstance(value, annotation)
        if not fits:
            raise TypeError(
                f"Query on {aggregate_type.__qualname__}: {'.'.join(path)!r} is a "
                f"{annotation.__qualname__}, got {type(value).__qualname__} {value!r}"
            )
