"""tactical against the `eventsourcing` library (9.x), the peer a user would pick instead.

Three workloads, one call each, on a SQLite file and on PostgreSQL: create (a new account
with one event), update (load an account, deposit, save) and load. tactical stores the
account as one JSON document and writes each event to its outbox; eventsourcing stores the
events and rebuilds the account by replaying them, without snapshots. Each side rotates over
a pool of accounts large enough that an eventsourcing account holds a short history (1 to a
few events, reported in a note): its best case. Two more SQLite rows (no goal) update
accounts saved with 5 and 20 deposits first: where replaying catches up.

Equal durability: on SQLite both run in WAL mode with ``synchronous = NORMAL`` (tactical's
``configure_engine`` sets it; eventsourcing is given it, as it leaves SQLite's ``FULL``); on
PostgreSQL both commit with the same ``synchronous_commit`` (``benchmarks._sql``).
tactical's bus has no subscriber here (the peer publishes nothing).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, closing, contextmanager
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import sqlalchemy as sa
from benchmarks import _sql
from benchmarks._harness import Goal, Report, compare
from tactical import EventBus, JsonCodec

if TYPE_CHECKING:
    from benchmarks._es_domain import EsAccount

GROUP = "vs eventsourcing"
# Faster on every workload, except SQLite creates: at least level there.
GOALS: dict[tuple[str, str], Goal] = {
    (_sql.SQLITE, "create"): Goal(1.0),
    (_sql.SQLITE, "update"): Goal(1.0, strict=True),
    (_sql.SQLITE, "load"): Goal(1.0, strict=True),
    (_sql.POSTGRES, "create"): Goal(1.0, strict=True),
    (_sql.POSTGRES, "update"): Goal(1.0, strict=True),
    (_sql.POSTGRES, "load"): Goal(1.0, strict=True),
}
WORKLOADS = {key: _sql.WORKLOADS[key] for key in ("create", "update", "load")}
HISTORIES = (5, 20)  # deposits saved before the rows that show replay's growing cost
POOL = 100  # tactical's accounts per workload (its cost does not depend on history)
ES_POOL = 2000  # eventsourcing's: each is touched a few times at most in a run

_NORMAL_SYNC_DATABASES: set[str] = set()


def _patch_eventsourcing_pool() -> None:
    """Let chosen eventsourcing SQLite databases open connections with synchronous=NORMAL."""
    from eventsourcing.sqlite import SQLiteConnectionPool

    # eventsourcing has no setting for it: its pool's connection factory is wrapped.
    original: Any = getattr(SQLiteConnectionPool, "_create_connection")  # noqa: B009
    if getattr(original, "bench_patched", False):
        return

    def create_connection(self: Any) -> Any:
        connection = original(self)
        if self.db_name in _NORMAL_SYNC_DATABASES:
            connection._sqlite_conn.execute("PRAGMA synchronous = NORMAL")
        return connection

    setattr(create_connection, "bench_patched", True)  # noqa: B010
    setattr(SQLiteConnectionPool, "_create_connection", create_connection)  # noqa: B010


class _EsSide:
    """eventsourcing's application and its side of each workload."""

    def __init__(self, env: dict[str, str]) -> None:
        from eventsourcing.application import Application

        from benchmarks._es_domain import EsAccount

        self.account_type = EsAccount
        self.app: Application[UUID] = Application(env=env)
        self.amount = Decimal("1.25")
        self.pools: list[list[UUID]] = []

    def _pool(self, history: int, size: int) -> list[UUID]:
        accounts = [self.account_type("ada") for _ in range(size)]
        for account in accounts:
            for _ in range(history):
                account.deposit(self.amount)
        for start in range(0, size, 500):
            self.app.save(*accounts[start : start + 500])
        ids = [account.id for account in accounts]
        self.pools.append(ids)
        return ids

    def workload(
        self, workload: str, *, history: int = 0, size: int = ES_POOL
    ) -> Callable[[], None]:
        """The side of ``workload``; accounts saved with ``history`` deposits, ``size`` of them."""
        app, account_type = self.app, self.account_type

        def create() -> None:
            app.save(account_type("ada"))

        if workload == "create":
            return create
        ids, amount, turn = self._pool(history, size), self.amount, [0]

        def update() -> None:
            account: EsAccount = app.repository.get(ids[turn[0] % size])
            turn[0] += 1
            account.deposit(amount)
            app.save(account)

        def load() -> None:
            app.repository.get(ids[turn[0] % size])
            turn[0] += 1

        return update if workload == "update" else load

    def histories(self) -> str:
        """The fewest and most events of the accounts of each pool, for the note."""
        spans: list[str] = []
        for ids in self.pools:
            versions: list[int] = [self.app.repository.get(i).version for i in ids]
            spans.append(f"{min(versions)}..{max(versions)}")
        return ", ".join(spans)


