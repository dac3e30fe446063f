"""Outbox relay throughput: to the in-process bus and to RabbitMQ, against a relay to nowhere.

Each call commits a batch of outbox rows (one insert) and relays them in one batch, on a
SQLite file. The baseline relays to a publisher that drops the messages, so the ratio is
the cost of the destination (decoding and dispatch, or the broker's confirmed delivery)
on top of reading and marking rows; events per second are printed under each row.

Partitioned relays on PostgreSQL: 1, 2 and 4 relay processes (``benchmarks._relay_worker``,
each an ``OutboxRelay`` with ``partitions=16`` and a name of its own, configured by its
arguments) drain a prefilled outbox of 3,000 events of 1,000 aggregates, to nowhere, to
Redis Streams and to RabbitMQ (a durable queue bound, publisher confirms). Each relay count
has its outbox (a schema) and processes of its own, started once: before each drain they
settle their shares of the partitions on the empty outbox, the outbox is filled, and the
time runs from the "go" sent to every process until the last one found its partitions
empty (so process start-up, connecting and taking leases are left out). Rounds run the
three counts in an order shuffled every round, after one round of warm-up; each row is the
time per event of R relays against one relay in the same rounds (median of the per-round
ratios, below 1.0: faster), its CPU ratio the CPU seconds every measured process spent
(relays, their PostgreSQL server processes, the broker) per round against one relay's. The
notes give events per second, those CPU seconds per event, how many cores they kept busy,
and how busy the whole machine was.
"""

from __future__ import annotations

import json
import os
import random
import socket
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from uuid import uuid4

import sqlalchemy as sa
from benchmarks import _processes, _sql
from benchmarks._harness import Comparison, Report, compare
from benchmarks._relay_worker import DropPublisher
from tactical import DomainEvent, EventBus, JsonCodec
from tactical.sqlalchemy import create_schema, outbox_table, relay_leases_table

BATCH = 200
GROUP = "outbox relay"


class Ticked(DomainEvent):
    counter: str
    count: int


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
    codec = JsonCodec()
    template = _rows(codec)
    _one_relay(report, codec, template)
    _partitioned(report, codec, template)


def _one_relay(report: Report, codec: JsonCodec, template: list[dict[str, Any]]) -> None:
    """One relay in this process, on a SQLite file: to the bus and to RabbitMQ, vs nowhere."""
    from tactical.outbox import EventBusPublisher, OutboxRelay, Publisher

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
        nowhere = relay_through(DropPublisher())
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


# The scaling rows: N events of AGGREGATES aggregates, drained by 1, 2 and 4 relay processes.
SCALING_EVENTS = 3000
AGGREGATES = 1000
PARTITIONS = 16
COUNTS = (1, 2, 4)
SCALING_ROUNDS = 4
# The first drain of each count and destination (connections, caches) is this small, untimed.
WARM_UP_EVENTS = 200
# Long enough that no lease lapses between two drains of the same relays.
LEASE_TTL = 300.0
SCALING_BATCH = 100
_DESTINATIONS = {"nowhere": "nowhere", "redis": "Redis Streams", "rabbitmq": "RabbitMQ"}


def _scaling_name(count: int, destination: str) -> str:
    return (
        f"{SCALING_EVENTS} events, {PARTITIONS} partitions, {count} relay processes, "
        f"to {_DESTINATIONS[destination]}"
    )


