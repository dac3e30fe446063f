"""A consuming service in a process of its own, traced by an SDK: prints its spans as JSON.

``python -m tests.outbox.otel_consumer rabbitmq EXCHANGE QUEUE DATABASE`` or
``... redis STREAM - DATABASE``: handles what the broker has (the mirroring handler of
:mod:`tests.outbox.helpers`, committing in DATABASE, a SQLite file), then prints
``{"handled": n, "spans": [...]}`` with each finished span's name, kind, ids and attributes.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import redis
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.outbox.brokers import AMQP_URL
from tests.outbox.helpers import make_consumer

import sqlalchemy as sa
from tactical.outbox.rabbitmq import RabbitMQConsumer
from tactical.outbox.redis_streams import RedisStreamConsumer
from tactical.sqlalchemy import create_schema


def described(span: ReadableSpan) -> dict[str, Any]:
    """What the test checks of a span, as JSON."""
    context, parent = span.get_span_context(), span.parent
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": context.trace_id,
        "span_id": context.span_id,
        "parent_id": None if parent is None else parent.span_id,
        "remote_parent": None if parent is None else parent.is_remote,
        "attributes": dict(span.attributes or {}),
    }


def main(broker: str, destination: str, queue: str, database: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    engine = sa.create_engine(f"sqlite:///{database}")
    create_schema(engine)
    inbox = make_consumer(engine)
    if broker == "rabbitmq":
        consumer = RabbitMQConsumer(inbox, AMQP_URL, queue=queue, exchange=destination)
        try:
            handled = consumer.consume_available(idle_timeout=1.0)
        finally:
            consumer.close()
    else:
        client = redis.Redis(
            host="127.0.0.1", port=6379, socket_timeout=5, socket_connect_timeout=5
        )
        try:
            handled = RedisStreamConsumer(inbox, client, stream=destination).consume_available()
        finally:
            client.close()
    engine.dispose()
    spans = [described(span) for span in exporter.get_finished_spans()]
    print(json.dumps({"handled": handled, "spans": spans}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