def _tactical(workload: str, engine: sa.Engine) -> Callable[[], None]:
    codec, bus = JsonCodec(), EventBus()
    if workload == "create":
        return _sql.tactical_create(engine, codec, bus, events=1)
    ids = [_sql.saved_account(engine, codec) for _ in range(POOL)]
    if workload == "update":
        return _sql.rotating([_sql.tactical_deposit(engine, codec, bus, i) for i in ids])
    return _sql.rotating([_sql.tactical_load(engine, codec, i) for i in ids])


def _compare(report: Report, database: str, engine: sa.Engine, es: _EsSide, seconds: float) -> None:
    against = f"eventsourcing {version('eventsourcing')}"
    for workload, name in WORKLOADS.items():
        report.add(
            compare(
                GROUP,
                name,
                _tactical(workload, engine),
                es.workload(workload),
                database=database,
                against=against,
                goal=GOALS[database, workload],
                rounds=_sql.ROUNDS,
                seconds=seconds,
            )
        )
    if database == _sql.SQLITE:
        # Where replaying catches up with tactical's flat cost per load (no goal).
        for history in HISTORIES:
            report.add(
                compare(
                    GROUP,
                    f"{_sql.WORKLOADS['update']}, {history} deposits saved",
                    _tactical("update", engine),
                    es.workload("update", history=history, size=ES_POOL // 4),
                    database=database,
                    against=against,
                    rounds=_sql.ROUNDS,
                    seconds=seconds / 2,
                )
            )
    report.note(
        f"{against} on {database}: its accounts held {es.histories()} events at the end "
        "(by workload, in the order above), all replayed on every load"
    )


@contextmanager
def _pgoptions(options: str) -> Generator[None, None, None]:
    """libpq's PGOPTIONS for the block: eventsourcing's pool takes no connection options."""
    previous = os.environ.get("PGOPTIONS")
    os.environ["PGOPTIONS"] = options
    try:
        yield
    finally:
        if previous is None:
            del os.environ["PGOPTIONS"]
        else:
            os.environ["PGOPTIONS"] = previous


@contextmanager
def _es_on_postgres() -> Generator[_EsSide, None, None]:
    url = sa.make_url(_sql.POSTGRES_URL)
    schema_name = f"{_sql.POSTGRES_SCHEMA}_es"
    with _pgoptions(_sql.POSTGRES_OPTIONS), _sql.postgres_schema(schema_name) as schema:
        es = _EsSide(
            {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": url.database or "postgres",
                "POSTGRES_HOST": url.host or "127.0.0.1",
                "POSTGRES_PORT": str(url.port or 5432),
                "POSTGRES_USER": url.username or "postgres",
                "POSTGRES_PASSWORD": url.password or "",
                "POSTGRES_SCHEMA": schema,
            }
        )
        try:
            yield es
        finally:
            es.app.close()


def _skip(report: Report, database: str, reason: str) -> None:
    for workload, name in WORKLOADS.items():
        report.skip(
            GROUP, [name], database, reason, against="eventsourcing", goal=GOALS[database, workload]
        )


def run(report: Report) -> None:
    """Run the eventsourcing comparison into ``report`` (skipped if it is not installed)."""
    try:
        import eventsourcing  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError:
        reason = "eventsourcing not installed (nox -s bench installs it)"
        _skip(report, _sql.SQLITE, reason)
        _skip(report, _sql.POSTGRES, reason)
        return
    _patch_eventsourcing_pool()
    with tempfile.TemporaryDirectory(prefix="tactical-bench-") as directory:
        es_file = str(Path(directory) / "eventsourcing.sqlite3")
        _NORMAL_SYNC_DATABASES.add(es_file)
        es = _EsSide({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": es_file})
        engine = _sql.sqlite_engine(Path(directory))
        try:
            _compare(report, _sql.SQLITE, engine, es, _sql.SECONDS)
            with closing(sqlite3.connect(es_file)) as connection:
                mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            report.note(f"eventsourcing's SQLite file: journal_mode={mode}, synchronous=NORMAL")
        finally:
            es.app.close()
            engine.dispose()
            _NORMAL_SYNC_DATABASES.discard(es_file)
    unreachable = _sql.postgres_reachable()
    if unreachable is not None:
        _skip(report, _sql.POSTGRES, unreachable)
        return
    sides: AbstractContextManager[sa.Engine] = _sql.postgres_engine()
    with sides as engine, _es_on_postgres() as es:
        _compare(report, _sql.POSTGRES, engine, es, _sql.POSTGRES_SECONDS)
