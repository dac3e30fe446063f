"""When a block's database transaction begins, and what stays inside it."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID, uuid4

import pytest
from tests.postgres import postgres_url

import sqlalchemy as sa
from tactical import ConcurrencyError
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, aggregates_table
from tactical.testing import Counter

_scratch = sa.MetaData()
notes = sa.Table("transaction_start_notes", _scratch, sa.Column("text", sa.String(50)))


@pytest.fixture
def notes_engine(engine: sa.Engine) -> sa.Engine:
    """``engine`` with an empty table for rows the user writes through ``uow.connection``."""
    _scratch.create_all(engine)
    with engine.begin() as connection:
        connection.execute(notes.delete())
    return engine


@pytest.fixture
def named_engine(postgres_engine: sa.Engine) -> Iterator[tuple[sa.Engine, str]]:
    """A PostgreSQL engine of one pooled connection whose sessions carry a unique name."""
    name = f"tactical-begin-{uuid4().hex[:8]}"
    engine = sa.create_engine(
        postgres_url(), connect_args={"application_name": name}, pool_size=1, max_overflow=0
    )
    yield engine, name
    engine.dispose()


def save(engine: sa.Engine) -> UUID:
    counter_id = uuid4()
    with SqlAlchemyUnitOfWork(engine) as uow:
        uow.repository(Counter).add(Counter(counter_id, "c"))
        uow.commit()
    return counter_id


def session_states(name: str) -> list[str]:
    """The states of the sessions called ``name`` (from another connection)."""
    engine = sa.create_engine(postgres_url(), poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            return list(
                connection.execute(
                    sa.text("SELECT state FROM pg_stat_activity WHERE application_name = :name"),
                    {"name": name},
                ).scalars()
            )
    finally:
        engine.dispose()


def stored_notes(engine: sa.Engine) -> list[str | None]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(notes.c.text)).scalars())


class TestReadsBeforeTheFirstWrite:
    @pytest.mark.postgres
    def test_a_load_opens_no_transaction_on_postgresql(
        self, named_engine: tuple[sa.Engine, str]
    ) -> None:
        """At READ COMMITTED a load runs alone: the session is idle, not idle in a transaction."""
        engine, name = named_engine
        counter_id = save(engine)
        with SqlAlchemyUnitOfWork(engine) as uow:
            assert uow.repository(Counter).require(counter_id).version == 1
            assert session_states(name) == ["idle"]

    @pytest.mark.postgres
    def test_a_stricter_isolation_level_keeps_one_transaction_for_the_block(
        self, postgres_engine: sa.Engine
    ) -> None:
        """REPEATABLE READ on the engine: the block's loads share its snapshot, begun at the start."""
        name = f"tactical-rr-{uuid4().hex[:8]}"
        engine = sa.create_engine(
            postgres_url(),
            connect_args={"application_name": name},
            isolation_level="REPEATABLE READ",
        )
        try:
            counter_id = save(engine)
            with SqlAlchemyUnitOfWork(engine) as uow:
                uow.repository(Counter).require(counter_id)
                assert session_states(name) == ["idle in transaction"]
                with SqlAlchemyUnitOfWork(postgres_engine) as other:
                    other.repository(Counter).require(counter_id).tick()
                    other.commit()
                version = uow.connection.execute(
                    sa.select(aggregates_table.c.version).where(
                        aggregates_table.c.aggregate_id == str(counter_id)
                    )
                ).scalar_one()
            assert version == 1  # the snapshot of the block's first load
        finally:
            engine.dispose()

    @pytest.mark.postgres
    def test_a_connection_back_in_the_pool_is_not_left_in_autocommit(
        self, named_engine: tuple[sa.Engine, str]
    ) -> None:
        """After a block that only read, the pool's connection still rolls a transaction back."""
        engine, _ = named_engine
        counter_id = save(engine)
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(Counter).require(counter_id)
        _scratch.create_all(engine)
        with engine.connect() as connection:  # the pool's only connection, the block's
            connection.execute(notes.insert().values(text="rolled back"))
            connection.rollback()
        assert "rolled back" not in stored_notes(engine)

    def test_a_row_written_through_the_connection_commits_with_the_aggregate(
        self, notes_engine: sa.Engine
    ) -> None:
        """A load after a write through uow.connection runs in its transaction; one commit stores both."""
        counter_id = save(notes_engine)
        with SqlAlchemyUnitOfWork(notes_engine) as uow:
            uow.connection.execute(notes.insert().values(text="mine"))
            uow.repository(Counter).require(counter_id).tick()
            uow.commit()
        assert stored_notes(notes_engine) == ["mine"]

    @pytest.mark.postgres
    def test_a_conflict_discards_the_row_written_through_the_connection(
        self, postgres_engine: sa.Engine
    ) -> None:
        """Loaded before the connection was taken, a moved version rolls back the user's row too.

        (On SQLite a block's loads share a snapshot, and its write after another's commit
        is refused as tests/sqlalchemy/test_sqlite_write_phase.py shows.)
        """
        notes_engine = postgres_engine
        _scratch.create_all(notes_engine)
        with notes_engine.begin() as connection:
            connection.execute(notes.delete())
        counter_id = save(notes_engine)
        with SqlAlchemyUnitOfWork(notes_engine) as uow:
            counter = uow.repository(Counter).require(counter_id)
            with SqlAlchemyUnitOfWork(notes_engine) as other:
                other.repository(Counter).require(counter_id).tick()
                other.commit()
            uow.connection.execute(notes.insert().values(text="mine"))
            counter.tick()
            with pytest.raises(ConcurrencyError, match=f"Counter {counter_id} was changed"):
                uow.commit()
        assert stored_notes(notes_engine) == []

    def test_taking_the_connection_begins_the_transaction(self, notes_engine: sa.Engine) -> None:
        """uow.connection is in the block's transaction as soon as it is taken."""
        with SqlAlchemyUnitOfWork(notes_engine) as uow:
            assert uow.connection.in_transaction()
