"""The SQL unit of work at its edges: damaged rows, and commits that fail half-way."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects.postgresql import JSONB
from tests.sqlalchemy.counter_mapping import CounterMapper, counters, mapped, tallies

import sqlalchemy as sa
from tactical import (
    AggregateRoot,
    DeserializationError,
    DomainEvent,
    EventBus,
    InMemoryUnitOfWork,
)
from tactical._uow import Change
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, aggregates_table, create_schema, outbox_table
from tactical.sqlalchemy._statements import Execute, MapperCall, Operation
from tactical.testing import Counter, Tag


class Sabotaged(Exception):
    """Raised by the sabotaged mapper after it wrote part of an aggregate."""


class HalfwayMapper(CounterMapper):
    """Writes the root row, then fails before the child rows while ``broken`` is set."""

    broken = True

    def insert(self, connection: sa.Connection, aggregate: Counter) -> None:
        super().insert(connection, aggregate)
        if self.broken:
            raise Sabotaged("after the root row")

    def update(self, connection: sa.Connection, aggregate: Counter) -> None:
        connection.execute(tallies.delete().where(tallies.c.counter_id == aggregate.id))
        if self.broken:
            raise Sabotaged("after deleting the children")
        super().update(connection, aggregate)

    def delete(self, connection: sa.Connection, aggregate: Counter) -> None:
        connection.execute(tallies.delete().where(tallies.c.counter_id == aggregate.id))
        if self.broken:
            raise Sabotaged("before deleting the root row")
        super().delete(connection, aggregate)


def rows(engine: sa.Engine) -> dict[str, list[tuple[object, ...]]]:
    """Everything stored: mapped tables, documents and the outbox."""
    with engine.connect() as connection:
        return {
            table.name: [tuple(row) for row in connection.execute(sa.select(table)).all()]
            for table in (counters, tallies, aggregates_table, outbox_table)
        }


class TestMidCommitFailure:
    @pytest.mark.parametrize("kind", ["insert", "update", "delete"])
    def test_a_mapper_failing_half_way_leaves_nothing_and_publishes_nothing(
        self, mapped_engine: sa.Engine, kind: str
    ) -> None:
        """A mapper raising after part of its writes: no row, no outbox, versions as before."""
        mapper = HalfwayMapper()
        mapper.broken = False
        bus, seen = EventBus(), list[DomainEvent]()
        bus.subscribe(DomainEvent, seen.append)
        # Several aggregates on purpose: one failing write must undo the others.
        uow = SqlAlchemyUnitOfWork(
            mapped_engine, bus, mappers=[mapper], allow_multiple_aggregates=True
        )
        mapped_counter = Counter(UUID(int=1), "mapped", tag=Tag("t"))
        mapped_counter.mark(1)
        if kind != "insert":
            with uow:
                uow.repository(Counter).add(mapped_counter)
                uow.commit()
        seen.clear()
        before = rows(mapped_engine)
        mapper.broken = True
        document = _DocumentCounter(uuid4(), "document")
        document.tick()
        with uow:
            repository = uow.repository(Counter)
            target = mapped_counter if kind == "insert" else repository.require(mapped_counter.id)
            target.tick()
            uow.repository(_DocumentCounter).add(document)
            if kind == "insert":
                repository.add(target)
            elif kind == "delete":
                repository.remove(target)
            version = target.version
            with pytest.raises(Sabotaged):
                uow.commit()
        assert rows(mapped_engine) == before
        assert seen == []
        assert (target.version, document.version) == (version, 0)
        mapper.broken = False
        with uow:
            repository = uow.repository(Counter)
            if kind == "insert":
                repository.add(target)
            else:
                retried = repository.require(mapped_counter.id)
                retried.tick()
                if kind == "delete":
                    repository.remove(retried)
            uow.repository(_DocumentCounter).add(document)
            uow.commit()
        assert len(seen) == 2
        after = rows(mapped_engine)
        assert len(after[outbox_table.name]) == len(before[outbox_table.name]) + 2
        assert len(after[aggregates_table.name]) == 1


class _DocumentCounter(Counter):
    """A Counter subclass stored as a JSON document (no mapper), beside the mapped one."""


class TestDamagedRows:
    def test_state_that_is_not_json_names_the_row(self, sqlite_engine: sa.Engine) -> None:
        """Text that is not JSON in the state column is a DeserializationError, not a bare one."""
        counter = Counter(uuid4(), "damaged")
        with SqlAlchemyUnitOfWork(sqlite_engine) as uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        with sqlite_engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE tactical_aggregates SET state = :state"), {"state": "{not json"}
            )
        with (
            SqlAlchemyUnitOfWork(sqlite_engine) as uow,
            pytest.raises(
                DeserializationError,
                match=rf"Counter state is not valid JSON \(row tactical_aggregates\("
                rf"aggregate_type=.*Counter', aggregate_id='{counter.id}'\)\)",
            ),
        ):
            uow.repository(Counter).get(counter.id)

    def test_a_version_that_is_not_an_integer_names_the_row(self, sqlite_engine: sa.Engine) -> None:
        """SQLite keeps text in an INTEGER column; reading it names the row and the field."""
        counter = Counter(uuid4(), "damaged")
        with SqlAlchemyUnitOfWork(sqlite_engine) as uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        with sqlite_engine.begin() as connection:
            connection.execute(sa.text("UPDATE tactical_aggregates SET version = 'one'"))
        with (
            SqlAlchemyUnitOfWork(sqlite_engine) as uow,
            pytest.raises(
                DeserializationError,
                match=rf"aggregate_id='{counter.id}'\).*version: expected an integer, got 'one'",
            ),
        ):
            uow.repository(Counter).get(counter.id)


class TestConnections:
    def test_rollback_inside_a_block_closes_the_connection_it_replaces(
        self, engine: sa.Engine
    ) -> None:
        """rollback() starts over outside the old transaction, holding one connection only.

        The old connection is given back at once, or (SQLite) kept by the thread and taken
        again, its transaction rolled back.
        """
        with SqlAlchemyUnitOfWork(engine) as uow:
            first = uow.connection
            uow.rollback()
            uow.rollback()
            assert first.closed or first is uow.connection
            assert not uow.connection.closed
            assert isinstance(engine.pool, sa.QueuePool)
            assert engine.pool.checkedout() == 1
            uow.repository(Counter).add(Counter(uuid4(), "after rollbacks"))
            uow.commit()
        with engine.connect() as connection:
            assert (
                connection.execute(
                    sa.select(sa.func.count()).select_from(aggregates_table)
                ).scalar_one()
                == 1
            )


class CrashingUnitOfWork(SqlAlchemyUnitOfWork):
    """Raises at the ``crash_at``-th write of a commit (the outbox insert counts as the last)."""

    crash_at: int | None = None
    _writes = 0

    def _store(self, changes: Sequence[Change]) -> None:
        self._writes = 0
        super()._store(changes)

    def _perform(self, operation: Operation) -> object:
        if _writes(operation):
            self._writes += 1
            if self._writes == self.crash_at:
                raise Sabotaged(f"crash at write {self._writes}")
        return super()._perform(operation)


def _writes(operation: Operation) -> bool:
    """Whether ``operation`` writes rows: a statement answering with a count, a mapper's write."""
    if isinstance(operation, Execute):
        return operation.reads is None
    return isinstance(operation, MapperCall) and operation.method.__name__ != "load"


