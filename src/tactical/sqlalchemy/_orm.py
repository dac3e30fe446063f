"""ORM mapping: store an aggregate type through declarative ORM models of your own."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Generic, TypeVar, cast

from sqlalchemy.orm import exc as orm_exc

import sqlalchemy as sa
from sqlalchemy import orm
from tactical._codec import DeserializationError
from tactical._codec_values import show
from tactical._model import AggregateRoot
from tactical._tracking import Change
from tactical.sqlalchemy._finders import MappedColumn, column_of_field, field_value

__all__ = ["OrmMapper", "stored_version", "write_change"]

A = TypeVar("A", bound=AggregateRoot[Any])
IdT = TypeVar("IdT")
M = TypeVar("M")

# What a translation refusing a row raises: the domain's own errors (DomainError is a
# ValueError), an enum given an unknown value, a Decimal that is not a number.
_REFUSALS = (ValueError, TypeError, ArithmeticError)


class OrmMapper(ABC, Generic[A, IdT, M]):
    """Maps one aggregate type to declarative ORM models of yours, through an ORM ``Session``.

    For models you keep as SQLAlchemy ORM classes (a root model with relationships to its
    children): you write :meth:`to_model` and :meth:`to_domain`, the two translations
    between the models and the aggregate; the unit of work runs them in an ORM
    :class:`~sqlalchemy.orm.Session` bound to its own connection and transaction, so the
    rows are written in the same transaction as the outbox and roll back with it.

    - Loading is ``session.get(model, primary_key(id))`` then :meth:`to_domain`; the
      aggregate's ``version`` is set from the model's version column. A translation that
      refuses a row (a :class:`~tactical.DomainError`, ``ValueError``, ``TypeError``,
      ``ArithmeticError``) raises :class:`~tactical.DeserializationError` naming the table
      and the primary key.
    - Adding is ``session.add(to_model(aggregate))``; an existing primary key is a
      :class:`~tactical.ConcurrencyError`.
    - Changing is ``session.merge(to_model(aggregate))`` over the stored row: children
      follow through the relationships' cascades (declare them ``cascade="all,
      delete-orphan"`` so that a child left out of the aggregate is deleted).
    - Removing is ``session.delete`` of the stored model (children by the same cascade, or
      by your foreign keys' ``ON DELETE CASCADE`` with ``passive_deletes=True``).

    The version check is SQLAlchemy's own: the root model must declare an integer
    ``version_id_col`` (``__mapper_args__ = {"version_id_col": version}``). Every write
    sends ``UPDATE ... WHERE id = :id AND version = :loaded`` (``DELETE`` likewise) and
    bumps the version by one, also when only children changed; a row that moved raises
    SQLAlchemy's ``StaleDataError``, which the unit of work turns into a
    :class:`~tactical.ConcurrencyError` naming the aggregate, having stored nothing.

    Each call runs in a fresh session, closed before it returns: the unit of work, not the
    session, tracks the aggregates, so no model outlives the call that read it. Never
    commit the session or the connection.

    The domain classes themselves may be the models (imperative mapping with
    ``registry.map_imperatively``): set ``model`` to the aggregate class and return the
    argument from both translations. Value objects are then composites or column types,
    never mapped classes, and relationships load eagerly (``lazy="selectin"``); the
    relational-mapping how-to says why.

    A subclass that defines ``__init__`` must call ``super().__init__()``, which checks
    the class attributes.

    Attributes:
        aggregate_type: The aggregate class this mapper stores.
        model: The root ORM model (one row per aggregate, with the version column).
        columns: The root model's attribute (or column) each queried field path is stored
            in, for finders (:class:`~tactical.Query`): ``{"holder.id":
            PolicyModel.holder_id, "status": PolicyModel.status}``. ``"id"`` is the
            primary key (compared with :meth:`primary_key` of the id) without saying so
            when it is one column. A query comparing a path not listed raises
            ``ValueError`` naming it.

    A finder's query becomes ``select(model).where(...)`` over these columns, run by
    :meth:`load_all`; the aggregates the transaction holds already are not rebuilt. The
    contract suite's finder tests prove that the columns answer as the aggregates'
    fields do (``Query.matches``, which the in-memory store uses).

    Raises:
        TypeError: ``aggregate_type`` is not an aggregate class or ``model`` is not a
            mapped class (when the mapper is made).
        ValueError: ``model`` has no ``version_id_col``, or one that is not an integer
            counted up by one.

    .. versionadded:: 0.2.0
    """

    aggregate_type: type[A]
    model: type[M]
    columns: Mapping[str, MappedColumn] = MappingProxyType({})
    _mapper: orm.Mapper[Any]
    _version_key: str
    _table_name: str

    def __init__(self) -> None:
        name = type(self).__qualname__
        aggregate_type: object = getattr(self, "aggregate_type", None)
        if not (isinstance(aggregate_type, type) and issubclass(aggregate_type, AggregateRoot)):
            raise TypeError(
                f"{name}.aggregate_type must be an AggregateRoot subclass, got {aggregate_type!r}"
            )
        model: object = getattr(self, "model", None)
        mapper: object = sa.inspect(model, raiseerr=False) if isinstance(model, type) else None
        if not isinstance(mapper, orm.Mapper):
            raise TypeError(f"{name}.model must be an ORM-mapped class, got {model!r}")
        self._mapper = mapper
        self._version_key = _version_key(name, self._mapper)
        self._table_name = str(getattr(self._mapper.local_table, "name", self._mapper))

    @abstractmethod
    def to_model(self, aggregate: A) -> M:
        """A new, unattached model of ``aggregate`` (with its children), for the session.

        Build a fresh object graph (do not load anything): the unit of work adds it, or
        merges it over the stored rows. Set every column, ``None`` included: a merge copies
        only the attributes set on the new objects, so one left out keeps its stored value
        (a field the aggregate cleared would stay in the row). Its primary key must be
        :meth:`primary_key` of the aggregate's id; the version attribute is set for you.
        What it returns is checked at commit, which stores nothing when it is not a
        ``model`` (``TypeError``) or has another primary key (``ValueError``).
        """

    @abstractmethod
    def to_domain(self, model: M) -> A:
        """The aggregate ``model`` (a stored row and its children, loaded) stands for.

        Relationships load lazily while the session is open, which it is during this call.
        The aggregate's ``version`` is set from the model afterwards.
        """

    def primary_key(self, aggregate_id: IdT) -> object:
        """The model's primary key for ``aggregate_id`` (the id itself by default).

        Override it when the column holds another form of the id (``str(aggregate_id)``)
        or the key has several columns (return a tuple, in the mapper's column order).
        """
        return aggregate_id

    def column_for(self, path: str) -> sa.ColumnElement[Any]:
        """The column a finder compares for the field ``path`` (``"holder.id"``).

        Raises:
            ValueError: :attr:`columns` has no column for ``path``.
        """
        keys = self._mapper.primary_key
        return column_of_field(self, self.columns, path, keys[0] if len(keys) == 1 else None)

    def column_value(self, path: str, value: object) -> object:
        """The value a finder compares the column of ``path`` with, for the field's ``value``.

        By default :meth:`primary_key` of an id compared as ``"id"`` (unless :attr:`columns`
        maps it), an enum member's ``value``, anything else as it is. Override it for a
        column that stores a field otherwise.
        """
        if path == "id" and "id" not in self.columns:
            return self.primary_key(cast("IdT", value))
        return field_value(value)

    def load(self, connection: sa.Connection, aggregate_id: IdT) -> A | None:
        """The aggregate stored under ``aggregate_id`` (``version`` set), or None.

        Raises:
            ~tactical.DeserializationError: :meth:`to_domain` refused the stored rows.
        """
        with self._session(connection) as session:
            model = session.get(self.model, self.primary_key(aggregate_id))
            return None if model is None else self._aggregate(model)

    def load_all(self, connection: sa.Connection, statement: sa.Select[M]) -> list[A]:
        """The aggregates of the models ``statement`` selects, in its order.

        ``statement`` is an ORM query of the root model (``select(PolicyModel).where(...)``);
        it runs in the same kind of session as :meth:`load`, and each model goes through
        :meth:`to_domain`. The aggregates are read, not tracked: no unit of work saves a
        change made to one of them (nor warns about it) unless it is added to one
        (``uow.repository(A).add(aggregate)``, written under the version it was read at)
        or loaded by id again through a repository.

        Raises:
            ~tactical.DeserializationError: :meth:`to_domain` refused a model's rows.
        """
        with self._session(connection) as session:
            return [self._aggregate(model) for model in session.scalars(statement).unique()]

    # -- for the unit of work ----------------------------------------------------------------

    def _session(self, connection: sa.Connection) -> orm.Session:
        # The session joins the unit of work's transaction and never ends it: it commits
        # nothing, and a failed flush rolls back only what the connection began for it
        # (rollback_only). A connection outside any transaction (PostgreSQL begins lazily)
        # begins one first, or the session's own would end when it closes.
        if not connection.in_transaction():
            connection.begin()
        return orm.Session(
            bind=connection,
            join_transaction_mode="rollback_only",
            autoflush=False,
            expire_on_commit=False,
        )

    def _aggregate(self, model: M) -> A:
        try:
            aggregate = self.to_domain(model)
        except _REFUSALS as error:
            raise DeserializationError(
                f"malformed row in {self._table_name} for id {self._key_of(model)}: "
                f"{type(error).__name__}: {error}"
            ) from error
        if not isinstance(aggregate, self.aggregate_type):
            raise DeserializationError(
                f"{type(self).__qualname__}.to_domain() returned {show(aggregate)} for the row "
                f"of {self._table_name} with id {self._key_of(model)}, not a "
                f"{self.aggregate_type.__qualname__}"
            )
        aggregate.version = getattr(model, self._version_key)
        return aggregate

    def _key_of(self, model: object) -> object:
        key = cast("tuple[Any, ...]", sa.inspect(model).identity)
        return key[0] if len(key) == 1 else key

    def _model_of(self, aggregate: A, version: int) -> M:
        model = self.to_model(aggregate)
        if not isinstance(model, self.model):
            raise TypeError(
                f"{type(self).__qualname__}.to_model() returned {show(model)}, "
                f"not a {self.model.__qualname__}"
            )
        expected = _key_tuple(self.primary_key(aggregate.id))
        key = tuple(self._mapper.primary_key_from_instance(model))
        if key != expected:
            raise ValueError(
                f"{type(self).__qualname__}.to_model() gave the {type(aggregate).__qualname__} "
                f"{aggregate.id} the primary key {key!r}, not {expected!r} (see primary_key())"
            )
        setattr(model, self._version_key, version)
        return model


def write_change(
    mapper: OrmMapper[Any, Any, Any], connection: sa.Connection, change: Change
) -> None:
    """Write one change of ``mapper``'s aggregate type in a session on ``connection``.

    Raises:
        StaleDataError: The stored row is gone or at another version than the change
            expects (found here, or by the version check of the flush).
        IntegrityError: The database refused an insert (an existing primary key).
    """
    aggregate = change.aggregate
    key = mapper._version_key  # pyright: ignore[reportPrivateUsage]
    with mapper._session(connection) as session:  # pyright: ignore[reportPrivateUsage]
        if change.kind == "insert":
            session.add(mapper._model_of(aggregate, 1))  # pyright: ignore[reportPrivateUsage]
        else:
            stored = session.get(mapper.model, mapper.primary_key(aggregate.id))
            if stored is None or getattr(stored, key) != change.expected_version:
                raise orm_exc.StaleDataError(
                    f"{change.aggregate_type.__qualname__} {aggregate.id} is not at version "
                    f"{change.expected_version}"
                )
            if change.kind == "update":
                expected = cast("int", change.expected_version)
                model = mapper._model_of(aggregate, expected)  # pyright: ignore[reportPrivateUsage]
                # Set on the stored model, the new version makes the flush update the root
                # row (under its version check) even when only children changed.
                setattr(session.merge(model), key, cast("int", change.new_version))
            else:
                session.delete(stored)
        session.flush()


def stored_version(
    mapper: OrmMapper[Any, Any, Any], connection: sa.Connection, aggregate_id: object
) -> int | None:
    """The version of the row stored for ``aggregate_id`` (None: there is none)."""
    columns: Sequence[sa.ColumnElement[Any]] = mapper._mapper.primary_key  # pyright: ignore[reportPrivateUsage]
    version = cast("sa.Column[Any]", mapper._mapper.version_id_col)  # pyright: ignore[reportPrivateUsage]
    values = _key_tuple(mapper.primary_key(aggregate_id))
    query = sa.select(version).where(*(c == v for c, v in zip(columns, values, strict=True)))
    return cast("int | None", connection.execute(query).scalar_one_or_none())


def _key_tuple(key: object) -> tuple[Any, ...]:
    return tuple(cast("tuple[object, ...]", key)) if isinstance(key, tuple) else (key,)


def _version_key(name: str, mapper: orm.Mapper[Any]) -> str:
    """The attribute of ``mapper``'s version column, checked to count integers up by one."""
    model = mapper.class_.__qualname__
    column = mapper.version_id_col
    if column is None:
        raise ValueError(
            f"{name}: {model} has no version_id_col; declare an integer version column and "
            '__mapper_args__ = {"version_id_col": <that column>} on it'
        )
    if not isinstance(column.type, sa.Integer):
        raise ValueError(
            f"{name}: {model}'s version_id_col {column.name} is {column.type}, not an integer"
        )
    generate = mapper.version_id_generator
    if generate and not (generate(None) == 1 and generate(1) == 2):
        raise ValueError(
            f"{name}: {model}'s version_id_generator {generate!r} does not count 1, 2, ...; "
            "leave it out (or set it to False)"
        )
    return mapper.get_property_by_column(column).key
