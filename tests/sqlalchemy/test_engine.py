"""Engine preparation, the UTC datetime column, and errors that are not conflicts."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import create_async_engine
from tests.conftest import require_server
from tests.postgres import postgres_url
from tests.sqlalchemy.test_mapper import CounterMapper, counters

import sqlalchemy as sa
from sqlalchemy import exc
from tactical import ConcurrencyError, EventBus, InMemoryStore, JsonCodec
from tactical.outbox import EventBusPublisher, OutboxRelay, TimerWorker, purge_inbox
from tactical.projections import Projection, ProjectionRunner, purge_outbox
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, UtcDateTime, configure_engine, create_schema
from tactical.testing import Counter


class TestConfigureEngine:
    def test_in_memory_sqlite_keeps_its_journal_and_gets_foreign_keys(self) -> None:
        """An in-memory database cannot use WAL; it still gets foreign keys and a busy timeout."""
        engine = configure_engine(sa.create_engine("sqlite://"))
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "memory"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 10_000
        engine.dispose()

    @pytest.mark.parametrize(
        "prepare", [configure_engine, create_schema, SqlAlchemyUnitOfWork], ids=lambda f: f.__name__
    )
    def test_a_url_instead_of_an_engine_is_refused_with_the_fix(self, prepare: object) -> None:
        """A URL string is refused at once, saying to make an engine of it."""
        assert callable(prepare)
        with pytest.raises(
            TypeError,
            match=r"expected a SQLAlchemy Engine, got 'sqlite:///app.db': "
            r"make one with sqlalchemy.create_engine\('sqlite:///app.db'\)",
        ):
            prepare("sqlite:///app.db")

    def test_a_connection_instead_of_an_engine_is_refused(self) -> None:
        """A connection is not an engine: the error says what was given."""
        engine = sa.create_engine("sqlite://")
        with engine.connect() as connection, pytest.raises(TypeError, match="got <sqlalchemy"):
            SqlAlchemyUnitOfWork(connection)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        engine.dispose()

    def test_a_bus_that_is_not_an_event_bus_is_refused(self, tmp_path: Path) -> None:
        """Something else as the bus is refused when the unit of work is made, not at commit."""
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'bus.db'}")
        with pytest.raises(TypeError, match="bus must be an EventBus or None, got InMemoryStore"):
            SqlAlchemyUnitOfWork(engine, InMemoryStore())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        engine.dispose()

    def test_file_sqlite_uses_wal(self, tmp_path: Path) -> None:
        """A file database is switched to WAL with synchronous=NORMAL."""
        engine = configure_engine(sa.create_engine(f"sqlite:///{tmp_path / 'wal.db'}"))
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1
        engine.dispose()


_WEST = timezone(timedelta(hours=-9, minutes=-30))


class TestUtcDateTime:
    def test_null_aware_and_naive_values(self, tmp_path: Path) -> None:
        """NULL stays NULL, aware values come back in UTC, naive values are refused."""
        metadata = sa.MetaData()
        table = sa.Table(
            "stamps",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("at", UtcDateTime, nullable=True),
        )
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'stamps.db'}")
        metadata.create_all(engine)
        moment = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
        with engine.begin() as connection:
            connection.execute(table.insert(), [{"id": 1, "at": None}, {"id": 2, "at": moment}])
        with engine.connect() as connection:
            rows = {r.id: r.at for r in connection.execute(sa.select(table.c.id, table.c.at))}
        assert rows == {1: None, 2: moment}
        assert rows[2] is not None
        assert rows[2].tzinfo is UTC
        with pytest.raises(exc.StatementError, match="naive datetime"), engine.begin() as c:
            c.execute(table.insert(), {"id": 3, "at": datetime(2026, 3, 1)})
        engine.dispose()

    @given(
        moment=st.datetimes(
            min_value=datetime(1, 1, 2),
            max_value=datetime(9999, 12, 30),
            timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), _WEST]),
        )
    )
    def test_sqlite_binds_what_the_two_steps_of_sqlalchemy_bind(self, moment: datetime) -> None:
        """SQLite's one-step processor writes the text of process_bind_param + DATETIME's."""
        dialect = sa.create_engine("sqlite://").dialect
        fused = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
        sqlite_datetime = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
        assert fused is not None
        assert sqlite_datetime is not None
        # The one step (not the two, which the check made once per dialect falls back to).
        assert getattr(fused, "__qualname__", "").startswith("UtcDateTime.")
        assert fused(moment) == sqlite_datetime(UtcDateTime().process_bind_param(moment, dialect))

    def test_sqlite_refuses_naive_datetimes_and_binds_subclasses_in_two_steps(self) -> None:
        """The one-step processor keeps the refusal, and leaves other types to the two steps."""
        dialect = sa.create_engine("sqlite://").dialect
        fused = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
        assert fused is not None
        with pytest.raises(ValueError, match="naive datetime 2026-03-01T00:00:00"):
            fused(datetime(2026, 3, 1))

        class Stamp(datetime):
            def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
                return "not what SQLite stores"

        stamp = Stamp(2026, 3, 1, 12, 30, tzinfo=UTC)
        assert (fused(None), fused(stamp)) == (None, "2026-03-01 12:30:00.000000")

    def test_a_subclass_s_own_process_bind_param_is_called_on_sqlite(self) -> None:
        """The one step is UtcDateTime's own: a subclass that binds otherwise is obeyed."""

        class Truncated(UtcDateTime):
            cache_ok = True

            def process_bind_param(
                self, value: datetime | None, dialect: sa.Dialect
            ) -> datetime | None:
                stored = super().process_bind_param(value, dialect)
                return None if stored is None else stored.replace(microsecond=0)

        dialect = sa.create_engine("sqlite://").dialect
        process = Truncated().dialect_impl(dialect).bind_processor(dialect)
        assert process is not None
        moment = datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC)
        assert process(moment) == "2026-03-01 12:30:05.000000"


