"""The SQL unit of work at its edges: damaged rows, and commits that fail half-way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.sqlalchemy.counter_mapping import CounterMapper, counters, mapped, tallies

import sqlalchemy as sa
from tactical import DeserializationError, DomainEvent, EventBus, InMemoryUnitOfWork
from tactical._uow import Change
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, aggregates_table, create_schema, outbox_table
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
        """rollback() starts over on a fresh connection and gives the old one back at once."""
        with SqlAlchemyUnitOfWork(engine) as uow:
            first = uow.connection
            uow.rollback()
            uow.rollback()
            assert first.closed
            assert not uow.connection.closed
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

    def _store(self, changes: Sequence[Change]) -> None:
        self._writes = 0
        super()._store(changes)

    def _write(
        self, connection: sa.Connection, change: Change, name: tuple[str, str], now: datetime
    ) -> None:
        self._crash_here()
        super()._write(connection, change, name, now)

    def _write_outbox(
        self,
        connection: sa.Connection,
        changes: Sequence[Change],
        names: dict[int, tuple[str, str]],
    ) -> None:
        self._crash_here()
        super()._write_outbox(connection, changes, names)

    def _crash_here(self) -> None:
        self._writes += 1
        if self._writes == self.crash_at:
            raise Sabotaged(f"crash at write {self._writes}")


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
