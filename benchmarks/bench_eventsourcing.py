"""tactical against the `eventsourcing` library (9.x), the peer a user would pick instead.

Workload, one call, both on a SQLite file database in WAL mode: load an account, deposit,
save. tactical stores the account as one JSON document and writes the event to its outbox;
eventsourcing stores the event and rebuilds the account by replaying its events. Each side
rotates over a pool of accounts, so an eventsourcing account is loaded with a short history
(the range is reported): the comparison is at eventsourcing's best case, without snapshots.

tactical's ``configure_engine`` sets ``synchronous = NORMAL`` (no fsync per commit in WAL
mode); eventsourcing leaves SQLite's default ``FULL``. The row with the goal gives
eventsourcing the same setting; the other shows it as installed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from benchmarks import _sql
from benchmarks._harness import Report, compare
from tactical import EventBus
from tactical._codec import JsonCodec

GOAL = 1.0  # tactical must be faster
POOL = 100
# Enough eventsourcing accounts that each is loaded with a short history (1 to ~4 events)
# however many calls the harness makes: replay cost grows with history, row loads do not.
ES_POOL = 4000

_NORMAL_SYNC_DATABASES: set[str] = set()


def _patch_eventsourcing_pool() -> None:
    """Let chosen eventsourcing databases open their connections with synchronous=NORMAL."""
    from eventsourcing.sqlite import SQLiteConnectionPool

    original: Any = SQLiteConnectionPool._create_connection
    if getattr(original, "bench_patched", False):
        return

    def create_connection(self: Any) -> Any:
        connection = original(self)
        if self.db_name in _NORMAL_SYNC_DATABASES:
            connection._sqlite_conn.execute("PRAGMA synchronous = NORMAL")
        return connection

    create_connection.bench_patched = True  # type: ignore[attr-defined]
    SQLiteConnectionPool._create_connection = create_connection  # type: ignore[method-assign]


def _eventsourcing_deposit(
    path: Path, *, normal_sync: bool
) -> tuple[Callable[[], None], Callable[[], tuple[int, int, str]]]:
    from eventsourcing.application import Application

    from benchmarks._es_domain import EsAccount

    if normal_sync:
        _NORMAL_SYNC_DATABASES.add(str(path))
    app: Application = Application(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    )
    accounts = [EsAccount("ada") for _ in range(ES_POOL)]
    for start in range(0, ES_POOL, 500):
        app.save(*accounts[start : start + 500])
    ids = [account.id for account in accounts]
    amount = Decimal("1.25")
    turn = [0]

    def call() -> None:
        account_id = ids[turn[0] % ES_POOL]
        turn[0] += 1
        account: EsAccount = app.repository.get(account_id)
        account.deposit(amount)
        app.save(account)

    def state() -> tuple[int, int, str]:
        versions = [app.repository.get(i).version for i in ids]
        with sqlite_connection(path) as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
        return min(versions), max(versions), str(mode)

    return call, state


def sqlite_connection(path: Path) -> sa.Connection:
    return sa.create_engine(f"sqlite:///{path}").connect()


def _tactical_deposit(engine: sa.Engine) -> Callable[[], None]:
    codec = JsonCodec()
    calls = [
        _sql.tactical_deposit(engine, codec, EventBus(), _sql.saved_account(engine, codec))
        for _ in range(POOL)
    ]
    turn = [0]

    def call() -> None:
        calls[turn[0] % POOL]()
        turn[0] += 1

    return call


def run(report: Report) -> None:
    """Run the eventsourcing comparison into ``report`` (skipped if it is not installed)."""
    try:
        import eventsourcing  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError:
        report.note("eventsourcing: not installed (nox -s bench installs it); group skipped")
        return
    from importlib.metadata import version

    _patch_eventsourcing_pool()
    with tempfile.TemporaryDirectory(prefix="tactical-bench-") as directory:
        engine = _sql.sqlite_engine(Path(directory))
        tactical = _tactical_deposit(engine)
        for normal_sync in (True, False):
            name = "es-normal.sqlite3" if normal_sync else "es-full.sqlite3"
            candidate, state = _eventsourcing_deposit(
                Path(directory) / name, normal_sync=normal_sync
            )
            label = "synchronous=NORMAL, as tactical" if normal_sync else "its defaults"
            report.add(
                compare(
                    "vs eventsourcing",
                    f"SQLite: load + command + save ({label})",
                    tactical,
                    candidate,
                    goal=GOAL if normal_sync else None,
                    rounds=20,
                    target_seconds=0.1,
                )
            )
            shortest, longest, mode = state()
            report.note(
                f"eventsourcing {version('eventsourcing')} ({label}, journal_mode={mode}): "
                f"its accounts held {shortest}..{longest} events at the end "
                "(replayed on every load)"
            )
        engine.dispose()
    _NORMAL_SYNC_DATABASES.clear()