operations = st.lists(
    st.tuples(st.sampled_from(["add", "tick", "rename", "remove"]), st.integers(0, 3)),
    min_size=1,
    max_size=8,
)


class TestCrashInjection:
    @settings(max_examples=40, deadline=None)
    @given(operations, st.integers(1, 6), st.booleans())
    def test_a_crash_at_any_write_stores_nothing_and_a_retry_ends_as_in_memory(
        self,
        tmp_path_factory: pytest.TempPathFactory,
        ops: list[tuple[str, int]],
        crash_at: int,
        mapped_too: bool,
    ) -> None:
        """Whichever write fails, nothing is stored or published; the retry matches memory."""
        engine = _crash_engine(tmp_path_factory)
        mappers = [CounterMapper()] if mapped_too else []
        ids = [uuid4() for _ in range(4)]
        sql_bus, sql_seen = EventBus(), list[DomainEvent]()
        sql_bus.subscribe(DomainEvent, sql_seen.append)
        memory_bus, memory_seen = EventBus(), list[DomainEvent]()
        memory_bus.subscribe(DomainEvent, memory_seen.append)
        sql = CrashingUnitOfWork(engine, sql_bus, mappers=mappers, allow_multiple_aggregates=True)
        memory = InMemoryUnitOfWork(memory_bus, allow_multiple_aggregates=True)
        for uow in (sql, memory):
            with uow:  # two of the four are stored beforehand
                for cid in ids[:2]:
                    uow.repository(Counter).add(Counter(cid, "stored"))
                uow.commit()

        before = rows(engine)
        sql.crash_at = crash_at
        try:
            _transact(sql, ids, ops)
        except Sabotaged:
            assert rows(engine) == before
            assert sql_seen == []
            sql.crash_at = None
            _transact(sql, ids, ops)  # the same transaction again, without the crash
        _transact(memory, ids, ops)

        assert _picture(sql, ids) == _picture(memory, ids)
        assert [_event(e) for e in sql_seen] == [_event(e) for e in memory_seen]
        after = rows(engine)
        assert len(after[outbox_table.name]) == len(before[outbox_table.name]) + len(sql_seen)
        engine.dispose()


