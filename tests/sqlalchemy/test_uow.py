"""SqlAlchemyUnitOfWork specifics: outbox, atomicity under faults, concurrency, stored rows."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from tests.sqlalchemy.main_model import MainEntryBooked, MainLedger

import sqlalchemy as sa
from tactical import (
    AggregateRoot,
    ConcurrencyError,
    DeserializationError,
    DomainEvent,
    EventBus,
    JsonCodec,
    UnknownTypeError,
    retry_on_conflict,
)
from tactical.sqlalchemy import (
    SqlAlchemyUnitOfWork,
    aggregates_table,
    create_schema,
    outbox_table,
)
from tactical.testing import Counter, Tag

pytestmark = pytest.mark.filterwarnings("error")


def save(engine: sa.Engine, counter: Counter) -> Counter:
    with SqlAlchemyUnitOfWork(engine) as uow:
        uow.repository(Counter).add(counter)
        uow.commit()
    return counter


def increment(engine: sa.Engine, counter_id: UUID) -> None:
    with SqlAlchemyUnitOfWork(engine) as uow:
        uow.repository(Counter).require(counter_id).tick()
        uow.commit()


def stored_count(engine: sa.Engine, counter_id: UUID) -> tuple[int, int]:
    with SqlAlchemyUnitOfWork(engine) as uow:
        counter = uow.repository(Counter).require(counter_id)
        return counter.count, counter.version


class TestOutbox:
    def test_events_are_written_to_the_outbox_in_recorded_order(self, engine: sa.Engine) -> None:
        """Each committed event is an outbox row: increasing position, type, version, aggregate, payload."""
        a, b = save(engine, Counter(uuid4(), "a")), save(engine, Counter(uuid4(), "b"))
        # Two aggregates on purpose: the order of their events across aggregates is the rule.
        with SqlAlchemyUnitOfWork(engine, allow_multiple_aggregates=True) as uow:
            first, second = (
                uow.repository(Counter).require(a.id),
                uow.repository(Counter).require(b.id),
            )
            first.tick()
            second.rename("b2")
            first.tick()
            recorded = [*first.pending_events, *second.pending_events]
            uow.commit()
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(outbox_table).order_by(outbox_table.c.position)
            ).all()
        assert [r.event_id for r in rows] == [
            recorded[0].event_id,
            recorded[2].event_id,
            recorded[1].event_id,
        ]
        assert [r.position for r in rows] == sorted(r.position for r in rows)
        assert len({r.position for r in rows}) == 3
        assert [r.event_type for r in rows] == [
            "tactical.testing._contract.CounterTicked",
            "tactical.testing._contract.CounterRenamed",
            "tactical.testing._contract.CounterTicked",
        ]
        assert [(r.aggregate_id, r.aggregate_version) for r in rows] == [
            (str(a.id), 2),
            (str(b.id), 2),
            (str(a.id), 2),
        ]
        assert all(r.event_version == 1 and r.published_at is None for r in rows)
        assert rows[1].payload["name"] == "b2"
        assert rows[0].occurred_at == recorded[0].occurred_at
        assert rows[0].occurred_at.tzinfo is not None

    def test_outbox_payload_round_trips_through_the_codec(self, engine: sa.Engine) -> None:
        """An outbox row reads back as the very event that was recorded."""
        counter = save(engine, Counter(uuid4(), "c"))
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(Counter).require(counter.id).tick()
            (event,) = uow.repository(Counter).require(counter.id).pending_events
            uow.commit()
        with engine.connect() as connection:
            row = connection.execute(sa.select(outbox_table)).one()
        codec = JsonCodec()
        assert codec.event_from_record(row.event_type, row.event_version, row.payload) == event

    def test_a_failing_outbox_insert_leaves_the_aggregate_unchanged(
        self, engine: sa.Engine
    ) -> None:
        """If the outbox insert fails in the database, the aggregate's update is rolled back too."""
        counter = save(engine, Counter(uuid4(), "atomic"))
        bus, seen = EventBus(), list[object]()
        bus.subscribe(DomainEvent, seen.append)
        with SqlAlchemyUnitOfWork(engine, bus) as uow:
            loaded = uow.repository(Counter).require(counter.id)
            loaded.tick()
            (event,) = loaded.pending_events
            # A row that already holds this event_id makes the outbox insert violate the
            # unique constraint: a genuine database failure at the last write of the commit.
            uow.connection.execute(
                outbox_table.insert().values(
                    event_id=event.event_id,
                    event_type="planted",
                    event_version=1,
                    aggregate_type="planted",
                    aggregate_id="planted",
                    aggregate_version=1,
                    payload={},
                    occurred_at=event.occurred_at,
                )
            )
            with pytest.raises(sa.exc.IntegrityError):
                uow.commit()
        assert stored_count(engine, counter.id) == (0, 1)
        assert loaded.version == 1
        assert seen == []