def _partitioned(report: Report, codec: JsonCodec, template: list[dict[str, Any]]) -> None:
    """1, 2 and 4 partitioned relay processes draining a prefilled PostgreSQL outbox."""
    destinations = ["nowhere"]
    for destination, port in (("redis", 6379), ("rabbitmq", 5672)):
        if _listening(port):
            destinations.append(destination)
        else:
            names = [_scaling_name(k, destination) for k in COUNTS[1:]]
            unreachable = f"{destination} not reachable on 127.0.0.1:{port}"
            report.skip(GROUP, names, _sql.POSTGRES, unreachable, against="1 relay process")
    problem = _sql.postgres_reachable()
    if problem is not None:
        names = [_scaling_name(k, d) for d in destinations for k in COUNTS[1:]]
        report.skip(GROUP, names, _sql.POSTGRES, problem, against="1 relay process")
        return
    rows = _outbox_rows(codec, template)
    target = f"tactical-bench-relay-{uuid4().hex[:8]}"
    load = os.getloadavg()
    with ExitStack() as stack:
        relays = {k: _Relays(k, target, stack) for k in COUNTS}
        for relay in relays.values():
            relay.wait_ready()
        for destination in destinations:
            _scale(report, destination, target, relays, rows)
        shares = {k: relays[k].largest_share(rows) for k in COUNTS}
    report.note(
        "relay processes: the busiest relay's partitions held "
        + ", ".join(f"{shares[k]:.1%} of the events with {k}" for k in COUNTS)
        + " (the best ratios those allow: "
        + ", ".join(f"{shares[k] / shares[1]:.2f}x" for k in COUNTS[1:])
        + f"); load average {load[0]:.1f} before these rows, {os.getloadavg()[0]:.1f} after, "
        f"on {_processes.CORES} cores"
    )


def _outbox_rows(codec: JsonCodec, template: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from tactical.outbox import partition_key

    rows: list[dict[str, Any]] = []
    for n in range(SCALING_EVENTS):
        aggregate = f"counter-{n % AGGREGATES}"
        rows.append(
            template[n % len(template)]
            | {
                "aggregate_id": aggregate,
                "aggregate_version": n // AGGREGATES + 1,
                "partition_key": partition_key("bench.Counter", aggregate),
            }
        )
    return rows


class _Relays:
    """k relay processes on an outbox of their own (a PostgreSQL schema), kept for the run."""

    def __init__(self, count: int, target: str, stack: ExitStack) -> None:
        self.count = count
        self.application = f"tactical-bench-relay-{os.getpid()}-{count}-"
        schema = stack.enter_context(_sql.postgres_schema(f"{_sql.POSTGRES_SCHEMA}_relay{count}"))
        self.engine = sa.create_engine(
            _sql.POSTGRES_URL,
            connect_args={
                "connect_timeout": 3,
                "options": f"-csearch_path={schema} {_sql.POSTGRES_OPTIONS}",
            },
        )
        stack.callback(self.engine.dispose)
        create_schema(self.engine)
        self.names = [f"bench-relay-{count}-{i}" for i in range(count)]
        self.workers = [
            _processes.spawn(
                "benchmarks._relay_worker",
                json.dumps(
                    {
                        "url": _sql.POSTGRES_URL,
                        "schema": schema,
                        "options": _sql.POSTGRES_OPTIONS,
                        "application": f"{self.application}{i}",
                        "target": target,
                        "partitions": PARTITIONS,
                        "lease_ttl": LEASE_TTL,
                        "relay": name,
                        "batch_size": SCALING_BATCH,
                    }
                ),
            )
            for i, name in enumerate(self.names)
        ]
        stack.callback(_processes.stop, self.workers)

    def wait_ready(self) -> None:
        for worker in self.workers:
            if (line := _processes.reply(worker)) != "ready":
                raise RuntimeError(f"relay worker: expected ready, got {line!r}")

    def owners(self) -> dict[str, set[int]]:
        """Each live lease's owner and partitions."""
        leases = relay_leases_table
        owned: dict[str, set[int]] = {}
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(leases.c.owner, leases.c.partition).where(
                    leases.c.owner.is_not(None), leases.c.expires_at > sa.func.now()
                )
            )
            for owner, partition in rows:
                owned.setdefault(owner, set()).add(partition)
        return owned

    def settle(self) -> dict[str, set[int]]:
        """Batches on the empty outbox until each relay owns its fair share; the shares."""
        share = PARTITIONS // self.count
        owned: dict[str, set[int]] = {}
        for _ in range(20):
            owned = self.owners()
            if set(owned) == set(self.names) and all(len(p) == share for p in owned.values()):
                return owned
            for worker in self.workers:
                _processes.send([worker], "settle")
                _processes.reply(worker)
        raise RuntimeError(f"{self.count} relays did not share {PARTITIONS} partitions: {owned}")

    def drain(
        self, destination: str, rows: list[dict[str, Any]], purge: Callable[[], None]
    ) -> _processes.Drain:
        """Fill the outbox with ``rows``, let the relays drain it, time it from the go."""
        with self.engine.begin() as connection:
            connection.exec_driver_sql("TRUNCATE tactical_outbox")
        owned = self.settle()
        with self.engine.begin() as connection:
            connection.execute(outbox_table.insert(), [r | {"event_id": uuid4()} for r in rows])
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            # As autovacuum would: without statistics the planner probes parked rows
            # through the unpublished index, a scan per row.
            connection.exec_driver_sql("ANALYZE tactical_outbox")
        purge()
        groups = {
            "relays": [w.pid for w in self.workers],
            "their PostgreSQL": _processes.backend_pids(self.engine, self.application),
            "broker": _processes.named_pids("redis-server", "beam.smp"),
        }
        with _processes.Window(groups) as window:
            _processes.send(self.workers, f"go {destination}")
            replies = [_processes.reply(w, timeout=300) for w in self.workers]
        published = sum(int(line.split()[1]) for line in replies)
        with self.engine.connect() as connection:
            left = connection.execute(
                sa.select(sa.func.count()).where(outbox_table.c.published_at.is_(None))
            ).scalar_one()
        if left or published != len(rows):
            raise RuntimeError(
                f"{self.count} relays published {published} of {len(rows)} events, "
                f"{left} left unpublished (partitions {owned})"
            )
        return _processes.Drain(window.wall, window.used, window.machine_cores)

    def largest_share(self, rows: list[dict[str, Any]]) -> float:
        """The largest fraction of ``rows`` one relay's partitions hold."""
        counts = [
            sum(1 for r in rows if r["partition_key"] % PARTITIONS in partitions)
            for partitions in self.owners().values()
        ]
        return max(counts) / len(rows)


