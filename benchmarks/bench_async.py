"""The async unit of work against the sync one on threads, on PostgreSQL (goals: see GOALS).

Workload: load + command (1 event) + commit, ``COMMANDS`` of them per call, with ``n`` in
flight at once for each ``n`` in ``CONCURRENCY``: ``n`` workers, each on an account of its
own with a unit of work of its own (made once, as an application would), run
``COMMANDS // n`` commands back to back. The baseline is ``SqlAlchemyUnitOfWork`` on ``n``
threads of a pool started once (an engine pool of ``max(CONCURRENCY)`` connections); the
candidate is ``AsyncSqlAlchemyUnitOfWork`` on one asyncio event loop (the standard one) with
``n`` tasks, once per async driver (psycopg's async mode, asyncpg), its engine's pool as
large. The same rows run a second time on uvloop's event loop (what uvicorn runs when it is
installed), labelled so, at 1 and 16 in flight: uvloop is installed by ``nox -s bench`` only,
never a dependency of tactical, and its rows are skipped without it. Both sides run the same statements with the same settings (search path,
``synchronous_commit``, database_timeout on), and ``compare`` warms both up (connections
opened, statements prepared) before timing. The ratio (time of the async side over time of
the sync side) is the inverse of their throughputs: async >= 1.0x the sync throughput at 1
in flight is a ratio <= 1.00x, and >= 1.3x at 16 is <= 0.77x; each row's note says it in
throughput.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from benchmarks import _sql
from benchmarks._domain import Account
from benchmarks._harness import Goal, Report, compare
from tactical import EventBus, JsonCodec
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork

GROUP = "async uow"
CONCURRENCY = (1, 4, 16, 32)
COMMANDS = 64  # per call, split among the workers in flight
# SQLAlchemy URL driver name -> the name the table shows.
DRIVERS = {"psycopg": "psycopg async", "asyncpg": "asyncpg"}
# Time of the async side as a multiple of the sync side's for the same commands.
GOALS: dict[int, Goal] = {1: Goal(1.0), 16: Goal(round(1 / 1.3, 2))}
# The same goals in throughput (async over sync), as the issue states them.
THROUGHPUT_GOALS = {1: 1.0, 16: 1.3}
AGAINST = "sync uow on threads"
# The event loops the async side runs on: the standard one at every concurrency, uvloop's
# (the loop production ASGI servers run when it is installed) where the goals are.
LOOPS = ("asyncio", "uvloop")
UVLOOP_NOT_INSTALLED = "uvloop not installed (nox -s bench installs it)"


def _concurrencies(loop: str) -> tuple[int, ...]:
    """How many in flight the rows of ``loop`` run (read when they run: tests lower it)."""
    return CONCURRENCY if loop == "asyncio" else tuple(c for c in CONCURRENCY if c in GOALS)


ROUNDS = 8
SECONDS = 3.0


def _name(concurrency: int, driver: str, loop: str = "asyncio") -> str:
    on = "" if loop == "asyncio" else f" on {loop}"
    return f"load + command + commit, {concurrency} at once, {driver}{on}"


def _runner(loop: str) -> asyncio.Runner:
    """A runner of the event loop ``loop`` ("asyncio": the standard one)."""
    if loop == "asyncio":
        return asyncio.Runner()
    # Imported by name: uvloop is installed for the benchmarks only.
    factory: Callable[[], asyncio.AbstractEventLoop] = importlib.import_module(loop).new_event_loop
    return asyncio.Runner(loop_factory=factory)


def _has_uvloop() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def _sync_side(
    engine: sa.Engine, codec: JsonCodec, accounts: list[UUID], pool: ThreadPoolExecutor
) -> Callable[[], None]:
    """``len(accounts)`` threads, each running its share of the commands on its account."""
    deposits = [_sql.tactical_deposit(engine, codec, EventBus(), a) for a in accounts]
    share = COMMANDS // len(accounts)

    def worker(deposit: Callable[[], None]) -> None:
        for _ in range(share):
            deposit()

    def call() -> None:
        for future in [pool.submit(worker, deposit) for deposit in deposits]:
            future.result()

    return call


def _async_side(
    engine: Any, codec: JsonCodec, accounts: list[UUID], loop: asyncio.Runner
) -> Callable[[], None]:
    """One event loop, ``len(accounts)`` tasks, each its share of the commands."""
    share = COMMANDS // len(accounts)
    # One unit of work per task, made once like the sync side's (a unit of work serves one
    # task at a time).
    units = [
        (AsyncSqlAlchemyUnitOfWork(engine, EventBus(), codec=codec), account)
        for account in accounts
    ]

    async def worker(uow: AsyncSqlAlchemyUnitOfWork, account_id: UUID) -> None:
        for _ in range(share):
            async with uow:
                account = await uow.repository(Account).require(account_id)
                account.deposit(_sql.AMOUNT)
                await uow.commit()

    async def all_workers() -> None:
        tasks: list[Awaitable[None]] = [worker(uow, a) for uow, a in units]
        await asyncio.gather(*tasks)

    return lambda: loop.run(all_workers())


@contextmanager
def _async_engine(
    driver: str, schema: str, connections: int, loop: asyncio.Runner
) -> Generator[Any, None, None]:
    """An ``AsyncEngine`` on ``driver``, used and disposed of on ``loop`` (connections are
    bound to the event loop that opened them)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    url = sa.make_url(_sql.POSTGRES_URL).set(drivername=f"postgresql+{driver}")
    settings = {"search_path": schema, "synchronous_commit": _sql.POSTGRES_SYNCHRONOUS_COMMIT}
    connect_args: dict[str, Any] = (
        {"server_settings": settings}
        if driver == "asyncpg"
        else {"options": " ".join(f"-c{k}={v}" for k, v in settings.items())}
    )
    engine = create_async_engine(
        url, pool_size=connections, max_overflow=0, connect_args=connect_args
    )
    try:
        yield engine
    finally:
        loop.run(engine.dispose())


