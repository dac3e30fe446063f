"""database_timeout bounds every round trip of a block: the unit of work's own, a mapper's, the caller's.

The unit of work arms the deadline around the statements it issues itself; the statements it
does not issue (a relational mapper's, a query on ``uow.connection``) are bounded through the
events of the connections that need them (see test_listener_race.py). A proxy in front of
PostgreSQL goes silent (the socket stays open, nothing comes back); the bound below only says
"eventually".
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from uuid import uuid4

import pytest
from tests.outbox.brokers import TcpProxy, postgres_proxy
from tests.postgres import postgres_url
from tests.sqlalchemy.counter_mapping import CounterMapper, mapped

import sqlalchemy as sa
from sqlalchemy import exc
from tactical.sqlalchemy import SqlAlchemyUnitOfWork
from tactical.testing import Counter

__all__ = ["postgres_proxy"]

LIVENESS = 15.0
"""Seconds within which a cut round trip must have failed: a liveness bound, not a speed claim."""


def engine_via(proxy: TcpProxy) -> sa.Engine:
    url = postgres_url().set(host="127.0.0.1", port=proxy.port)
    return sa.create_engine(url, connect_args={"connect_timeout": 2})


def fails_within_liveness(block: Callable[[], None]) -> BaseException:
    """Run ``block`` in a thread; the error it raised, which it must raise before the bound."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            block()
        except BaseException as error:
            raised.append(error)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(LIVENESS)
    assert not worker.is_alive(), "the round trip hung on the silent connection"
    (error,) = raised
    return error


@pytest.mark.postgres
class TestDeadlineOnStatementsTheUnitOfWorkDoesNotIssue:
    def test_a_query_on_uow_connection_meeting_silence_is_cut(
        self, postgres_proxy: TcpProxy
    ) -> None:
        """A read-model query through uow.connection on a silent database fails; the next block reconnects."""
        engine = engine_via(postgres_proxy)
        uow = SqlAlchemyUnitOfWork(engine, database_timeout=0.5)

        def query_on_a_silent_database() -> None:
            with uow:
                assert postgres_proxy.silence() >= 1
                uow.connection.exec_driver_sql("SELECT 1").all()

        assert isinstance(fails_within_liveness(query_on_a_silent_database), exc.OperationalError)
        with uow:
            assert uow.connection.exec_driver_sql("SELECT 2").scalar_one() == 2
        engine.dispose()

    def test_a_mapper_s_statement_meeting_silence_is_cut_and_nothing_is_stored(
        self, postgres_proxy: TcpProxy, postgres_engine: sa.Engine
    ) -> None:
        """A relational mapper's insert on a silent database fails the commit; no row is stored."""
        mapped.create_all(postgres_engine)
        with postgres_engine.begin() as connection:
            for table in reversed(mapped.sorted_tables):
                connection.execute(table.delete())
        engine = engine_via(postgres_proxy)
        uow = SqlAlchemyUnitOfWork(engine, mappers=[CounterMapper()], database_timeout=0.5)
        counter = Counter(uuid4(), "mapped")

        def commit_on_a_silent_database() -> None:
            with uow:
                uow.repository(Counter).add(counter)
                assert postgres_proxy.silence() >= 1
                uow.commit()

        error = fails_within_liveness(commit_on_a_silent_database)
        assert isinstance(error, exc.OperationalError)
        assert any("database_timeout (0.5s)" in note for note in error.__notes__)
        with SqlAlchemyUnitOfWork(postgres_engine, mappers=[CounterMapper()]) as direct:
            assert direct.repository(Counter).get(counter.id) is None
        engine.dispose()


@pytest.mark.postgres
def test_a_child_made_by_fork_cuts_round_trips_too(postgres_proxy: TcpProxy) -> None:
    """Threads do not survive fork(): the child starts a deadline thread of its own.

    Its parent's had started (a guarded block ran), and the child's silent round trip must
    still be cut (a pre-forking server's workers, multiprocessing's fork).
    """
    engine = engine_via(postgres_proxy)
    with SqlAlchemyUnitOfWork(engine, database_timeout=0.5) as uow:
        uow.connection.exec_driver_sql("SELECT 1")  # the parent's deadline thread runs
    connected_r, connected_w = os.pipe()
    silenced_r, silenced_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 2
        try:
            engine.dispose(close=False)  # the parent's connections are not the child's
            child = SqlAlchemyUnitOfWork(engine, database_timeout=0.5)
            with child:
                child.connection.exec_driver_sql("SELECT 1")
            os.write(connected_w, b"1")
            os.read(silenced_r, 1)
            try:
                with child:
                    child.connection.exec_driver_sql("SELECT 2").all()
                code = 1
            except exc.OperationalError:
                code = 0
        finally:
            os._exit(code)
    ended = (0, 0)
    try:
        assert os.read(connected_r, 1) == b"1"
        assert postgres_proxy.silence() >= 1
        os.write(silenced_w, b"1")
        deadline = time.monotonic() + LIVENESS
        while (ended := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if ended[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for fd in (connected_r, connected_w, silenced_r, silenced_w):
            os.close(fd)
        engine.dispose()
    assert ended[0] == pid, "the child's round trip hung on the silent connection"
    assert os.waitstatus_to_exitcode(ended[1]) == 0
