"""Outbox relay throughput: to the in-process bus and to RabbitMQ, against a relay to nowhere.

Each call commits a batch of outbox rows (one insert) and relays them in one batch, on a
SQLite file. The baseline relays to a publisher that drops the messages, so the ratio is
the cost of the destination (decoding and dispatch, or the broker's confirmed delivery)
on top of reading and marking rows; events per second are printed under each row.
"""

from __future__ import annotations

import socket
import tempfile
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
