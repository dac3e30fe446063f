"""The unit of work's statements, compiled once per dialect, and the operations that run them.

Each statement is built with SQLAlchemy and compiled once for each dialect object (every
engine has its own: SQLite's ``?``, psycopg's ``%(name)s`` in sync and async mode, asyncpg's
``$1::TYPE``, each with its driver's JSON serializer). Its values go through the bind
processors SQLAlchemy would apply (JSON text on SQLite, ``Jsonb`` on psycopg, UTC datetimes,
UUIDs as SQLite stores them) and its rows through the result processors, so the rows are
exactly what Core writes and reads back. What is skipped is SQLAlchemy's per-call statement
work: no cache key and cache lookup, no compiled parameter handling, no ``RETURNING`` of
the outbox position. Every value stays a bound parameter.

The operations (:class:`Execute`, :class:`Commit`, ...) are what the unit of work's flows
yield; a sync driver runs them on a ``Connection``, an async one on an ``AsyncConnection``
(``exec_driver_sql`` exists on both), with the same statements.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

import sqlalchemy as sa
from tactical.sqlalchemy._mapper import RelationalMapper
from tactical.sqlalchemy._schema import aggregates_table, outbox_table, scheduled_table

__all__ = [
    "Commit",
    "DocumentStatements",
    "Execute",
    "MapperCall",
    "MapperStatements",
    "Operation",
    "Prepared",
    "ReadAlone",
    "RestartForWriting",
    "Rollback",
    "Select",
    "document_statements",
    "mapper_statements",
]

_Processor: TypeAlias = Callable[[Any], Any]


@dataclass(slots=True, eq=False)
class Execute:
    """Run ``sql`` with ``parameters`` (one set, or a list for executemany).

    Its result is the list of rows when ``reads`` is set (each row passed through ``reads``),
    else the number of rows the statement changed.
    """

    sql: str
    parameters: tuple[Any, ...] | dict[str, Any] | list[Any]
    reads: Callable[[Sequence[Any]], list[Any]] | None = None

    def outcome(self, result: sa.CursorResult[Any]) -> Any:
        """What the flow receives from ``result`` (the driver's answer to this operation)."""
        if self.reads is None:
            return result.rowcount
        return self.reads(result.all())


@dataclass(frozen=True, slots=True)
class ReadAlone:
    """Run the read ``execute`` in the block's transaction if it has begun, else on its own.

    On its own means in the database's autocommit mode: one round trip, no ``BEGIN`` and
    no ``ROLLBACK`` around it. Only single-statement reads whose answer a write checks
    again (a document's version) may run so.
    """

    execute: Execute


@dataclass(frozen=True, slots=True)
class MapperCall:
    """Call a relational mapper's method with the connection and ``argument``; its result.

    ``isolated`` runs it in a savepoint, so that its failure (a duplicate key) leaves the
    transaction usable for the stale-version lookup that follows.
    """

    method: Callable[[sa.Connection, Any], Any]
    argument: Any
    isolated: bool = False


@dataclass(frozen=True, slots=True)
class Select:
    """Run a SQLAlchemy Core ``statement`` (a finder's query) in the transaction; its rows.

    Built per query and compiled by SQLAlchemy with bound parameters, unlike the unit of
    work's own statements, which are compiled once.
    """

    statement: sa.Executable


@dataclass(frozen=True, slots=True)
class Commit:
    """Commit the transaction."""


@dataclass(frozen=True, slots=True)
class Rollback:
    """Roll the transaction back, if the connection still has one."""


@dataclass(frozen=True, slots=True)
class RestartForWriting:
    """SQLite: end the read-only transaction and begin one that waits for the write lock."""


Operation: TypeAlias = (
    Execute | ReadAlone | MapperCall | Select | Commit | Rollback | RestartForWriting
)
"""What a unit of work's flow asks its driver to do."""

COMMIT = Commit()
ROLLBACK = Rollback()
RESTART_FOR_WRITING = RestartForWriting()


class Prepared:
    """One statement compiled for one dialect; call it with values to get an :class:`Execute`.

    ``names`` are the statement's bound parameters in the order the caller passes their
    values; the compiled form may order them otherwise (or name them), which is decided
    here once. A SELECT (or ``returns_rows``) answers with its rows, anything else with
    its row count.
    """

    __slots__ = ("_keys", "_order", "_processors", "_reads", "names", "sql")

    _order: tuple[int, ...] | None
    _processors: tuple[tuple[int, _Processor], ...]

    def __init__(
        self,
        statement: sa.ClauseElement,
        names: Sequence[str],
        dialect: Dialect,
        *,
        returns_rows: bool = False,
        **compile_kw: Any,
    ) -> None:
        compiled = cast("SQLCompiler", statement.compile(dialect=dialect, **compile_kw))
        bound = list(compiled.positiontup or compiled.bind_names.values())
        if sorted(bound) != sorted(names):
            raise ValueError(f"statement parameters {bound} are not {list(names)}")
        self.sql = str(compiled)
        self.names = tuple(names)
        # A named paramstyle (psycopg's) takes a dict: its keys as the SQL spells them.
        self._keys = (
            None
            if compiled.positiontup is not None
            else tuple(compiled.escaped_bind_names.get(name, name) for name in bound)
        )
        # Where each parameter's value is in ``values`` (None: in the same place), and the
        # bind processors there are, by position in compiled order.
        order = tuple(self.names.index(name) for name in bound)
        self._order = None if order == tuple(range(len(order))) else order
        self._processors = tuple(
            (index, process)
            for index, name in enumerate(bound)
            if (process := compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            is not None
        )
        selected = statement.selected_columns if isinstance(statement, sa.Select) else ()
        self._reads = (
            _row_reader([c.type for c in selected], dialect)
            if returns_rows or isinstance(statement, sa.Select)
            else None
        )

    def bind(self, values: Sequence[Any]) -> tuple[Any, ...] | dict[str, Any]:
        """``values`` (in ``names`` order) processed for the driver, in its paramstyle."""
        ordered = list(values) if self._order is None else [values[i] for i in self._order]
        for index, process in self._processors:
            ordered[index] = process(ordered[index])
        if self._keys is not None:
            return dict(zip(self._keys, ordered, strict=True))
        return tuple(ordered)

    def __call__(self, *values: Any) -> Execute:
        """Run once with ``values`` (in ``names`` order)."""
        return Execute(self.sql, self.bind(values), self._reads)

    def many(self, rows: Sequence[Sequence[Any]]) -> Execute:
        """Run once per row of values (executemany); one row runs as a single execute."""
        if len(rows) == 1:
            return self(*rows[0])
        return Execute(self.sql, [self.bind(values) for values in rows], self._reads)


def _row_reader(
    types: Sequence[sa.types.TypeEngine[Any]], dialect: Dialect
) -> Callable[[Sequence[Any]], list[Any]]:
    """Apply the result processors SQLAlchemy would (JSON text parsed on SQLite)."""
    processors = [
        (index, process)
        for index, type_ in enumerate(types)
        if (process := type_.dialect_impl(dialect).result_processor(dialect, None)) is not None
    ]
    if not processors:
        return list

    def read(rows: Sequence[Any]) -> list[Any]:
        read_rows: list[Any] = []
        for row in rows:
            values = list(row)
            for index, process in processors:
                values[index] = process(values[index])
            read_rows.append(values)
        return read_rows

    return read


@dataclass(frozen=True, slots=True)
class DocumentStatements:
    """Statements on the document and outbox tables, for one dialect."""

    select_document: Prepared
    insert_document: Prepared
    update_document: Prepared
    delete_document: Prepared
    document_version: Prepared
    insert_outbox: Prepared
    busy_timeout: Prepared | None
    upsert_scheduled: Prepared
    delete_scheduled: Prepared


_doc = aggregates_table.c
DOCUMENT_COLUMNS = ("aggregate_type", "aggregate_id", "version", "state", "updated_at")
OUTBOX_COLUMNS = (
    "event_id",
    "event_type",
    "event_version",
    "aggregate_type",
    "aggregate_id",
    "aggregate_version",
    "payload",
    "occurred_at",
    "correlation_id",
    "causation_id",
    "partition_key",
    "trace_context",
)
SCHEDULED_COLUMNS = (
    "key",
    "due_at",
    "message_id",
    "message_type",
    "message_version",
    "payload",
    "occurred_at",
    "scheduled_at",
    "correlation_id",
    "causation_id",
)
_DOCUMENT_KEY = ("b_type", "b_id")
_is_row = (
    _doc.aggregate_type == sa.bindparam("b_type", type_=_doc.aggregate_type.type),
    _doc.aggregate_id == sa.bindparam("b_id", type_=_doc.aggregate_id.type),
)
_is_version = _doc.version == sa.bindparam("b_expected", type_=_doc.version.type)
_INSERT_DOCUMENT: dict[str, Callable[[sa.Table], sqlite.Insert | postgresql.Insert]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}

_documents: weakref.WeakKeyDictionary[Dialect, DocumentStatements] = weakref.WeakKeyDictionary()


def document_statements(dialect: Dialect) -> DocumentStatements:
    """The document and outbox statements compiled for ``dialect`` (once per dialect).

    Raises:
        ValueError: The dialect is neither SQLite nor PostgreSQL (the insert relies on
            ``INSERT ... ON CONFLICT DO NOTHING`` to detect an existing aggregate).
    """
    statements = _documents.get(dialect)
    if statements is None:
        statements = _documents[dialect] = _compile_documents(dialect)
    return statements


def _compile_documents(dialect: Dialect) -> DocumentStatements:
    insert = _INSERT_DOCUMENT.get(dialect.name)
    if insert is None:
        raise ValueError(
            f"tactical's SQL unit of work runs on SQLite and PostgreSQL, not {dialect.name}"
        )
    # An existing row makes the insert change nothing (row count 0) instead of failing:
    # no savepoint is needed to keep the transaction usable for the stale-version lookup.
    insert_document = (
        insert(aggregates_table)
        .on_conflict_do_nothing(index_elements=[_doc.aggregate_type, _doc.aggregate_id])
        .inline()
    )
    update_document = (
        aggregates_table.update()
        .where(*_is_row, _is_version)
        .values(
            version=sa.bindparam("b_version", type_=_doc.version.type),
            state=sa.bindparam("b_state", type_=_doc.state.type),
            updated_at=sa.bindparam("b_now", type_=_doc.updated_at.type),
        )
    )
    # A timer scheduled again under its key replaces the stored one (and un-parks it).
    upsert = insert(scheduled_table)
    _sc = scheduled_table.c
    upsert_scheduled = upsert.on_conflict_do_update(
        index_elements=[_sc.key],
        set_={
            **{name: upsert.excluded[name] for name in SCHEDULED_COLUMNS if name != "key"},
            "parked_at": sa.null(),
            "error": sa.null(),
        },
    )
    return DocumentStatements(
        upsert_scheduled=Prepared(
            upsert_scheduled, SCHEDULED_COLUMNS, dialect, column_keys=SCHEDULED_COLUMNS
        ),
        delete_scheduled=Prepared(
            scheduled_table.delete().where(_sc.key == sa.bindparam("b_key", type_=_sc.key.type)),
            ("b_key",),
            dialect,
        ),
        select_document=Prepared(
            sa.select(_doc.version, _doc.state).where(*_is_row), _DOCUMENT_KEY, dialect
        ),
        insert_document=Prepared(
            insert_document, DOCUMENT_COLUMNS, dialect, column_keys=DOCUMENT_COLUMNS
        ),
        update_document=Prepared(
            update_document,
            (*_DOCUMENT_KEY, "b_expected", "b_version", "b_state", "b_now"),
            dialect,
        ),
        delete_document=Prepared(
            aggregates_table.delete().where(*_is_row, _is_version),
            (*_DOCUMENT_KEY, "b_expected"),
            dialect,
        ),
        document_version=Prepared(sa.select(_doc.version).where(*_is_row), _DOCUMENT_KEY, dialect),
        # Inline: no RETURNING of the position, which nothing reads; the columns left out
        # (published_at, parked_at, error) are NULL. Several rows are one executemany, which
        # psycopg pipelines (one round trip); multi-row VALUES statements were measured
        # slower on both databases.
        insert_outbox=Prepared(
            outbox_table.insert().inline(), OUTBOX_COLUMNS, dialect, column_keys=OUTBOX_COLUMNS
        ),
        busy_timeout=Prepared(sa.text("PRAGMA busy_timeout"), (), dialect, returns_rows=True)
        if dialect.name == "sqlite"
        else None,
    )


@dataclass(frozen=True, slots=True)
class MapperStatements:
    """The version check and bump of a relational mapper's root row, and its lookup."""

    bump_version: Prepared
    stored_version: Prepared


def mapper_statements(mapper: RelationalMapper[Any, Any], dialect: Dialect) -> MapperStatements:
    """``mapper``'s root-row statements compiled for ``dialect``."""
    table = mapper.table
    id_column, version_column = table.c[mapper.id_column], table.c[mapper.version_column]
    is_root = id_column == sa.bindparam("b_id", type_=id_column.type)
    version = version_column.type
    bump = (
        table.update()
        .where(is_root, version_column == sa.bindparam("b_expected", type_=version))
        .values({version_column: sa.bindparam("b_version", type_=version)})
    )
    return MapperStatements(
        bump_version=Prepared(bump, ("b_id", "b_expected", "b_version"), dialect),
        stored_version=Prepared(sa.select(version_column).where(is_root), ("b_id",), dialect),
    )
