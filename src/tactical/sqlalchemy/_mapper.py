"""Relational mapping: store an aggregate type in tables of your own design."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from tactical._model import AggregateRoot
from tactical.sqlalchemy._finders import column_of_field, field_value

__all__ = ["RelationalMapper"]

A = TypeVar("A", bound=AggregateRoot[Any])
IdT = TypeVar("IdT")


class RelationalMapper(ABC, Generic[A, IdT]):
    """Maps one aggregate type to your own tables, instead of the default JSON document.

    Register an instance with :class:`SqlAlchemyUnitOfWork` (``mappers=[PolicyMapper()]``).
    You write the translation between rows and the domain model (table rows <-> a
    ``Policy`` aggregate and its child entities); the unit of work keeps the guarantees: it
    checks and bumps the version column of the root table with
    ``UPDATE ... WHERE id = :id AND version = :loaded`` before calling :meth:`update` or
    :meth:`delete`, inserts through :meth:`insert` (a duplicate id becomes a
    :class:`~tactical.ConcurrencyError`), and writes the outbox in the same transaction.

    Every method receives the unit of work's connection: use it, with SQLAlchemy Core
    statements (bound parameters), and never commit it.

    Attributes:
        aggregate_type: The aggregate class this mapper stores.
        table: The root table: one row per aggregate, with the id and version columns.
        id_column: Name of the root table's id column (default ``"id"``).
        version_column: Name of the root table's integer version column (default ``"version"``).
        columns: The column each queried field path is stored in, for finders
            (:class:`~tactical.Query`): ``{"holder.id": policies.c.holder_id, "status":
            policies.c.status}``. ``"id"`` is the id column without saying so. A query
            comparing a path not listed raises ``ValueError`` naming it
            (``.. versionadded:: 0.2.0``).

    A finder's query becomes ``SELECT id FROM table WHERE ...`` over these columns, and
    each aggregate found that the transaction does not hold yet is read with
    :meth:`load`. The contract suite's finder tests prove that the columns answer as the
    aggregates' fields do (``Query.matches``, which the in-memory store uses).

    .. versionadded:: 0.1.0
    """

    aggregate_type: type[A]
    table: sa.Table
    id_column: str = "id"
    version_column: str = "version"
    columns: Mapping[str, sa.ColumnElement[Any]] = MappingProxyType({})

    def column_for(self, path: str) -> sa.ColumnElement[Any]:
        """The column a finder compares for the field ``path`` (``"holder.id"``).

        Raises:
            ValueError: :attr:`columns` has no column for ``path``.

        .. versionadded:: 0.2.0
        """
        return column_of_field(self, self.columns, path, self.table.c[self.id_column])

    def column_value(self, path: str, value: object) -> object:
        """The value a finder compares the column of ``path`` with, for the field's ``value``.

        By default an enum member's ``value``, anything else as it is (SQLAlchemy's column
        types take UUIDs, dates, numbers and strings). Override it for a column that stores
        a field otherwise.

        .. versionadded:: 0.2.0
        """
        return field_value(value)

    @abstractmethod
    def load(self, connection: sa.Connection, aggregate_id: IdT) -> A | None:
        """Read the aggregate with this id, its ``version`` set from the root row; None if absent.

        Read the root row first, then its children. On PostgreSQL at READ COMMITTED each
        statement sees the latest commit: children read before the root could be older
        than the version read after them, and a write based on them would pass the
        version check and overwrite the newer children.
        """

    @abstractmethod
    def insert(self, connection: sa.Connection, aggregate: A) -> None:
        """Insert the root row (with ``aggregate.version``, already set) and its children."""

    @abstractmethod
    def update(self, connection: sa.Connection, aggregate: A) -> None:
        """Write the aggregate's current state over its rows.

        The root row's version has already been checked and bumped: do not write it.
        """

    @abstractmethod
    def delete(self, connection: sa.Connection, aggregate: A) -> None:
        """Delete the aggregate's rows (children and root). Its version was checked first."""