class TestErrorsThatAreNotConflicts:
    def test_a_missing_schema_is_the_database_s_error_not_a_conflict(self, tmp_path: Path) -> None:
        """Reading before create_schema() raises the driver's error, never ConcurrencyError."""
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        uow = SqlAlchemyUnitOfWork(engine)
        with uow, pytest.raises(exc.OperationalError, match="no such table") as raised:
            uow.repository(Counter).get(uuid4())
        assert not isinstance(raised.value, ConcurrencyError)
        engine.dispose()

    def test_overlapping_units_of_work_on_in_memory_sqlite_are_refused_clearly(self) -> None:
        """In-memory SQLite is one connection: a second overlapping unit of work is told why."""
        engine = sa.create_engine("sqlite://")
        create_schema(engine)
        first, second = SqlAlchemyUnitOfWork(engine), SqlAlchemyUnitOfWork(engine)
        counter = Counter(uuid4(), "shared")
        with first:
            first.repository(Counter).add(counter)
            with pytest.raises(RuntimeError, match=r"use a file database \('sqlite:///path'\)"):
                second.__enter__()
            # The refused unit of work left the first one's transaction as it was.
            dbapi_connection = first.connection.connection.dbapi_connection
            assert getattr(dbapi_connection, "in_transaction", False) is True
            first.commit()
        with second:  # once the first one's block ended, the second can begin
            assert second.repository(Counter).require(counter.id).name == "shared"
        engine.dispose()

    def test_a_missing_schema_says_how_to_create_it_on_read_and_write(self, tmp_path: Path) -> None:
        """Before create_schema(), the driver's error carries a note naming create_schema."""
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        uow = SqlAlchemyUnitOfWork(engine)
        with uow, pytest.raises(exc.OperationalError) as read:
            uow.repository(Counter).get(uuid4())
        with uow:
            uow.repository(Counter).add(Counter(uuid4(), "new"))
            with pytest.raises(exc.OperationalError) as write:
                uow.commit()
        engine.dispose()
        for raised in (read, write):
            assert any(
                "tactical.sqlalchemy.create_schema(engine)" in note
                for note in getattr(raised.value, "__notes__", [])
            )

    @pytest.mark.postgres
    def test_a_missing_schema_on_postgresql_says_how_to_create_it(self) -> None:
        """PostgreSQL's "relation does not exist" gets the same note."""
        require_server("PostgreSQL", 5432)
        setup = sa.create_engine(postgres_url())
        with setup.begin() as connection:
            connection.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS tactical_no_tables")
        setup.dispose()
        engine = sa.create_engine(
            postgres_url(), connect_args={"options": "-csearch_path=tactical_no_tables"}
        )
        try:
            uow = SqlAlchemyUnitOfWork(engine)
            with uow, pytest.raises(exc.ProgrammingError, match="does not exist") as raised:
                uow.repository(Counter).get(uuid4())
        finally:
            engine.dispose()
        assert any("create_schema(engine)" in n for n in getattr(raised.value, "__notes__", []))

    def test_a_missing_table_of_a_mapper_gets_no_schema_note(
        self, sqlite_engine: sa.Engine
    ) -> None:
        """The note is for tactical's tables: a user's mapped table missing gets none."""
        uow = SqlAlchemyUnitOfWork(sqlite_engine, mappers=[CounterMapper()])
        with (
            uow,
            pytest.raises(exc.OperationalError, match=f"no such table: {counters.name}") as raised,
        ):
            uow.repository(Counter).get(uuid4())
        assert getattr(raised.value, "__notes__", []) == []