class TestConcurrency:
    @pytest.mark.postgres
    def test_eight_threads_fifty_increments_each_lose_no_update(
        self, postgres_engine: sa.Engine
    ) -> None:
        """8 threads x 50 increments of one counter, with retry, end at exactly 400."""
        counter = save(postgres_engine, Counter(uuid4(), "hot"))
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                for _ in range(50):
                    retry_on_conflict(
                        lambda: increment(postgres_engine, counter.id),
                        attempts=1000,
                        base_delay=0.001,
                        max_delay=0.02,
                    )
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert stored_count(postgres_engine, counter.id) == (400, 401)
        with postgres_engine.connect() as connection:
            outbox = connection.execute(
                sa.select(sa.func.count()).select_from(outbox_table)
            ).scalar_one()
        assert outbox == 400

    def test_sqlite_writers_in_threads_succeed_or_conflict_never_lock_errors(
        self, sqlite_engine: sa.Engine
    ) -> None:
        """Concurrent SQLite writers get ConcurrencyError (retried here), never 'database is locked'."""
        counter = save(sqlite_engine, Counter(uuid4(), "sqlite"))
        conflicts: list[ConcurrencyError] = []
        errors: list[BaseException] = []

        def once() -> None:
            try:
                increment(sqlite_engine, counter.id)
            except ConcurrencyError as error:
                conflicts.append(error)
                raise

        def worker() -> None:
            try:
                for _ in range(25):
                    retry_on_conflict(once, attempts=1000, base_delay=0.001, max_delay=0.02)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert stored_count(sqlite_engine, counter.id) == (100, 101)
        assert all("locked" not in str(c) for c in conflicts)

    @pytest.mark.slow
    def test_sqlite_writers_in_processes_lose_no_update(self, tmp_path: Path) -> None:
        """Three processes increment one counter in a SQLite file 20 times each: exactly 60."""
        url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
        engine = sa.create_engine(url)
        create_schema(engine)
        counter = save(engine, Counter(uuid4(), "processes"))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", _INCREMENT_IN_PROCESS, url, str(counter.id), "20"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        outputs = [worker.communicate(timeout=120) for worker in workers]
        assert [
            (w.returncode, out.strip()) for w, (out, _) in zip(workers, outputs, strict=True)
        ] == [(0, "20")] * 3, [err for _, err in outputs]
        assert stored_count(engine, counter.id) == (60, 61)
        engine.dispose()


_INCREMENT_IN_PROCESS = """
import sys
from uuid import UUID
import sqlalchemy as sa
from tactical import retry_on_conflict
from tactical.sqlalchemy import SqlAlchemyUnitOfWork
from tactical.testing import Counter

url, counter_id, times = sys.argv[1], UUID(sys.argv[2]), int(sys.argv[3])
engine = sa.create_engine(url)

def increment():
    with SqlAlchemyUnitOfWork(engine) as uow:
        uow.repository(Counter).require(counter_id).tick()
        uow.commit()

for _ in range(times):
    retry_on_conflict(increment, attempts=1000, base_delay=0.001, max_delay=0.02)
print(times)
"""