def _transact(
    uow: SqlAlchemyUnitOfWork | InMemoryUnitOfWork, ids: list[UUID], ops: list[tuple[str, int]]
) -> None:
    removed: set[int] = set()
    with uow:
        repository = uow.repository(Counter)
        for op, i in ops:
            counter = repository.get(ids[i])
            if op == "add" and counter is None and i not in removed:
                repository.add(Counter(ids[i], "added"))
            elif counter is not None and op == "tick":
                counter.tick()
            elif counter is not None and op == "rename":
                counter.rename(f"renamed {i}")
            elif counter is not None and op == "remove":
                repository.remove(counter)
                removed.add(i)
        uow.commit()


def _picture(
    uow: SqlAlchemyUnitOfWork | InMemoryUnitOfWork, ids: list[UUID]
) -> list[tuple[str, int, int] | None]:
    with uow:
        stored = [uow.repository(Counter).get(cid) for cid in ids]
    return [None if c is None else (c.name, c.count, c.version) for c in stored]


def _event(event: DomainEvent) -> tuple[str, object]:
    return (type(event).__name__, getattr(event, "counter_id", None))


def _crash_engine(tmp_path_factory: pytest.TempPathFactory) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('crash') / 'db.sqlite3'}")
    create_schema(engine)
    mapped.create_all(engine)
    return engine


class Noted(DomainEvent):
    counter_id: UUID
    count: int


class TestUnstorableCommits:
    def test_an_aggregate_holding_a_misfit_value_is_refused_and_nothing_is_stored(
        self, mapped_engine: sa.Engine
    ) -> None:
        """A field that could not be read back fails the commit, naming it; nothing lands."""
        good, bad = Counter(uuid4(), "good"), Counter(uuid4(), "bad")
        good.tick()
        bad.count = 1.5  # type: ignore[assignment]
        # Two aggregates on purpose: the good one must not land when the bad one fails.
        with SqlAlchemyUnitOfWork(mapped_engine, allow_multiple_aggregates=True) as uow:
            uow.repository(Counter).add(good)
            uow.repository(Counter).add(bad)
            with pytest.raises(
                TypeError, match=r"cannot store Counter: count: expected an integer"
            ):
                uow.commit()
        assert rows(mapped_engine)[aggregates_table.name] == []
        assert rows(mapped_engine)[outbox_table.name] == []
        assert (good.version, len(good.pending_events)) == (0, 1)

    def test_an_event_holding_a_misfit_value_is_refused_and_nothing_is_stored(
        self, mapped_engine: sa.Engine
    ) -> None:
        """An event that could not be read back from the outbox fails the commit."""
        counter = Counter(uuid4(), "noted")
        counter.record(Noted(counter.id, "three"))  # type: ignore[arg-type]
        with SqlAlchemyUnitOfWork(mapped_engine) as uow:
            uow.repository(Counter).add(counter)
            with pytest.raises(TypeError, match=r"cannot store Noted: count: expected an integer"):
                uow.commit()
        assert rows(mapped_engine)[aggregates_table.name] == []
        assert rows(mapped_engine)[outbox_table.name] == []


