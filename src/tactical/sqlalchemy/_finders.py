"""A finder's :class:`~tactical.Query`, compiled to SQL that answers as the query defines.

:meth:`tactical.Query.matches` defines a query on an aggregate's JSON state, and the
in-memory store evaluates it so. Here the same predicate becomes a SQLAlchemy condition:
on the ``state`` document (SQLite's ``json_extract``, PostgreSQL's ``jsonb`` path
operators), or on the columns a relational mapper names. Each comparison is made
two-valued (``COALESCE(..., FALSE)``) so that ``NOT`` and ``OR`` treat a missing or null
field as the Python definition does; strings are ordered by code point (SQLite's binary
collation, PostgreSQL's ``COLLATE "C"``), as Python orders them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeAlias

from sqlalchemy.dialects import postgresql

import sqlalchemy as sa
from sqlalchemy import orm
from tactical._query import (
    Comparison,
    Conjunction,
    Disjunction,
    Negation,
    OneOf,
    Predicate,
)
from tactical.sqlalchemy._schema import aggregates_table

__all__ = [
    "ColumnsOfFields",
    "MappedColumn",
    "column_of_field",
    "document_condition",
    "field_value",
    "mapper_condition",
]

_Condition = sa.ColumnElement[bool]
_Atom = Callable[[Comparison], _Condition]


def _compile(predicate: Predicate, atom: _Atom) -> _Condition:
    if isinstance(predicate, Comparison):
        return sa.func.coalesce(atom(predicate), sa.false())
    if isinstance(predicate, OneOf):
        if not predicate.values:
            return sa.false()
        return sa.or_(
            *(
                _compile(Comparison(predicate.path, "==", value, raw), atom)
                for value, raw in zip(predicate.values, predicate.raw, strict=True)
            )
        )
    if isinstance(predicate, Conjunction):
        return sa.and_(sa.true(), *(_compile(p, atom) for p in predicate.parts))
    if isinstance(predicate, Disjunction):
        return sa.or_(sa.false(), *(_compile(p, atom) for p in predicate.parts))
    if isinstance(predicate, Negation):
        return sa.not_(_compile(predicate.part, atom))
    raise TypeError(f"not a query condition: {predicate!r}")  # pragma: no cover


def _ordered(operator: str, left: Any, right: Any) -> _Condition:
    if operator == "<":
        return left < right  # type: ignore[no-any-return]
    if operator == "<=":
        return left <= right  # type: ignore[no-any-return]
    if operator == ">":
        return left > right  # type: ignore[no-any-return]
    return left >= right  # type: ignore[no-any-return]


# -- documents ------------------------------------------------------------------------------


def document_condition(predicate: Predicate, dialect_name: str) -> _Condition:
    """``predicate`` on the ``state`` column of ``tactical_aggregates``, for the dialect."""
    atom = _postgres_atom if dialect_name == "postgresql" else _sqlite_atom
    return _compile(predicate, atom)


def _sqlite_atom(comparison: Comparison) -> _Condition:
    # json_extract gives SQL values: text, integer, real, 1/0 for booleans, NULL for a
    # missing field or a JSON null; TEXT compares by the binary collation (code points).
    element = sa.func.json_extract(
        aggregates_table.c.state, sa.literal("$." + ".".join(comparison.path))
    )
    value = comparison.value
    if comparison.operator == "==":
        return element.is_(None) if value is None else element == sa.literal(value)
    return _ordered(comparison.operator, element, sa.literal(value))


_JSONB_STATE = sa.type_coerce(aggregates_table.c.state, postgresql.JSONB)


def _postgres_atom(comparison: Comparison) -> _Condition:
    path = list(comparison.path)
    element = _JSONB_STATE.op("#>")(sa.literal(path, postgresql.ARRAY(sa.Text)))
    kind = sa.func.jsonb_typeof(element)
    value = comparison.value
    if comparison.operator == "==":
        if value is None:
            return sa.func.coalesce(kind, "null") == "null"
        # jsonb equality: numbers by value, booleans only to booleans, strings exactly.
        return element == sa.cast(sa.literal(value, postgresql.JSONB), postgresql.JSONB)
    if isinstance(value, str):
        text = _JSONB_STATE.op("#>>", return_type=sa.Text)(
            sa.literal(path, postgresql.ARRAY(sa.Text))
        )
        return sa.and_(
            kind == "string", _ordered(comparison.operator, sa.collate(text, "C"), value)
        )
    number = sa.cast(sa.literal(value, postgresql.JSONB), postgresql.JSONB)
    return sa.and_(kind == "number", _ordered(comparison.operator, element, number))


# -- relational mappers ---------------------------------------------------------------------


class ColumnsOfFields(Protocol):
    """Where a mapper keeps the fields a query compares (``RelationalMapper`` is one).

    Any storage of mapped tables (Core or ORM) that offers these two compiles a finder's
    query with :func:`mapper_condition`.
    """

    def column_for(self, path: str) -> sa.ColumnElement[Any]: ...

    def column_value(self, path: str, value: object) -> object: ...


MappedColumn: TypeAlias = sa.ColumnElement[Any] | orm.QueryableAttribute[Any]
"""What a mapper's ``columns`` maps a field path to: a column, or an ORM model's attribute."""


def column_of_field(
    mapper: object,
    columns: Mapping[str, MappedColumn],
    path: str,
    id_column: sa.ColumnElement[Any] | None,
) -> sa.ColumnElement[Any]:
    """The column ``columns`` names for ``path`` (``id_column`` for ``"id"`` unless named).

    Raises:
        ValueError: ``columns`` has no column for ``path``.
    """
    column = columns.get(path)
    if column is None and path == "id":
        column = id_column
    if column is None:
        name = type(mapper).__qualname__
        raise ValueError(
            f"{name} maps no column for {path!r}, which a query compares: add it to {name}.columns"
        )
    return column.expression if isinstance(column, orm.QueryableAttribute) else column


def field_value(value: object) -> object:
    """A field's value as a column stores it by default: an enum member's ``value``."""
    return value.value if isinstance(value, enum.Enum) else value


def mapper_condition(
    predicate: Predicate, mapper: ColumnsOfFields, dialect_name: str
) -> _Condition:
    """``predicate`` on the columns ``mapper`` maps its aggregate's fields to.

    Raises:
        ValueError: The mapper maps no column for a path the query compares.
    """

    def atom(comparison: Comparison) -> _Condition:
        path = ".".join(comparison.path)
        column = mapper.column_for(path)
        if comparison.value is None:
            return column.is_(None)
        value = sa.literal(mapper.column_value(path, comparison.raw), column.type)
        if comparison.operator == "==":
            return column == value
        if dialect_name == "postgresql" and isinstance(comparison.value, str):
            column = sa.collate(column, "C")
        return _ordered(comparison.operator, column, value)

    return _compile(predicate, atom)