class TestFailedCommit:
    def test_commit_that_fails_at_commit_leaves_no_transaction_behind(
        self, engine: sa.Engine
    ) -> None:
        """A COMMIT that fails rolls its transaction back: later units of work neither fail nor store it."""
        failing = [True]

        def refuse_commit(connection: sa.Connection) -> None:
            if failing:
                failing.clear()
                raise OSError("disk I/O error at commit (injected)")

        lost = Counter(uuid4(), "lost")
        sa.event.listen(engine, "commit", refuse_commit)
        try:
            with pytest.raises(OSError, match="injected"):
                save(engine, lost)
            kept = [save(engine, Counter(uuid4(), f"kept {i}")) for i in range(3)]
        finally:
            sa.event.remove(engine, "commit", refuse_commit)
        with SqlAlchemyUnitOfWork(engine) as uow:
            counters = uow.repository(Counter)
            assert counters.get(lost.id) is None
            assert [counters.require(c.id).name for c in kept] == ["kept 0", "kept 1", "kept 2"]


class Preferences(AggregateRoot[UUID]):
    """An aggregate with a free-form JSON part."""

    options: dict[str, Any]


class TestStoredRows:
    def test_a_non_json_value_in_an_any_field_is_refused_naming_it(
        self, sqlite_engine: sa.Engine
    ) -> None:
        """A Decimal in a `dict[str, Any]` is refused at commit with the field named; nothing is stored."""
        uow = SqlAlchemyUnitOfWork(sqlite_engine)
        with uow:
            uow.repository(Preferences).add(Preferences(uuid4(), {"limit": Decimal("9.99")}))
            with pytest.raises(
                TypeError,
                match=r"cannot store Preferences: options\['limit'\]: expected a JSON value .*Decimal\('9\.99'\)",
            ):
                uow.commit()
        with sqlite_engine.connect() as connection:
            assert (
                connection.execute(
                    sa.select(sa.func.count()).select_from(aggregates_table)
                ).scalar_one()
                == 0
            )

    def test_the_document_row_holds_type_id_version_and_state(self, engine: sa.Engine) -> None:
        """The default storage is one JSON row per aggregate; Decimal-free state stays readable."""
        counter = save(engine, Counter(uuid4(), "doc", tag=Tag("t")))
        with engine.connect() as connection:
            row = connection.execute(sa.select(aggregates_table)).one()
        assert row.aggregate_type == "tactical.testing._contract.Counter"
        assert row.aggregate_id == str(counter.id)
        assert row.version == 1
        assert row.state == {
            "id": str(counter.id),
            "name": "doc",
            "count": 0,
            "tag": {"text": "t"},
            "tallies": [],
        }
        assert row.updated_at.tzinfo == UTC

    def test_a_malformed_row_is_reported_with_table_type_and_id(self, engine: sa.Engine) -> None:
        """A stored document that no longer fits the class raises a clear DeserializationError."""
        counter = save(engine, Counter(uuid4(), "broken"))
        with engine.begin() as connection:
            connection.execute(
                aggregates_table.update().values(state={"id": str(counter.id), "name": 5})
            )
        with SqlAlchemyUnitOfWork(engine) as uow, pytest.raises(DeserializationError) as raised:
            uow.repository(Counter).get(counter.id)
        message = str(raised.value)
        assert "tactical_aggregates" in message
        assert "tactical.testing._contract.Counter" in message
        assert str(counter.id) in message
        assert "name: expected a string, got 5" in message

    def test_an_unknown_event_type_in_the_outbox_is_reported(self) -> None:
        """Reading an outbox row of a type no code knows raises UnknownTypeError naming it."""
        with pytest.raises(UnknownTypeError, match=r"'gone\.Event'"):
            JsonCodec().event_from_record("gone.Event", 1, {})

    def test_the_connection_is_only_available_in_a_transaction(self, engine: sa.Engine) -> None:
        """uow.connection serves queries inside a block and refuses outside one."""
        uow = SqlAlchemyUnitOfWork(engine)
        with uow:
            assert uow.connection.execute(sa.select(sa.literal(1))).scalar_one() == 1
        with pytest.raises(RuntimeError, match="not in a transaction"):
            _ = uow.connection

    def test_two_mappers_for_one_type_are_refused(self, sqlite_engine: sa.Engine) -> None:
        """Each aggregate type has at most one relational mapper."""
        from tests.sqlalchemy.test_mapper import CounterMapper

        with pytest.raises(ValueError, match="two relational mappers for Counter"):
            SqlAlchemyUnitOfWork(sqlite_engine, mappers=[CounterMapper(), CounterMapper()])


