"""Large aggregates: a ledger of 1,000 child entities against one of 10, on a SQLite file.

Two workloads: load only, and load + change one entry + save (the whole document is
decoded, compared, encoded and written again, so the cost grows with the aggregate; the
ratio says how). Then the codec's share of each 1,000-entity transaction: the codec's own
work on that ledger (decoding its state; decoding and encoding it) timed against the whole
transaction, so the ratio *is* the share. Last, the decoder alone on 1,000 entries against
10, and a note with its cost per entry.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import sqlalchemy as sa
from benchmarks import _sql
from benchmarks._domain import Entry, Ledger
from benchmarks._harness import Report, compare
from tactical import EventBus, JsonCodec
from tactical.sqlalchemy import SqlAlchemyUnitOfWork

GROUP = "large aggregate"
LARGE, SMALL = 1_000, 10
ROUNDS = 20
SECONDS = 3.0


def _saved_ledger(engine: sa.Engine, codec: JsonCodec, entries: int) -> UUID:
    ledger_id = uuid4()
    uow = SqlAlchemyUnitOfWork(engine, codec=codec)
    with uow:
        uow.repository(Ledger).add(
            Ledger(ledger_id, [Entry(n, Decimal(n), f"entry {n}") for n in range(entries)])
        )
        uow.commit()
    return ledger_id


def _load(engine: sa.Engine, codec: JsonCodec, ledger_id: UUID) -> Callable[[], None]:
    uow = SqlAlchemyUnitOfWork(engine, codec=codec)

    def call() -> None:
        with uow:
            uow.repository(Ledger).require(ledger_id)

    return call


def _post(engine: sa.Engine, codec: JsonCodec, ledger_id: UUID) -> Callable[[], None]:
    uow = SqlAlchemyUnitOfWork(engine, EventBus(), codec=codec)
    turn = [0]
    amount = Decimal("0.5")

    def call() -> None:
        with uow:
            uow.repository(Ledger).require(ledger_id).post_to(turn[0], amount)
            uow.commit()
        turn[0] += 1

    return call


def run(report: Report) -> None:
    """Run the large-aggregate benchmarks into ``report``."""
    codec = JsonCodec()
    with tempfile.TemporaryDirectory(prefix="tactical-bench-") as directory:
        engine = _sql.sqlite_engine(Path(directory))
        large, small = _saved_ledger(engine, codec, LARGE), _saved_ledger(engine, codec, SMALL)
        for workload, make in (("load", _load), ("load + change + save", _post)):
            report.add(
                compare(
                    GROUP,
                    f"{workload}, {LARGE:,} entities vs {SMALL}",
                    make(engine, codec, large),
                    make(engine, codec, small),
                    database=_sql.SQLITE,
                    against=f"{SMALL} entities",
                    rounds=ROUNDS,
                    seconds=SECONDS,
                )
            )

        uow = SqlAlchemyUnitOfWork(engine, codec=codec)
        with uow:
            ledger = uow.repository(Ledger).require(large)
        state = codec.aggregate_to_state(ledger)

        def decode() -> None:
            codec.aggregate_from_state(Ledger, state, version=1)

        def decode_and_encode() -> None:
            codec.aggregate_to_state(codec.aggregate_from_state(Ledger, state, version=1))

        shares = (
            ("load", "codec's share of load", decode, _load(engine, codec, large)),
            (
                "load + change + save",
                "codec's share of load + change + save",
                decode_and_encode,
                _post(engine, codec, large),
            ),
        )
        for workload, share, codec_work, transaction in shares:
            report.add(
                compare(
                    GROUP,
                    share,
                    codec_work,
                    transaction,
                    database=_sql.SQLITE,
                    against=f"whole {workload}, {LARGE:,} entities",
                    rounds=ROUNDS,
                    seconds=SECONDS / 2,
                )
            )
        small_state = {**state, "id": str(small), "entries": state["entries"][:SMALL]}
        decoded = report.add(
            compare(
                GROUP,
                f"codec decode only, {LARGE:,} entities vs {SMALL}",
                decode,
                lambda: codec.aggregate_from_state(Ledger, small_state, version=1),
                against=f"{SMALL} entities",
                rounds=ROUNDS,
                seconds=SECONDS / 2,
            )
        )
        per_entry = (decoded.candidate_ns - decoded.baseline_ns) / (LARGE - SMALL) / 1000
        cpu = ""
        if decoded.candidate_cpu_ns is not None and decoded.baseline_cpu_ns is not None:
            cpu_per_entry = (decoded.candidate_cpu_ns - decoded.baseline_cpu_ns) / (LARGE - SMALL)
            cpu = f" ({cpu_per_entry / 1000:.2f} us of CPU time)"
        report.note(f"large aggregate: the decoder takes {per_entry:.2f} us per entry{cpu}")
        engine.dispose()