# -- what no database or broker can carry, and rows that name another aggregate -------------


class Gauge(AggregateRoot[str]):
    """An aggregate with the fields that damaged rows break, stored as a JSON document."""

    label: str = "ok"
    ratio: float = 0.5
    amount: Decimal = Decimal("1.5")
    anything: Any = None
    tags: frozenset[Any] = frozenset()

    def relabel(self, label: str) -> None:
        self.label = label
        self.record(Relabelled(self.id, label))


class Relabelled(DomainEvent):
    gauge_id: str
    label: str


def store(engine: sa.Engine, *gauges: Gauge) -> None:
    for gauge in gauges:
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(Gauge).add(gauge)
            uow.commit()


def damage(engine: sa.Engine, gauge_id: str, text: str) -> None:
    """Write ``text`` as the stored state of ``gauge_id``, past the unit of work."""
    state: sa.ColumnElement[Any] = sa.bindparam("text", type_=sa.Text)
    if engine.dialect.name == "postgresql":
        state = sa.cast(state, JSONB)
    with engine.begin() as connection:
        connection.execute(
            aggregates_table.update()
            .where(aggregates_table.c.aggregate_id == gauge_id)
            .values(state=state),
            {"text": text},
        )


def state_with(**fields: str) -> str:
    """A Gauge document whose fields are JSON text (``ratio="NaN"``), for damaged rows."""
    values = {"label": '"ok"', "ratio": "0.5", "amount": '"1.5"', "anything": "null"}
    values |= {"tags": "[]", "id": '"a"'} | fields
    return "{" + ",".join(f'"{name}":{value}' for name, value in values.items()) + "}"


def stored_rows(engine: sa.Engine, table: sa.Table) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.select(table)).all()]


def nothing_stored(engine: sa.Engine) -> bool:
    return stored_rows(engine, aggregates_table) == stored_rows(engine, outbox_table) == []


ROW_A = r"row tactical_aggregates\(aggregate_type='tests\.sqlalchemy\.test_uow_boundaries\.Gauge', aggregate_id='a'\)"


class TestUnstorableValuesAtCommit:
    @pytest.mark.parametrize(
        ("text", "reason"),
        [("bad\ud800", "a lone surrogate"), ("bad\x00", "a NUL character")],
    )
    def test_a_string_no_database_carries_is_refused_at_commit(
        self, engine: sa.Engine, text: str, reason: str
    ) -> None:
        """The same ValueError on SQLite and PostgreSQL, before the database sees it."""
        gauge = Gauge("a", label=text)
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(Gauge).add(gauge)
            with pytest.raises(ValueError, match=rf"cannot store Gauge: label: .*{reason}"):
                uow.commit()
        assert nothing_stored(engine)
        assert gauge.version == 0

    def test_an_event_holding_a_lone_surrogate_is_refused_and_nothing_is_stored(
        self, engine: sa.Engine
    ) -> None:
        """An outbox payload the relay could never encode as UTF-8 fails the commit."""
        store(engine, Gauge("a"))
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(Gauge).require("a").relabel("bad\ud800")
            with pytest.raises(ValueError, match=r"cannot store Gauge: label: .*surrogate"):
                uow.commit()
        assert stored_rows(engine, outbox_table) == []
        with SqlAlchemyUnitOfWork(engine) as uow:
            assert uow.repository(Gauge).require("a").version == 1
            uow.rollback()

    @pytest.mark.parametrize(
        ("gauge_id", "reason"),
        [
            ("x" * 256, r"is 256 characters as text, over the 255"),
            ("a\x00", r"holds a NUL character"),
            ("a\ud800", r"holds a lone surrogate"),
        ],
    )
    def test_an_id_no_aggregate_id_column_holds_is_refused_at_commit(
        self, engine: sa.Engine, gauge_id: str, reason: str
    ) -> None:
        """Ids over 255 characters, or with NUL or a lone surrogate: a ValueError on both."""
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(Gauge).add(Gauge(gauge_id))
            with pytest.raises(ValueError, match=rf"cannot store Gauge: its id .*{reason}"):
                uow.commit()
        assert nothing_stored(engine)
        with SqlAlchemyUnitOfWork(engine) as uow:
            assert uow.repository(Gauge).get(gauge_id) is None
            uow.rollback()

    def test_an_id_of_255_characters_is_stored(self, engine: sa.Engine) -> None:
        """The bound is the column's: 255 characters fit."""
        store(engine, Gauge("é" * 255))
        with SqlAlchemyUnitOfWork(engine) as uow:
            assert uow.repository(Gauge).require("é" * 255).version == 1
            uow.rollback()

    def test_an_event_type_name_no_routing_key_carries_is_refused_at_commit(
        self, engine: sa.Engine
    ) -> None:
        """An unregistered event whose default name is over 255 bytes fails the commit."""
        long_event = type("E" * 300, (Relabelled,), {"__module__": __name__})
        gauge = Gauge("a")
        gauge.record(long_event("a", "x"))
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(Gauge).add(gauge)
            with pytest.raises(ValueError, match=r"bytes of UTF-8, over the 255"):
                uow.commit()
        assert nothing_stored(engine)


