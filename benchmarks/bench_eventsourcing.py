"""tactical against the `eventsourcing` library (9.x), the peer a user would pick instead.

Workload, one call, both on a SQLite file database in WAL mode: load an account, deposit,
save. tactical stores the account as one JSON document and writes the event to its outbox;
eventsourcing stores the event and rebuilds the account by replaying its events. Each side
rotates over a pool of accounts, so an eventsourcing account is loaded with a short history
(the range is reported): the comparison is at eventsourcing's best case, without snapshots.

tactical's ``configure_engine`` sets ``synchronous = NORMAL`` (no fsync per commit in WAL
mode); eventsourcing leaves SQLite's default ``FULL``. The row with the goal gives
eventsourcing the same setting; the last row shows it as installed. Rows with 2, 5 and 20
deposits saved first show where replaying catches up with tactical's flat cost per load.

Two more rows put hand-written SQLAlchemy in tactical's place against the goal row's
eventsourcing: Core with statements built once, and the same statements run with
``exec_driver_sql``. They tell how much of the difference is SQLAlchemy's execution path.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

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
    path: Path, *, normal_sync: bool, history: int, pool: int
) -> tuple[Callable[[], None], Callable[[], tuple[int, int, str]]]:
    """eventsourcing's side: ``pool`` accounts, each saved with ``history`` deposits first."""
    from eventsourcing.application import Application

    from benchmarks._es_domain import EsAccount

    if normal_sync:
        _NORMAL_SYNC_DATABASES.add(str(path))
    app: Application[UUID] = Application(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    )
    amount = Decimal("1.25")
    accounts = [EsAccount("ada") for _ in range(pool)]
    for account in accounts:
        for _ in range(history):
            account.deposit(amount)
    for start in range(0, pool, 500):
        app.save(*accounts[start : start + 500])
    ids = [account.id for account in accounts]
    turn = [0]

    def call() -> None:
        account_id = ids[turn[0] % pool]
        turn[0] += 1
        account: EsAccount = app.repository.get(account_id)
        account.deposit(amount)
        app.save(account)

    def state() -> tuple[int, int, str]:
        versions: list[int] = [app.repository.get(i).version for i in ids]
        with closing(sqlite3.connect(path)) as connection:
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        return min(versions), max(versions), str(mode)

    return call, state


def _tactical_deposit(engine: sa.Engine) -> Callable[[], None]:
    codec = JsonCodec()
    return _rotating(
        [
            _sql.tactical_deposit(engine, codec, EventBus(), _sql.saved_account(engine, codec))
            for _ in range(POOL)
        ]
    )


def _rotating(calls: list[Callable[[], None]]) -> Callable[[], None]:
    """One call of each in turn: every row or account is touched as often as the others."""
    turn = [0]

    def call() -> None:
        calls[turn[0] % len(calls)]()
        turn[0] += 1

    return call


def _compare_core(
    report: Report, engine: sa.Engine, eventsourcing: Callable[[], None], label: str
) -> None:
    """Hand-written SQLAlchemy in tactical's place: what SQLAlchemy's execution path costs.

    If even the hand-written statements take longer than eventsourcing, the difference lies
    in SQLAlchemy's execution path, not in tactical.
    """
    codec = JsonCodec()
    baselines: dict[str, Callable[[UUID], Callable[[], None]]] = {
        "hand-written Core": lambda i: _sql.core_deposit(engine, codec, i, prebuilt=True),
        "Core via exec_driver_sql": lambda i: _sql.core_deposit_on_driver(engine, codec, i),
    }
    for name, make in baselines.items():
        call = _rotating([make(_sql.saved_account(engine, codec)) for _ in range(POOL)])
        report.add(
            compare(
                "vs eventsourcing (SQLite)",
                f"{name}, {label.split(',')[0]}",
                call,
                eventsourcing,
                rounds=_sql.ROUNDS,
                seconds=_sql.SECONDS,
            )
        )


def run(report: Report) -> None:
    """Run the eventsourcing comparison into ``report`` (skipped if it is not installed)."""
    try:
        import eventsourcing  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError:
        report.note("eventsourcing: not installed (nox -s bench installs it); group skipped")
        return
    from importlib.metadata import version

    _patch_eventsourcing_pool()
    variants = [
        # (synchronous=NORMAL as tactical, events saved before, accounts, goal). The rows with
        # history show where replaying catches up with tactical's flat cost per load.
        (True, 0, ES_POOL, GOAL),
        (True, 2, ES_POOL // 2, None),
        (True, 5, ES_POOL // 2, None),
        (True, 20, ES_POOL // 4, None),
        (False, 0, ES_POOL, None),
    ]
    with tempfile.TemporaryDirectory(prefix="tactical-bench-") as directory:
        engine = _sql.sqlite_engine(Path(directory))
        tactical = _tactical_deposit(engine)
        for number, (normal_sync, history, pool, goal) in enumerate(variants):
            candidate, state = _eventsourcing_deposit(
                Path(directory) / f"es-{number}.sqlite3",
                normal_sync=normal_sync,
                history=history,
                pool=pool,
            )
            sync = "sync NORMAL (as tactical)" if normal_sync else "sync FULL (its default)"
            label = f"{'new' if history == 0 else f'{history}-deposit'} accounts, {sync}"
            report.add(
                compare(
                    "vs eventsourcing (SQLite)",
                    label,
                    tactical,
                    candidate,
                    goal=goal,
                    rounds=_sql.ROUNDS,
                    seconds=_sql.SECONDS,
                )
            )
            if number == 0:
                _compare_core(report, engine, candidate, label)
            shortest, longest, mode = state()
            report.note(
                f"eventsourcing {version('eventsourcing')} ({label}; journal_mode={mode}): "
                f"its accounts held {shortest}..{longest} events at the end, "
                "all replayed on every load"
            )
        engine.dispose()
    _NORMAL_SYNC_DATABASES.clear()
