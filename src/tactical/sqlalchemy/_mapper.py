"""Relational mapping: store an aggregate type in tables of your own design."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from tactical._model import AggregateRoot

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

    .. versionadded:: 0.1.0
    """

    aggregate_type: type[A]
    table: sa.Table
    id_column: str = "id"
    version_column: str = "version"

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