def _throughput_note(concurrency: int, shown: str, ratio: float, loop: str) -> str:
    """The row in the issue's terms: the async side's throughput over the threads'."""
    throughput = 1 / ratio
    goal = THROUGHPUT_GOALS.get(concurrency)
    verdict = (
        "no goal"
        if goal is None
        else f"goal >= {goal:.1f}x: " + ("met" if throughput >= goal else "MISSED")
    )
    return (
        f"async uow, {shown} on {loop}, {concurrency} at once: {throughput:.2f}x the "
        f"throughput of the sync uow on {concurrency} thread(s) ({verdict})"
    )


def _load_note() -> str:
    """The machine's load, which tilts this comparison (see the note's text)."""
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"async uow: load average {load:.1f} on {cores} cores when the group started; above "
        f"{cores}, the kernel shares the CPU among runnable threads, so the sync side's "
        "threads get more of it than the one event loop thread, and the wall-clock ratios "
        "at 4 to 32 in flight favour the threads (the CPU ratio column does not)"
    )


def _measure(report: Report, loops: list[str]) -> None:
    codec = JsonCodec()
    report.note(_load_note())
    most = max(CONCURRENCY)
    with (
        _sql.postgres_engine(pool_size=most) as engine,
        ThreadPoolExecutor(max_workers=most) as threads,
    ):
        schema = _sql.POSTGRES_SCHEMA
        for loop_name in loops:
            with _runner(loop_name) as loop:
                for driver, shown in DRIVERS.items():
                    with _async_engine(driver, schema, most, loop) as async_engine:
                        for concurrency in _concurrencies(loop_name):
                            sync_accounts, async_accounts = (
                                [_sql.saved_account(engine, codec) for _ in range(concurrency)]
                                for _ in range(2)
                            )
                            row = report.add(
                                compare(
                                    GROUP,
                                    _name(concurrency, shown, loop_name),
                                    _async_side(async_engine, codec, async_accounts, loop),
                                    _sync_side(engine, codec, sync_accounts, threads),
                                    database=_sql.POSTGRES,
                                    against=AGAINST,
                                    goal=GOALS.get(concurrency),
                                    rounds=ROUNDS,
                                    seconds=SECONDS,
                                )
                            )
                            report.note(_throughput_note(concurrency, shown, row.ratio, loop_name))


def _skip(report: Report, loop: str, reason: str) -> None:
    for shown in DRIVERS.values():
        for concurrency in _concurrencies(loop):
            report.skip(
                GROUP,
                [_name(concurrency, shown, loop)],
                _sql.POSTGRES,
                reason,
                against=AGAINST,
                goal=GOALS.get(concurrency),
            )


def run(report: Report) -> None:
    """Run the async benchmark into ``report``, or say why its rows cannot run."""
    reason = _sql.postgres_reachable()
    if reason is not None:
        for loop in LOOPS:
            _skip(report, loop, reason)
        return
    loops: list[str] = list(LOOPS)
    if not _has_uvloop():
        loops.remove("uvloop")
    _measure(report, loops)
    if "uvloop" not in loops:
        _skip(report, "uvloop", UVLOOP_NOT_INSTALLED)