class TestSqliteConfiguration:
    def test_file_databases_use_wal_foreign_keys_and_a_busy_timeout(
        self, sqlite_engine: sa.Engine
    ) -> None:
        """configure_engine() sets the pragmas a transactional SQLite needs."""
        with SqlAlchemyUnitOfWork(sqlite_engine) as uow:
            pragma = uow.connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA busy_timeout").scalar() == 10_000

    def test_create_schema_is_idempotent(self, sqlite_engine: sa.Engine) -> None:
        """Creating the schema twice changes nothing and raises nothing."""
        create_schema(sqlite_engine)
        create_schema(sqlite_engine)
        names = set(sa.inspect(sqlite_engine).get_table_names())
        assert {"tactical_aggregates", "tactical_outbox"} <= names

    @pytest.mark.postgres
    def test_postgres_stores_documents_as_jsonb(self, postgres_engine: sa.Engine) -> None:
        """On PostgreSQL the state and payload columns are JSONB."""
        columns = {
            c["name"]: c["type"]
            for c in sa.inspect(postgres_engine).get_columns("tactical_aggregates")
        }
        assert type(columns["state"]).__name__ == "JSONB"


class TestStableStoredNames:
    def test_an_aggregate_defined_in_main_is_refused_and_nothing_is_stored(
        self, engine: sa.Engine
    ) -> None:
        """Storing a __main__ class raises a TypeError saying what to do; no row lands."""
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(MainLedger).add(MainLedger(uuid4()))
            with pytest.raises(
                TypeError,
                match=r"MainLedger is defined in __main__.*move it to a module.*codec\.register",
            ):
                uow.commit()
        with engine.connect() as connection:
            assert connection.execute(sa.select(aggregates_table)).all() == []

    def test_an_event_defined_in_main_is_refused(self, engine: sa.Engine) -> None:
        """An event class of __main__ is refused too: its outbox row could never be read."""
        counter = Counter(uuid4(), "books a script's event")
        counter.record(MainEntryBooked(counter.id))
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(Counter).add(counter)
            with pytest.raises(TypeError, match=r"MainEntryBooked is defined in __main__"):
                uow.commit()
        with engine.connect() as connection:
            assert connection.execute(sa.select(outbox_table)).all() == []

    def test_registered_names_store_main_classes(self, engine: sa.Engine) -> None:
        """With names registered on the codec, __main__ classes are stored and read back."""
        codec = JsonCodec()
        codec.register(MainLedger, name="ledger.Ledger")
        codec.register(MainEntryBooked, name="ledger.EntryBooked")
        ledger = MainLedger(uuid4(), entries=3)
        ledger.record(MainEntryBooked(ledger.id))
        with SqlAlchemyUnitOfWork(engine, codec=codec) as uow:
            uow.repository(MainLedger).add(ledger)
            uow.commit()
        with SqlAlchemyUnitOfWork(engine, codec=codec) as uow:
            assert uow.repository(MainLedger).require(ledger.id).entries == 3
        with engine.connect() as connection:
            names = connection.execute(sa.select(outbox_table.c.event_type)).scalars().all()
        assert names == ["ledger.EntryBooked"]

    def test_registering_a_main_class_without_a_name_is_refused(self) -> None:
        """register() needs an explicit name for a __main__ class."""
        with pytest.raises(TypeError, match=r"MainLedger is defined in __main__"):
            JsonCodec().register(MainLedger)