texts = st.text(st.characters(exclude_categories=()), max_size=8)


class TestAnyText:
    @settings(
        max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(label=texts, gauge_id=texts)
    def test_any_text_round_trips_through_a_commit_or_is_refused_with_a_value_error(
        self, engine: sa.Engine, label: str, gauge_id: str
    ) -> None:
        """Never a raw database error: stored and read back equal, or a ValueError at commit."""
        gauge_id = f"{uuid4()}{gauge_id}"
        gauge = Gauge(gauge_id, anything={label: [label]})
        gauge.relabel(label)
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(Gauge).add(gauge)
            try:
                uow.commit()
            except ValueError as error:
                refused = str(error)
            else:
                refused = ""
        carried = not any(c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF for c in label + gauge_id)
        assert refused.startswith("cannot store Gauge: ") != carried
        with SqlAlchemyUnitOfWork(engine) as uow:
            read = uow.repository(Gauge).get(gauge_id)
            uow.rollback()
        if carried:
            assert read is not None
            assert (read.label, read.anything) == (label, {label: [label]})
        else:
            assert read is None


class TestDamagedDocuments:
    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"amount": '"NaN"'}, r"amount: the decimal 'NaN' is NaN"),
            ({"amount": '"sNaN"'}, r"amount: the decimal 'sNaN' is NaN"),
            ({"ratio": "1e400"}, r"ratio: "),
            ({"tags": "[[1]]"}, r"tags: a set item is not hashable"),
            ({"anything": "[" * 101 + "]" * 101}, r"anything: a JSON value nested more"),
            # Past Python 3.11's json parser, which 3.13's parses: then the codec's own bound.
            ({"anything": "[" * 3000 + "]" * 3000}, r"nested (too deeply|more than 100)"),
        ],
    )
    def test_a_damaged_document_is_a_deserialization_error_naming_the_row(
        self, engine: sa.Engine, fields: dict[str, str], message: str
    ) -> None:
        """On both databases: never decimal.InvalidOperation, TypeError or RecursionError."""
        store(engine, Gauge("a"))
        damage(engine, "a", state_with(**fields))
        with SqlAlchemyUnitOfWork(engine) as uow:
            with pytest.raises(DeserializationError) as raised:
                uow.repository(Gauge).get("a")
            uow.rollback()
        assert re.search(ROW_A, str(raised.value))
        assert re.search(message, str(raised.value))

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"ratio": "NaN"}, r"ratio: the non-finite number nan"),
            ({"ratio": "-Infinity"}, r"ratio: the non-finite number -inf"),
            ({"label": r'"a\u0000"'}, r"label: the string 'a\\x00' holds a NUL"),
            ({"label": r'"a\ud800"'}, r"label: the string 'a\\ud800' holds a lone surrogate"),
        ],
    )
    def test_what_sqlite_keeps_and_postgresql_refuses_is_refused_on_read(
        self, sqlite_engine: sa.Engine, fields: dict[str, str], message: str
    ) -> None:
        """Reading refuses what writing refuses, so the aggregate read can be saved again."""
        store(sqlite_engine, Gauge("a"))
        damage(sqlite_engine, "a", state_with(**fields))
        with SqlAlchemyUnitOfWork(sqlite_engine) as uow:
            with pytest.raises(DeserializationError, match=rf"{ROW_A}.*{message}"):
                uow.repository(Gauge).get("a")
            uow.rollback()

    def test_a_document_that_is_not_utf8_names_the_row(self, sqlite_engine: sa.Engine) -> None:
        """SQLite's 'Could not decode to UTF-8' is a DeserializationError, not OperationalError."""
        store(sqlite_engine, Gauge("a"))
        with sqlite_engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE tactical_aggregates SET state = CAST(X'7b22ff227d' AS TEXT)")
            )
        with SqlAlchemyUnitOfWork(sqlite_engine) as uow:
            with pytest.raises(DeserializationError, match=rf"state is not UTF-8 text \({ROW_A}"):
                uow.repository(Gauge).get("a")
            uow.rollback()


