"""How many commands ``retry_on_conflict`` gives up on under contention, with its defaults.

``python -m benchmarks.retry_load [URL] [--threads 8] [--increments 200]`` runs ``threads``
threads, each running ``increments`` increments of ONE counter aggregate, each increment a
whole transaction wrapped in ``retry_on_conflict`` with its default settings (or the
``--attempts`` / ``--base-delay`` / ``--max-delay`` given). It prints how many commands gave
up, the conflicts per command, the wall time, and checks that no update was lost. The
default URL is PostgreSQL's ``TACTICAL_TEST_POSTGRES_URL``; a SQLite file URL works too.
A load test, not a ratio benchmark: it is not a group of ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from tactical import ConcurrencyError, retry_on_conflict
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, create_schema
from tactical.testing import Counter


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retry_load", description=__doc__)
    parser.add_argument(
        "url",
        nargs="?",
        default=os.environ.get(
            "TACTICAL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--increments", type=int, default=200)
    parser.add_argument("--attempts", type=int)
    parser.add_argument("--base-delay", type=float)
    parser.add_argument("--max-delay", type=float)
    arguments = parser.parse_args(argv)
    settings: dict[str, Any] = {
        name: value
        for name, value in (
            ("attempts", arguments.attempts),
            ("base_delay", arguments.base_delay),
            ("max_delay", arguments.max_delay),
        )
        if value is not None
    }
    engine = sa.create_engine(arguments.url, pool_size=arguments.threads + 2)
    create_schema(engine)
    counter_id = uuid4()
    with SqlAlchemyUnitOfWork(engine) as uow:
        uow.repository(Counter).add(Counter(counter_id, "retry-load"))
        uow.commit()

    lock = threading.Lock()
    gave_up = conflicts = 0

    def increment() -> None:
        nonlocal conflicts
        try:
            with SqlAlchemyUnitOfWork(engine) as uow:
                uow.repository(Counter).require(counter_id).tick()
                uow.commit()
        except ConcurrencyError:
            with lock:
                conflicts += 1
            raise

    def worker() -> None:
        nonlocal gave_up
        for _ in range(arguments.increments):
            try:
                retry_on_conflict(increment, **settings)
            except ConcurrencyError:
                with lock:
                    gave_up += 1

    threads = [threading.Thread(target=worker) for _ in range(arguments.threads)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    commands = arguments.threads * arguments.increments
    count = _count(engine, counter_id)
    engine.dispose()
    print(
        f"{engine.dialect.name}, {arguments.threads} threads x {arguments.increments} "
        f"increments, settings {settings or 'default'}: {gave_up}/{commands} gave up "
        f"({100 * gave_up / commands:.2f}%), {conflicts / commands:.2f} conflicts per command, "
        f"{elapsed:.1f}s, final count {count} ({'no' if count == commands - gave_up else 'LOST'}"
        " update lost)"
    )


def _count(engine: sa.Engine, counter_id: UUID) -> int:
    with SqlAlchemyUnitOfWork(engine) as uow:
        count = uow.repository(Counter).require(counter_id).count
        uow.rollback()
    return count


if __name__ == "__main__":
    main()
