"""A thread keeps its unit of work's connection between blocks (tactical.sqlalchemy._kept):
SQLite files, and PostgreSQL over psycopg."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from tests.postgres import postgres_url

import sqlalchemy as sa
from sqlalchemy import event
from tactical import ConcurrencyError
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, _kept, create_schema
from tactical.testing import Counter


def _pool(engine: sa.Engine) -> sa.QueuePool:
    pool = engine.pool
    assert isinstance(pool, sa.QueuePool)
    return pool


def _in_thread(engine: sa.Engine, name: str) -> sa.Connection:
    """Commit a counter in a new thread; the connection its block used."""
    used: list[sa.Connection] = []

    def work() -> None:
        with SqlAlchemyUnitOfWork(engine) as uow:
            used.append(uow.connection)
            uow.repository(Counter).add(Counter(uuid4(), name))
            uow.commit()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    return used[0]


def _stored_names(engine: sa.Engine) -> list[str]:
    with SqlAlchemyUnitOfWork(engine) as uow:
        rows = uow.connection.exec_driver_sql(
            "SELECT json_extract(state, '$.name') FROM tactical_aggregates ORDER BY 1"
        )
        return [name for (name,) in rows]


class TestKeptConnections:
    def test_the_next_block_in_the_thread_takes_the_connection_the_last_one_left(
        self, sqlite_engine: sa.Engine
    ) -> None:
        """Units of work over one engine in one thread share a connection, one block at a time."""
        with SqlAlchemyUnitOfWork(sqlite_engine) as uow:
            first = uow.connection
            uow.repository(Counter).add(Counter(uuid4(), "first"))
            uow.commit()
        assert _pool(sqlite_engine).checkedout() == 1  # kept, outside any transaction
        assert not first.in_transaction()
        with SqlAlchemyUnitOfWork(sqlite_engine) as other:
            assert other.connection is first
            other.repository(Counter).add(Counter(uuid4(), "second"))
            other.commit()
        assert _stored_names(sqlite_engine) == ["first", "second"]

    def test_a_block_inside_another_takes_a_connection_of_its_own(
        self, sqlite_engine: sa.Engine
    ) -> None:
        """The kept connection is taken by one block at a time; another gets the pool's."""
        SqlAlchemyUnitOfWork(sqlite_engine).__enter__().__exit__(None, None, None)
        with SqlAlchemyUnitOfWork(sqlite_engine) as outer:
            with SqlAlchemyUnitOfWork(sqlite_engine) as inner:
                assert inner.connection is not outer.connection
                inner.repository(Counter).add(Counter(uuid4(), "inner"))
                inner.commit()
            outer.repository(Counter).add(Counter(uuid4(), "outer"))
            outer.commit()
        # One kept (the last to end), the other given back.
        assert _pool(sqlite_engine).checkedout() == 1
        assert _stored_names(sqlite_engine) == ["inner", "outer"]

    def test_another_thread_uses_its_own_and_closes_it_when_it_ends(
        self, sqlite_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A thread's kept connection goes back to the pool when the thread ends."""
        monkeypatch.setattr(_kept, "HOLD_SECONDS", 600.0)  # not given back meanwhile
        with SqlAlchemyUnitOfWork(sqlite_engine) as uow:
            mine = uow.connection
        theirs = _in_thread(sqlite_engine, "from a thread")
        assert theirs is not mine
        deadline = time.monotonic() + 10
        while not theirs.closed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert theirs.closed
        assert not mine.closed
        assert _pool(sqlite_engine).checkedout() == 1
        assert _stored_names(sqlite_engine) == ["from a thread"]

    def test_nothing_is_kept_when_the_pool_has_no_room_to_spare(self, tmp_path: Path) -> None:
        """With pool_size=1 the connection goes back: other code must be able to connect."""
        engine = sa.create_engine(
            f"sqlite:///{tmp_path / 'one.sqlite3'}", pool_size=1, max_overflow=0
        )
        create_schema(engine)
        try:
            with SqlAlchemyUnitOfWork(engine) as uow:
                uow.repository(Counter).add(Counter(uuid4(), "one"))
                uow.commit()
            assert _pool(engine).checkedout() == 0
            with engine.connect() as connection:  # would wait 30 s for a kept connection
                assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
        finally:
            engine.dispose()

    def test_a_disposed_engine_gets_a_new_connection_and_the_kept_one_is_closed(
        self, sqlite_engine: sa.Engine
    ) -> None:
        """After Engine.dispose() the kept connection (the old pool's) is not used again."""
        with SqlAlchemyUnitOfWork(sqlite_engine) as uow:
            kept = uow.connection
        driver = kept.connection.dbapi_connection
        assert isinstance(driver, sqlite3.Connection)
        sqlite_engine.dispose()
        with SqlAlchemyUnitOfWork(sqlite_engine) as uow:
            assert uow.connection is not kept
            uow.repository(Counter).add(Counter(uuid4(), "after dispose"))
            uow.commit()
        assert kept.closed
        # Its driver connection closed, not left open in the old pool.
        with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
            driver.execute("SELECT 1")
        assert _stored_names(sqlite_engine) == ["after dispose"]

    def test_another_engine_displaces_the_kept_connection(self, tmp_path: Path) -> None:
        """One connection a thread: using another engine gives the first one's back."""
        engines = [sa.create_engine(f"sqlite:///{tmp_path / f'{i}.sqlite3'}") for i in range(2)]
        try:
            for engine in engines:
                create_schema(engine)
                with SqlAlchemyUnitOfWork(engine) as uow:
                    uow.repository(Counter).add(Counter(uuid4(), str(engine.url)))
                    uow.commit()
            assert [_pool(e).checkedout() for e in engines] == [0, 1]
        finally:
            for engine in engines:
                engine.dispose()

    def test_connection_options_set_in_a_block_end_with_it(self, sqlite_engine: sa.Engine) -> None:
        """A connection given execution options in a block is not kept for the next one."""
        with SqlAlchemyUnitOfWork(sqlite_engine) as uow:
            changed = uow.connection.execution_options(logging_token="mine")
        assert changed.closed
        with SqlAlchemyUnitOfWork(sqlite_engine) as uow:
            assert "logging_token" not in uow.connection.get_execution_options()

    @pytest.mark.parametrize("url", ["sqlite://", "nullpool"])
    def test_in_memory_and_null_pool_engines_keep_nothing(self, url: str, tmp_path: Path) -> None:
        """Only a QueuePool's connections are kept: NullPool asked for none to outlive its use."""
        if url == "nullpool":
            engine = sa.create_engine(f"sqlite:///{tmp_path / 'n.sqlite3'}", poolclass=sa.NullPool)
        else:
            engine = sa.create_engine(url)
        create_schema(engine)
        try:
            with SqlAlchemyUnitOfWork(engine) as uow:
                connection = uow.connection
                uow.repository(Counter).add(Counter(uuid4(), "kept nowhere"))
                uow.commit()
            assert connection.closed
        finally:
            engine.dispose()


def _postgres(query: dict[str, str] | None = None, **options: Any) -> sa.Engine:
    """An engine of its own on the test database (its pool is the test's to watch)."""
    engine = sa.create_engine(postgres_url().update_query_dict(query or {}), **options)
    create_schema(engine)
    return engine


def _kept_after_a_load(engine: sa.Engine, counter_id: UUID) -> sa.Connection:
    """Load in a block, then take its connection (the kept one, once it has answered).

    Without a deadline: a guarded block's ``uow.connection`` gets listeners of its own, and
    such a connection is not kept.
    """
    with SqlAlchemyUnitOfWork(engine, database_timeout=None) as uow:
        uow.repository(Counter).require(counter_id)
        return uow.connection


def _saved(engine: sa.Engine, name: str) -> Counter:
    counter = Counter(uuid4(), name)
    with SqlAlchemyUnitOfWork(engine, database_timeout=None) as uow:
        uow.repository(Counter).add(counter)
        uow.commit()
    return counter


def _terminate_others(engine: sa.Engine) -> int:
    """End the backends of ``engine``'s application name but the caller's; how many."""
    others = "FROM pg_stat_activity WHERE application_name = %(name)s AND pid <> pg_backend_pid()"
    name = {"name": engine.url.query["application_name"]}
    with engine.connect() as other:
        ended = other.exec_driver_sql(
            "SELECT count(pg_terminate_backend(pid)) " + others, name
        ).scalar_one()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            other.rollback()  # pg_stat_activity is read once a transaction
            if other.exec_driver_sql("SELECT count(*) " + others, name).scalar_one() == 0:
                return int(ended)
            time.sleep(0.01)
    raise AssertionError("the backends are still there")


def _driver(connection: sa.Connection) -> Any:
    return connection.connection.dbapi_connection


@pytest.mark.postgres
class TestKeptPostgresConnections:
    def test_a_kept_connection_waits_in_autocommit_and_a_block_that_writes_turns_it_off(
        self, postgres_engine: sa.Engine
    ) -> None:
        """Between blocks: no transaction, driver autocommit; a failed commit still stores nothing."""
        first, second = _saved(postgres_engine, "first"), _saved(postgres_engine, "second")
        kept = _kept_after_a_load(postgres_engine, first.id)
        driver = _driver(kept)
        assert not kept.in_transaction()
        assert driver.autocommit is True
        assert _kept_after_a_load(postgres_engine, second.id) is kept
        with SqlAlchemyUnitOfWork(postgres_engine, allow_multiple_aggregates=True) as uow:
            loaded = [uow.repository(Counter).require(c.id) for c in (first, second)]
            with SqlAlchemyUnitOfWork(postgres_engine) as other:  # the pool's, not the kept one
                other.repository(Counter).require(second.id).tick()
                other.commit()
            for counter in loaded:
                counter.tick()
            with pytest.raises(ConcurrencyError):
                uow.commit()
        # The first UPDATE ran in the failed commit's transaction: rolled back with it.
        with SqlAlchemyUnitOfWork(postgres_engine) as uow:
            counts = [uow.repository(Counter).require(c.id).count for c in (first, second)]
        assert counts == [0, 1]

    def test_the_pool_gets_a_kept_connection_back_out_of_autocommit(
        self, postgres_engine: sa.Engine
    ) -> None:
        """Displaced by another engine's, the kept connection goes back as the pool gave it."""
        counter = _saved(postgres_engine, "kept")
        kept = _kept_after_a_load(postgres_engine, counter.id)
        driver = _driver(kept)
        other = _postgres()
        try:
            _kept_after_a_load(other, counter.id)
            assert kept.closed
            assert driver.autocommit is False
            assert not driver.closed  # back in the pool, for the next checkout
        finally:
            other.dispose()

    @pytest.mark.parametrize(
        ("first_step", "pre_ping"),
        [
            ("load", False),
            ("add and commit", False),
            ("load", True),
            ("add and commit", True),
            # Given back untried, the kept connection is the pool's to check (pre-ping).
            ("uow.connection", True),
        ],
    )
    @pytest.mark.parametrize("isolation_level", ["READ COMMITTED", "REPEATABLE READ"])
    def test_a_kept_connection_whose_backend_died_is_replaced_at_the_next_block(
        self, postgres_engine: sa.Engine, first_step: str, pre_ping: bool, isolation_level: str
    ) -> None:
        """The first round trip of a block on a dead kept connection goes to the pool's instead."""
        name = f"kept-{uuid4().hex[:8]}"
        engine = _postgres(
            isolation_level=isolation_level,
            pool_pre_ping=pre_ping,
            query={"application_name": name},
        )
        try:
            counter = _saved(engine, "survivor")
            with SqlAlchemyUnitOfWork(engine) as uow:  # the deadline's default
                uow.repository(Counter).require(counter.id)
            assert _pool(engine).checkedout() == 1
            assert _terminate_others(engine) == 1  # the kept connection's backend
            added = Counter(uuid4(), "added")
            with SqlAlchemyUnitOfWork(engine) as uow:
                if first_step == "load":
                    assert uow.repository(Counter).require(counter.id).name == "survivor"
                elif first_step == "add and commit":
                    uow.repository(Counter).add(added)
                    uow.commit()
                else:
                    assert uow.connection.exec_driver_sql("SELECT 1").scalar_one() == 1
            with SqlAlchemyUnitOfWork(engine) as uow:
                stored = uow.repository(Counter).get(added.id)
            assert (stored is not None) is (first_step == "add and commit")
        finally:
            engine.dispose()

    def test_a_connection_taken_from_the_pool_long_ago_goes_back_through_it(
        self, postgres_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Past HOLD_SECONDS the next block checks out again (pool_recycle, pre-ping apply)."""
        counter = _saved(postgres_engine, "held")
        kept = _kept_after_a_load(postgres_engine, counter.id)
        assert _kept_after_a_load(postgres_engine, counter.id) is kept
        monkeypatch.setattr(_kept, "HOLD_SECONDS", 0.0)
        assert _kept_after_a_load(postgres_engine, counter.id) is not kept
        assert kept.closed

    def test_nothing_is_kept_for_a_pool_with_checkout_listeners(self) -> None:
        """Code listening to checkouts expects one per block."""
        engine = _postgres()
        checkouts: list[object] = []
        event.listen(engine, "checkout", lambda *args: checkouts.append(args))
        try:
            counter = _saved(engine, "listened")
            kept = _kept_after_a_load(engine, counter.id)
            assert kept.closed
            assert _pool(engine).checkedout() == 0
            assert len(checkouts) == 2
        finally:
            engine.dispose()

    def test_nothing_is_kept_when_the_pool_has_no_room_to_spare(self) -> None:
        """With pool_size=1 the connection goes back, out of autocommit."""
        engine = _postgres(pool_size=1, max_overflow=0)
        try:
            counter = _saved(engine, "one")
            kept = _kept_after_a_load(engine, counter.id)
            assert kept.closed
            assert _pool(engine).checkedout() == 0
            with engine.connect() as connection:  # would wait 30 s for a kept connection
                assert _driver(connection).autocommit is False
        finally:
            engine.dispose()

    def test_a_thread_that_runs_no_other_block_leaves_no_one_waiting_for_its_connection(
        self,
    ) -> None:
        """Its kept connection goes back to the pool HOLD_SECONDS after its checkout anyway.

        Not kept until the thread's next block, nor until it ends: others would wait for the
        pool (here pool_timeout's TimeoutError) while the connection sat unused.
        """
        engine = _postgres(pool_size=2, max_overflow=0, pool_timeout=10)
        worked, done = threading.Event(), threading.Event()

        def work() -> None:  # a worker thread that handled one request and now waits
            _saved(engine, "once")
            worked.set()
            done.wait(30)

        thread = threading.Thread(target=work)
        thread.start()
        try:
            assert worked.wait(30)
            # Both of the pool's connections: one is the idle thread's until it goes back.
            with engine.connect() as first, engine.connect() as second:
                assert first.exec_driver_sql("SELECT 1").scalar_one() == 1
                assert second.exec_driver_sql("SELECT 2").scalar_one() == 2
        finally:
            done.set()
            thread.join(30)
            engine.dispose()
