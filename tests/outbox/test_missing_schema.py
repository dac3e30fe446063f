"""Every worker meeting a database without tactical's tables says how to create them.

The unit of work's own note (tests/sqlalchemy/test_engine.py) is added to what the relays, the
timer workers, the projection runners, the inbox consumers and the purges raise too, and to
the warning a ``run`` loop logs, on SQLite and on PostgreSQL (a schema without the tables).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from tests.conftest import require_server
from tests.outbox.helpers import RecordingPublisher, commit_ticks, make_consumer
from tests.outbox.test_dead_peers import eventually
from tests.postgres import postgres_url

import sqlalchemy as sa
from sqlalchemy import exc
from tactical.outbox import AsyncOutboxRelay, OutboxMessage, OutboxRelay, TimerWorker, purge_inbox
from tactical.projections import Projection, ProjectionRunner, purge_outbox
from tactical.sqlalchemy import create_schema

HINT = "create them with tactical.sqlalchemy.create_schema(engine)"
EMPTY_SCHEMA = "tactical_no_tables"


def _postgres_without_tables() -> sa.Engine:
    require_server("PostgreSQL", 5432)
    setup = sa.create_engine(postgres_url())
    with setup.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {EMPTY_SCHEMA}")
    setup.dispose()
    return sa.create_engine(
        postgres_url(), connect_args={"options": f"-csearch_path={EMPTY_SCHEMA}"}
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def bare_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """An engine of a database where create_schema() was never called."""
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    else:
        engine = _postgres_without_tables()
    yield engine
    engine.dispose()


def _message(tmp_path: Path) -> OutboxMessage:
    """A message as a relay sends it, taken from a database that has the tables."""
    source = sa.create_engine(f"sqlite:///{tmp_path / 'source.db'}")
    create_schema(source)
    commit_ticks(source, counters=1, ticks=1)
    publisher = RecordingPublisher()
    OutboxRelay(source, publisher).relay_once()
    source.dispose()
    (message,) = publisher.published
    return message


class _AsyncRecordingPublisher:
    def __init__(self) -> None:
        self.published: list[OutboxMessage] = []

    async def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        self.published.extend(messages)


def _relay_once(engine: sa.Engine) -> object:
    return OutboxRelay(engine, RecordingPublisher()).relay_once()


def _parked(engine: sa.Engine) -> object:
    return OutboxRelay(engine, RecordingPublisher()).parked()


def _fire_due(engine: sa.Engine) -> object:
    return TimerWorker(engine).fire_due()


def _project(engine: sa.Engine) -> object:
    return ProjectionRunner(engine, [Projection("view")]).run_once()


def _notes(error: BaseException) -> list[str]:
    return list(getattr(error, "__notes__", []))


class TestMissingTables:
    @pytest.mark.parametrize(
        "call",
        [_relay_once, _parked, _fire_due, _project, purge_outbox, purge_inbox],
        ids=["relay", "parked", "timer-worker", "projection-runner", "purge-outbox", "purge-inbox"],
    )
    def test_a_worker_s_error_says_how_to_create_the_tables(
        self, bare_engine: sa.Engine, call: Callable[[sa.Engine], object]
    ) -> None:
        """The driver's "no such table" / "does not exist" gets the note, once."""
        with pytest.raises(exc.DBAPIError, match="tactical_") as raised:
            call(bare_engine)
        assert sum(HINT in note for note in _notes(raised.value)) == 1

    def test_an_inbox_consumer_s_error_says_how_to_create_the_tables(
        self, bare_engine: sa.Engine, tmp_path: Path
    ) -> None:
        """A consumer whose database lacks the inbox tables says so once, not twice."""
        consumer = make_consumer(bare_engine)
        with pytest.raises(exc.DBAPIError, match="tactical_") as raised:
            consumer.handle(_message(tmp_path))
        assert sum(HINT in note for note in _notes(raised.value)) == 1

    async def test_an_async_relay_s_error_says_how_to_create_the_tables(
        self, tmp_path: Path
    ) -> None:
        """The async workers share the sync ones' core: the same note."""
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'bare.db'}")
        try:
            with pytest.raises(exc.DBAPIError, match="tactical_outbox") as raised:
                await AsyncOutboxRelay(engine, _AsyncRecordingPublisher()).relay_once()
        finally:
            await engine.dispose()
        assert any(HINT in note for note in _notes(raised.value))

    def test_a_run_loop_logs_how_to_create_the_tables(
        self, bare_engine: sa.Engine, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A relay started before the schema exists says, in its warning, what to do."""
        caplog.set_level(logging.WARNING, logger="tactical.outbox")
        relay = OutboxRelay(bare_engine, RecordingPublisher())
        stop = threading.Event()
        loop = threading.Thread(target=relay.run, args=(stop,), kwargs={"initial_backoff": 0.05})
        loop.start()
        try:
            eventually(
                lambda: any(HINT in record.getMessage() for record in caplog.records),
                "a warning naming create_schema",
            )
        finally:
            stop.set()
            loop.join(timeout=30)
        assert not loop.is_alive()


@pytest.mark.postgres
class TestProjectionSchemaCheck:
    def test_a_missing_outbox_is_not_reported_as_a_wrong_default(self) -> None:
        """Without tactical_outbox, the runner says the tables are missing, not "default None"."""
        engine = _postgres_without_tables()
        try:
            runner = ProjectionRunner(engine, [Projection("view")])
            with pytest.raises(exc.ProgrammingError, match="does not exist") as raised:
                runner.catch_up("view")
        finally:
            engine.dispose()
        assert any(HINT in note for note in _notes(raised.value))
        assert "has the default" not in str(raised.value)
