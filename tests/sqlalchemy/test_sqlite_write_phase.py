"""SQLite's write phase: a stale read snapshot is no conflict; only a moved version is."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from tests.sqlalchemy.counter_mapping import CounterMapper, mapped
from tests.sqlalchemy.counter_orm import CounterOrmMapper, orm_tables

import sqlalchemy as sa
from tactical import ConcurrencyError
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, create_schema
from tactical.testing import Counter

pytestmark = pytest.mark.filterwarnings("error")

_scratch = sa.MetaData()
notes = sa.Table("scratch_notes", _scratch, sa.Column("text", sa.String(50), nullable=False))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """A SQLite file with tactical's tables and a scratch table for writes of the user's own."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'write-phase.sqlite3'}")
    create_schema(engine)
    _scratch.create_all(engine)
    yield engine
    engine.dispose()


def save(engine: sa.Engine, name: str) -> UUID:
    counter_id = uuid4()
    with SqlAlchemyUnitOfWork(engine) as uow:
        uow.repository(Counter).add(Counter(counter_id, name))
        uow.commit()
    return counter_id


def stored(engine: sa.Engine, counter_id: UUID) -> tuple[int, int]:
    with SqlAlchemyUnitOfWork(engine) as uow:
        counter = uow.repository(Counter).require(counter_id)
        result = counter.count, counter.version
        uow.rollback()
    return result


def stored_notes(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(notes.c.text)).scalars())


class WriteLock:
    """Another connection holding SQLite's write lock (an open write transaction) until released."""

    def __init__(self, engine: sa.Engine) -> None:
        self._connection = engine.connect()
        self._connection.begin()
        self._connection.execute(notes.insert().values(text="lock holder"))

    def release(self) -> None:
        self._connection.rollback()
        self._connection.close()


class TestStaleSnapshotInOneThread:
    def test_a_commit_after_an_unrelated_commit_succeeds(self, engine: sa.Engine) -> None:
        """uow1 loads a; uow2 changes b and commits; uow1 changes a and commits: both are stored."""
        a, b = save(engine, "a"), save(engine, "b")
        first, second = SqlAlchemyUnitOfWork(engine), SqlAlchemyUnitOfWork(engine)
        with first:
            counter_a = first.repository(Counter).require(a)
            with second:
                second.repository(Counter).require(b).tick()
                second.commit()
            counter_a.tick()
            first.commit()
        assert stored(engine, a) == (1, 2)
        assert stored(engine, b) == (1, 2)

    @pytest.mark.parametrize("kind", ["core", "orm"])
    def test_a_mapped_aggregate_commits_after_an_unrelated_commit_and_conflicts_on_its_own(
        self, engine: sa.Engine, kind: str
    ) -> None:
        """Core or ORM mapper: a stale snapshot restarts too; a moved version is still a conflict."""
        (mapped if kind == "core" else orm_tables).create_all(engine)

        def uow() -> SqlAlchemyUnitOfWork:
            mapper = CounterMapper() if kind == "core" else CounterOrmMapper()
            return SqlAlchemyUnitOfWork(engine, mappers=[mapper])

        a, b = uuid4(), uuid4()
        for counter_id in (a, b):
            with uow() as setup:
                setup.repository(Counter).add(Counter(counter_id, "m"))
                setup.commit()
        first, second, third = uow(), uow(), uow()
        with first, third:
            counter_a = first.repository(Counter).require(a)
            third.repository(Counter).require(b).tick()
            with second:
                second.repository(Counter).require(b).tick()
                second.commit()
            counter_a.tick()
            first.commit()
            with pytest.raises(ConcurrencyError, match=f"Counter {b} was changed"):
                third.commit()
        with uow() as check:
            counts = [check.repository(Counter).require(i).count for i in (a, b)]
            check.rollback()
        assert counts == [1, 1]

    def test_the_same_aggregate_changed_in_between_is_a_conflict_naming_it(
        self, engine: sa.Engine
    ) -> None:
        """Interleaved on one aggregate, the second commit raises ConcurrencyError with its id and versions."""
        a = save(engine, "a")
        first, second = SqlAlchemyUnitOfWork(engine), SqlAlchemyUnitOfWork(engine)
        with first, second:
            first.repository(Counter).require(a).tick()
            second.repository(Counter).require(a).tick()
            first.commit()
            with pytest.raises(ConcurrencyError, match=f"Counter {a} was changed") as raised:
                second.commit()
        assert (raised.value.expected_version, raised.value.actual_version) == (1, 2)
        assert raised.value.aggregate_id == a
        assert stored(engine, a) == (1, 2)

    def test_a_conflict_found_after_the_snapshot_restart_stores_nothing(
        self, engine: sa.Engine
    ) -> None:
        """A stale insert of an existing id is a conflict after the restart, and no row of it is written."""
        a = save(engine, "a")
        first, second = SqlAlchemyUnitOfWork(engine), SqlAlchemyUnitOfWork(engine)
        new_id = uuid4()
        with first:
            first.repository(Counter).require(a)
            with second:
                second.repository(Counter).add(Counter(new_id, "theirs"))
                second.commit()
            first.repository(Counter).add(Counter(new_id, "mine"))
            with pytest.raises(ConcurrencyError, match=f"Counter {new_id}"):
                first.commit()
        with SqlAlchemyUnitOfWork(engine) as uow:
            assert uow.repository(Counter).require(new_id).name == "theirs"
            uow.rollback()

    def test_a_write_of_the_user_s_own_keeps_the_transaction_and_is_stored_once(
        self, engine: sa.Engine
    ) -> None:
        """A row written through uow.connection before the commit is committed with it, exactly once."""
        a = save(engine, "a")
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.connection.execute(notes.insert().values(text="mine"))
            uow.repository(Counter).require(a).tick()
            uow.commit()
        assert stored_notes(engine) == ["mine"]
        assert stored(engine, a) == (1, 2)

    def test_a_unit_of_work_waiting_on_another_in_the_same_thread_times_out_clearly(
        self, engine: sa.Engine
    ) -> None:
        """One thread, uow1 holding the write lock: uow2's commit gives up after its busy timeout, no deadlock."""
        a, b = save(engine, "a"), save(engine, "b")
        first, second = SqlAlchemyUnitOfWork(engine), SqlAlchemyUnitOfWork(engine)
        with first:
            first.connection.execute(notes.insert().values(text="first"))
            with second:
                second.connection.exec_driver_sql("PRAGMA busy_timeout = 50")
                second.repository(Counter).require(b).tick()
                with pytest.raises(
                    ConcurrencyError, match=r"busy .* longer than its busy timeout \(50 ms\)"
                ) as raised:
                    second.commit()
            first.repository(Counter).require(a).tick()
            first.commit()
        assert "nothing was stored" in str(raised.value)
        assert stored(engine, a) == (1, 2)
        assert stored(engine, b) == (0, 1)
        assert stored_notes(engine) == ["first"]