class TestDocumentsNamingAnotherAggregate:
    def test_a_document_whose_id_names_another_aggregate_is_refused(
        self, engine: sa.Engine
    ) -> None:
        """Loading a's row that says id = b raises, so b's row can never be overwritten."""
        store(engine, Gauge("a", label="A"), Gauge("b", label="B"))
        damage(engine, "a", state_with(id='"b"', label='"A"'))
        with SqlAlchemyUnitOfWork(engine) as uow:
            with pytest.raises(
                DeserializationError,
                match=rf"Gauge state \({ROW_A}\) has id 'b', not the row's 'a'",
            ):
                uow.repository(Gauge).get("a")
            uow.rollback()
        with SqlAlchemyUnitOfWork(engine) as uow:
            assert uow.repository(Gauge).require("b").label == "B"
            uow.rollback()

    def test_a_mapper_returning_another_aggregate_is_refused(
        self, mapped_engine: sa.Engine
    ) -> None:
        """A relational mapper's load must return the aggregate asked for."""

        class CrossedMapper(CounterMapper):
            def load(self, connection: sa.Connection, aggregate_id: UUID) -> Counter | None:
                return super().load(connection, other.id)

        wanted, other = Counter(uuid4(), "wanted"), Counter(uuid4(), "other")
        for counter in (wanted, other):
            with SqlAlchemyUnitOfWork(mapped_engine, mappers=[CounterMapper()]) as uow:
                uow.repository(Counter).add(counter)
                uow.commit()
        with SqlAlchemyUnitOfWork(mapped_engine, mappers=[CrossedMapper()]) as uow:
            with pytest.raises(
                DeserializationError,
                match=rf"CrossedMapper\.load\(UUID\('{wanted.id}'\)\) returned .*, not the "
                rf"Counter with id UUID\('{wanted.id}'\)",
            ):
                uow.repository(Counter).get(wanted.id)
            uow.rollback()

    @pytest.mark.parametrize("storage", ["memory", "sql"])
    def test_changing_a_loaded_aggregates_id_cannot_overwrite_another(
        self, engine: sa.Engine, storage: str
    ) -> None:
        """An id changed after loading is refused at commit; the aggregate it names is intact."""
        uow: SqlAlchemyUnitOfWork | InMemoryUnitOfWork = (
            InMemoryUnitOfWork() if storage == "memory" else SqlAlchemyUnitOfWork(engine)
        )
        for gauge in (Gauge("a", label="A"), Gauge("b", label="B")):
            with uow:
                uow.repository(Gauge).add(gauge)
                uow.commit()
        with uow:
            loaded = uow.repository(Gauge).require("a")
            loaded.id = "b"
            loaded.label = "A over B"
            with pytest.raises(ValueError, match=r"Gauge 'a': its id was changed to 'b' after"):
                uow.commit()
            uow.rollback()
        with uow:
            assert uow.repository(Gauge).require("b").label == "B"
            assert uow.repository(Gauge).require("a").label == "A"
            uow.rollback()
