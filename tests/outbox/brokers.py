"""Fixtures for the real RabbitMQ and Redis on loopback: unique names per test, cleaned up."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import pika
import pytest
import redis
from tests.conftest import require_server

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Rabbit:
    """A unique exchange with one queue bound to every routing key, and a channel to read it."""

    exchange: str
    queue: str
    connection: Any
    channel: Any

    def drain(self) -> list[tuple[Any, Any, bytes]]:
        """Every message now in the queue (method, properties, body), acknowledged."""
        received: list[tuple[Any, Any, bytes]] = []
        while True:
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return received
            received.append((method, properties, body))


@pytest.fixture
def rabbit() -> Iterator[Rabbit]:
    """A fresh exchange and bound durable queue on the real RabbitMQ, deleted afterwards."""
    require_server("RabbitMQ", 5672)
    name = f"tactical-test-{uuid4().hex[:12]}"
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.exchange_declare(exchange=name, exchange_type="topic", durable=True)
    channel.queue_declare(queue=name, durable=True)
    channel.queue_bind(queue=name, exchange=name, routing_key="#")
    try:
        yield Rabbit(name, name, connection, channel)
    finally:
        if not channel.is_open:
            channel = connection.channel() if connection.is_open else None
        if channel is None:
            connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
            channel = connection.channel()
        channel.queue_delete(queue=name)
        channel.exchange_delete(exchange=name)
        connection.close()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """A client of the real Redis on loopback."""
    require_server("Redis", 6379)
    client = redis.Redis(host="127.0.0.1", port=6379)
    yield client
    client.close()


@pytest.fixture
def stream_name(redis_client: redis.Redis) -> Iterator[str]:
    """A unique stream key, deleted after the test."""
    name = f"tactical-test-{uuid4().hex[:12]}"
    yield name
    redis_client.delete(name)