class TestWritersInThreads:
    def test_writers_of_different_aggregates_never_conflict(self, engine: sa.Engine) -> None:
        """4 threads x 25 increments, each of its own counter, without retry: no ConcurrencyError."""
        ids = [save(engine, f"c{n}") for n in range(4)]
        errors: list[BaseException] = []

        def worker(counter_id: UUID) -> None:
            try:
                for _ in range(25):
                    with SqlAlchemyUnitOfWork(engine) as uow:
                        uow.repository(Counter).require(counter_id).tick()
                        uow.commit()
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(i,)) for i in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert [stored(engine, i) for i in ids] == [(25, 26)] * 4

    def test_a_writer_waits_for_a_long_write_lock_then_succeeds(self, engine: sa.Engine) -> None:
        """A commit while another connection holds the write lock waits for its release and then stores."""
        a = save(engine, "a")
        released = threading.Event()
        results: list[object] = []
        lock = WriteLock(engine)

        def commit_while_locked() -> None:
            try:
                with SqlAlchemyUnitOfWork(engine) as uow:
                    uow.repository(Counter).require(a).tick()
                    uow.commit()
                results.append(released.is_set())
            except BaseException as error:
                results.append(error)

        writer = threading.Thread(target=commit_while_locked)
        writer.start()
        time.sleep(0.3)  # let the writer reach its commit and wait on the lock
        released.set()
        lock.release()
        writer.join()
        assert results == [True]  # it returned only after the lock was released
        assert stored(engine, a) == (1, 2)

    def test_a_writer_gives_up_after_its_busy_timeout_naming_it(self, engine: sa.Engine) -> None:
        """A write lock held past the busy timeout: ConcurrencyError naming the timeout; nothing stored."""
        a = save(engine, "a")
        lock = WriteLock(engine)
        try:
            with SqlAlchemyUnitOfWork(engine) as uow:
                uow.connection.exec_driver_sql("PRAGMA busy_timeout = 100")
                uow.repository(Counter).require(a).tick()
                with pytest.raises(ConcurrencyError) as raised:
                    uow.commit()
        finally:
            lock.release()
        message = str(raised.value)
        assert "longer than its busy timeout (100 ms)" in message
        assert f"Counter {a}" in message
        assert stored(engine, a) == (0, 1)
