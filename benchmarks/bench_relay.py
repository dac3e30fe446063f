"""Outbox relay throughput: to the in-process bus and to RabbitMQ, against a relay to nowhere.

Each call commits a batch of outbox rows (one insert) and relays them in one batch, on a
SQLite file. The baseline relays to a publisher that drops the messages, so the ratio is
the cost of the destination (decoding and dispatch, or the broker's confirmed delivery)
on top of reading and marking rows; events per second are printed under each row.

Partitioned relays on PostgreSQL: 1, 2 and 4 relays (threads of this process, 16
partitions, each relay with its own connection and RabbitMQ publisher, or a publisher to
nowhere without RabbitMQ) drain the same outbox; each row of the table is the time of R
relays against one relay (below 1.0: faster), and the events per second are printed.
"""

from __future__ import annotations

import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from uuid import uuid4

from benchmarks._harness import Comparison, Report, compare
from tactical import DomainEvent, EventBus, JsonCodec

BATCH = 200


class Ticked(DomainEvent):
    counter: str
    count: int


class _DropPublisher:
    def publish(self, messages: Sequence[Any], /) -> None:
        pass


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _rows(codec: JsonCodec) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for count in range(BATCH):
        event = Ticked(f"counter-{count % 10}", count)
        record = codec.event_to_record(event)
        rows.append(
            {
                "event_type": record.type_name,
                "event_version": record.schema_version,
                "aggregate_type": "bench.Counter",
                "aggregate_id": event.counter,
                "aggregate_version": count,
                "payload": record.payload,
                "occurred_at": event.occurred_at,
            }
        )
    return rows


def _show_rate(report: Report, comparison: Comparison) -> None:
    report.add(comparison)
    for label, ns in (("candidate", comparison.candidate_ns), ("baseline", comparison.baseline_ns)):
        report.note(f"{comparison.name}: {label} {BATCH / (ns / 1e9):,.0f} events/s")


def run(report: Report) -> None:
    """Run the relay benchmarks into ``report``."""
    import sqlalchemy as sa
    from tactical.outbox import EventBusPublisher, OutboxRelay, Publisher
    from tactical.sqlalchemy import create_schema, outbox_table

    codec = JsonCodec()
    template = _rows(codec)
    with tempfile.TemporaryDirectory() as directory:
        engine = sa.create_engine(f"sqlite:///{Path(directory) / 'bench.sqlite3'}")
        create_schema(engine)

        def relay_through(publisher: Publisher) -> Callable[[], object]:
            relay = OutboxRelay(engine, publisher, batch_size=BATCH)

            def call() -> None:
                with engine.begin() as connection:
                    connection.execute(
                        outbox_table.delete().where(outbox_table.c.published_at.is_not(None))
                    )
                    connection.execute(
                        outbox_table.insert(), [row | {"event_id": uuid4()} for row in template]
                    )
                relay.relay_once()

            return call

        bus = EventBus()
        received: list[int] = [0]
        bus.subscribe(Ticked, lambda event: received.__setitem__(0, received[0] + 1))
        nowhere = relay_through(_DropPublisher())
        _show_rate(
            report,
            compare(
                "outbox relay",
                f"{BATCH} events to the in-process bus",
                relay_through(EventBusPublisher(bus, codec)),
                nowhere,
                database="SQLite",
                against="relay to nowhere",
                rounds=7,
            ),
        )
        if not _listening(5672):
            name = f"{BATCH} events to RabbitMQ (confirmed)"
            reason = "RabbitMQ not reachable on 127.0.0.1:5672"
            report.skip("outbox relay", [name], "SQLite", reason, against="relay to nowhere")
        else:
            from tactical.outbox.rabbitmq import RabbitMQPublisher

            exchange = f"tactical-bench-{uuid4().hex[:8]}"
            with RabbitMQPublisher(exchange=exchange) as publisher:
                _show_rate(
                    report,
                    compare(
                        "outbox relay",
                        f"{BATCH} events to RabbitMQ (confirmed)",
                        relay_through(publisher),
                        nowhere,
                        database="SQLite",
                        against="relay to nowhere",
                        rounds=7,
                    ),
                )
            _delete_exchange(exchange)
        engine.dispose()
    _partitioned(report, codec, template)