def _relay(engine: sa.Engine) -> OutboxRelay:
    return OutboxRelay(engine, EventBusPublisher(EventBus(), JsonCodec()))


def _projection_runner(engine: sa.Engine) -> ProjectionRunner:
    return ProjectionRunner(engine, [Projection("view")])


class TestAsyncEnginesWhereAnEngineIsTaken:
    @pytest.mark.parametrize(
        ("prepare", "instead"),
        [
            (create_schema, r"create the tables in `async with engine\.begin\(\) as connection:`"),
            (_relay, "use AsyncOutboxRelay for it, or "),
            (TimerWorker, "use AsyncTimerWorker for it, or "),
            (_projection_runner, "use AsyncProjectionRunner for it, or "),
            (purge_inbox, r"use AsyncInboxConsumer\.purge_inbox, or "),
            (purge_outbox, ""),
        ],
        ids=["create_schema", "relay", "timer", "projections", "purge_inbox", "purge_outbox"],
    )
    def test_an_async_engine_is_refused_naming_what_takes_one(
        self, prepare: Callable[[sa.Engine], object], instead: str, tmp_path: Path
    ) -> None:
        """Not a failure deep inside SQLAlchemy: the error names the async twin, if any."""
        url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
        engine = create_async_engine(url)
        with pytest.raises(
            TypeError,
            match=rf"^expected a SQLAlchemy Engine, got an AsyncEngine \({re.escape(url)}\): "
            rf"{instead}.*make an Engine with sqlalchemy\.create_engine",
        ):
            prepare(engine)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


class TestSupportedDatabases:
    def test_an_engine_of_another_database_is_refused_when_the_unit_of_work_is_made(self) -> None:
        """A MySQL engine gets a ValueError naming the databases the unit of work runs on."""
        engine = sa.create_engine("mysql+mysqldb://user@host/db", module=sqlite3)
        with pytest.raises(ValueError, match="runs on SQLite and PostgreSQL, not mysql"):
            SqlAlchemyUnitOfWork(engine)

    @pytest.mark.parametrize(
        "prepare",
        [
            configure_engine,
            create_schema,
            _relay,
            TimerWorker,
            _projection_runner,
            purge_outbox,
        ],
        ids=["configure_engine", "create_schema", "relay", "timer", "projections", "purge"],
    )
    def test_another_database_is_refused_before_any_statement(
        self, prepare: Callable[[sa.Engine], object]
    ) -> None:
        """MariaDB, say: refused at once with what to do, not with a failing CREATE TABLE."""
        engine = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/app", module=sqlite3)
        with pytest.raises(
            ValueError,
            match=r"tactical runs on SQLite and PostgreSQL, not mysql "
            r"\(mysql\+pymysql://root@127.0.0.1:3306/app\): make the engine with a SQLite or "
            r"PostgreSQL URL",
        ):
            prepare(engine)