def _scale(
    report: Report,
    destination: str,
    target: str,
    relays: dict[int, _Relays],
    rows: list[dict[str, Any]],
) -> None:
    purge, cleanup = _broker(destination, target)
    drains: dict[int, list[_processes.Drain]] = {k: [] for k in COUNTS}
    try:
        for k in COUNTS:
            relays[k].drain(destination, rows[:WARM_UP_EVENTS], purge)
        order = random.Random(f"{GROUP}/relay processes/{destination}")
        for _ in range(SCALING_ROUNDS):
            for k in order.sample(COUNTS, len(COUNTS)):
                drains[k].append(relays[k].drain(destination, rows, purge))
    finally:
        cleanup()
    what = f"relay process(es) to {_DESTINATIONS[destination]}"
    for k in COUNTS:
        report.note(_processes.describe(k, what, drains[k], SCALING_EVENTS))
    report.note(_processes.limit(f"relay processes to {_DESTINATIONS[destination]}", drains))
    for k in COUNTS[1:]:
        name = _scaling_name(k, destination)
        against = "1 relay process"
        report.add(
            _processes.scaling_row(GROUP, name, against, drains[k], drains[1], SCALING_EVENTS)
        )


def _broker(destination: str, target: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """What empties the destination between drains, and what removes it at the end."""
    if destination == "redis":
        import redis

        client = redis.Redis(host="127.0.0.1", socket_timeout=5)

        def purge() -> None:
            client.delete(target)

        def cleanup() -> None:
            purge()
            client.close()

        return purge, cleanup
    if destination == "rabbitmq":
        import importlib

        pika: Any = importlib.import_module("pika")
        connection = pika.BlockingConnection(
            pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2F")
        )
        channel = connection.channel()
        # A durable queue takes every event, as a consumer's would (persistent: to disk).
        channel.exchange_declare(exchange=target, exchange_type="topic", durable=True)
        channel.queue_declare(queue=target, durable=True)
        channel.queue_bind(queue=target, exchange=target, routing_key="#")

        def purge() -> None:
            channel.queue_purge(queue=target)

        def cleanup() -> None:
            channel.queue_delete(queue=target)
            channel.exchange_delete(exchange=target)
            connection.close()

        return purge, cleanup
    return (lambda: None), (lambda: None)


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