SCALING_ROWS = 4000
PARTITIONS = 16


def _partitioned(report: Report, codec: JsonCodec, template: list[dict[str, Any]]) -> None:
    """1, 2 and 4 partitioned relays draining one PostgreSQL outbox."""
    import threading

    from benchmarks import _sql
    from tactical.outbox import OutboxRelay, Publisher, partition_key
    from tactical.sqlalchemy import outbox_table

    names = [f"{PARTITIONS} partitions, {n} relays, {SCALING_ROWS} events" for n in (2, 4)]
    reason = _sql.postgres_reachable()
    if reason is not None:
        report.skip("outbox relay", names, _sql.POSTGRES, reason, against="1 relay")
        return
    rabbit = _listening(5672)
    exchange = f"tactical-bench-{uuid4().hex[:8]}"
    publishers: list[Any] = []

    def publisher() -> Publisher:
        if not rabbit:
            return _DropPublisher()
        from tactical.outbox.rabbitmq import RabbitMQPublisher

        made = RabbitMQPublisher(exchange=exchange)
        publishers.append(made)
        return made

    rows = [
        row
        | {
            "aggregate_id": f"counter-{n % 200}",
            "partition_key": partition_key(row["aggregate_type"], f"counter-{n % 200}"),
        }
        for n, row in enumerate(template * (SCALING_ROWS // len(template)))
    ]
    with _sql.postgres_engine(pool_size=8) as engine:
        relays = [
            OutboxRelay(engine, publisher(), batch_size=100, partitions=PARTITIONS)
            for _ in range(4)
        ]

        def drain(count: int) -> float:
            with engine.begin() as connection:
                connection.execute(outbox_table.delete())
                connection.execute(outbox_table.insert(), [r | {"event_id": uuid4()} for r in rows])
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                # As autovacuum would: without statistics the planner probes parked rows
                # through the unpublished index, a scan per row.
                connection.exec_driver_sql("VACUUM ANALYZE tactical_outbox")
            # Settle the shares (a relay out of this round lets its leases lapse).
            for relay in relays[:count] * 3:
                relay.relay_once()
            with engine.begin() as connection:  # the settling published some: start again
                connection.execute(outbox_table.update().values(published_at=None))

            def work(relay: OutboxRelay) -> None:
                while relay.relay_once():
                    pass

            threads = [threading.Thread(target=work, args=(r,)) for r in relays[:count]]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return time.perf_counter() - started

        seconds: dict[int, float] = {}
        for count in (1, 2, 4):
            # Relays left out must not keep leases: give them up, as a clean stop does.
            for relay in relays[count:]:
                relay._on_connection(relay._release_leases())  # pyright: ignore[reportPrivateUsage]
            seconds[count] = statistics.median(drain(count) for _ in range(3))
            report.note(
                f"partitioned relays on PostgreSQL: {count} relay(s) drain {SCALING_ROWS} "
                f"events in {seconds[count]:.2f}s ({SCALING_ROWS / seconds[count]:,.0f} events/s, "
                f"{seconds[1] / seconds[count]:.2f}x one relay; to "
                f"{'RabbitMQ, confirmed' if rabbit else 'nowhere'})"
            )
        for relay in relays:
            relay._on_connection(relay._release_leases())  # pyright: ignore[reportPrivateUsage]
    for made in publishers:
        made.close()
    if rabbit:
        _delete_exchange(exchange)


def _delete_exchange(exchange: str) -> None:
    import importlib

    pika: Any = importlib.import_module("pika")
    connection = pika.BlockingConnection(
        pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2F")
    )
    try:
        connection.channel().exchange_delete(exchange=exchange)
    finally:
        connection.close()
