"""SQLite: a thread keeps its unit of work's connection between blocks (tactical.sqlalchemy._kept)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from uuid import uuid4

import pytest

import sqlalchemy as sa
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, create_schema
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
        self, sqlite_engine: sa.Engine
    ) -> None:
        """A thread's kept connection goes back to the pool when the thread ends."""
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
