"""Fixtures for the real RabbitMQ and Redis on loopback: unique names per test, cleaned up."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import pika
import pytest
import redis
import redis.asyncio as redis_async
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from tests.conftest import require_server
from tests.outbox.sides import AsyncSide, Side

import sqlalchemy as sa
from tactical.outbox import InboxConsumer, OutboxMessage, Publisher
from tactical.outbox.rabbitmq import AsyncRabbitMQPublisher, RabbitMQConsumer, RabbitMQPublisher
from tactical.outbox.redis_streams import (
    AsyncRedisStreamPublisher,
    RedisStreamConsumer,
    RedisStreamPublisher,
)

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
NO_RETRY = Retry(NoBackoff(), 0)
NO_ASYNC_RETRY = AsyncRetry(NoBackoff(), 0)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers: a hung server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


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


class TcpProxy:
    """A loopback TCP forwarder to a real server, to cut the network under a client.

    ``drop()`` closes every open connection (a network failure or a broker restart, as
    the client sees it); ``stop()`` also stops listening (the broker is down: connection
    refused) and ``start()`` listens again on the same port. ``pause()`` holds every byte
    in both directions, connections staying open (a broker or network that hangs), until
    ``resume()``. ``silence()`` is a fail-over: every connection open now stops forwarding for
    good (what arrives is dropped, the sockets stay open and the kernel keeps acknowledging),
    while connections made afterwards work; it returns the number of connections silenced.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        # Bound now and kept until start() listens on it: a port picked, released and bound
        # again later could be taken in between (by another xdist worker, say).
        self._reserved: socket.socket | None = socket.socket()
        self._reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._reserved.bind(("127.0.0.1", 0))
        self.port = int(self._reserved.getsockname()[1])
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._flowing = threading.Event()
        self._flowing.set()
        self._silences: list[threading.Event] = []

    def start(self) -> TcpProxy:
        listener, self._reserved = self._reserved, None
        if listener is None:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            silenced = threading.Event()
            with self._lock:
                self._sockets += [client, server]
                self._silences.append(silenced)
            for source, target in ((client, server), (server, client)):
                pump = threading.Thread(
                    target=self._pump,
                    args=(source, target, silenced),
                    daemon=True,
                    name="tcp-proxy-pump",
                )
                pump.start()
                self._threads.append(pump)

    def _pump(
        self, source: socket.socket, target: socket.socket, silenced: threading.Event
    ) -> None:
        try:
            while data := source.recv(65536):
                if silenced.is_set():
                    continue
                self._flowing.wait()
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def open_connections(self) -> int:
        """How many connections are still forwarded (neither end closed its side)."""
        with self._lock:
            threads = list(self._threads)
        return sum(t.is_alive() for t in threads if t.name == "tcp-proxy-pump") // 2

    def pause(self) -> None:
        """Stop forwarding (what arrives is held, not lost), keeping connections open."""
        self._flowing.clear()

    def silence(self) -> int:
        """Stop forwarding on every connection open now, for good; new ones work normally."""
        with self._lock:
            silences, self._silences = self._silences, []
        for silenced in silences:
            silenced.set()
        return len(silences)

    def resume(self) -> None:
        """Forward again, starting with what was held."""
        self._flowing.set()

    def drop(self) -> None:
        """Cut every open connection."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
            self._silences = []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def stop(self) -> None:
        """Stop listening and cut every open connection."""
        self._flowing.set()
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        self.drop()
        for thread in self._threads:
            thread.join(2)
        self._threads = []


@pytest.fixture
def rabbit_proxy() -> Iterator[TcpProxy]:
    """A TCP proxy in front of the real RabbitMQ, stopped after the test."""
    require_server("RabbitMQ", 5672)
    proxy = TcpProxy(5672).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    """A TCP proxy in front of the real Redis, stopped after the test."""
    require_server("Redis", 6379)
    proxy = TcpProxy(6379).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def postgres_proxy(postgres_engine: sa.Engine) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the real PostgreSQL (its tables emptied), stopped after the test."""
    proxy = TcpProxy(5432).start()
    yield proxy
    proxy.stop()


@dataclass
class Broker:
    """One real broker behind a uniform face, for the proofs that hold for every broker."""

    name: str
    port: int
    make_publisher: Callable[[int, float], Publisher]
    make_async_publisher: Callable[[int, float, AsyncSide], Any]
    consumer: Callable[[InboxConsumer[Any]], Callable[[], int]]
    read_all: Callable[[], list[OutboxMessage]]
    unacknowledged: Callable[[str], int]
    closers: list[Callable[[], object]]

    def publisher(self, port: int, *, timeout: float = 2.0, side: Side | None = None) -> Any:
        """A new publisher to the broker on ``port`` (the real one, or a proxy's).

        The sync one, or with an async ``side`` the async one (closed when the side closes).
        """
        if isinstance(side, AsyncSide):
            return self.make_async_publisher(port, timeout, side)
        return self.make_publisher(port, timeout)

    def close(self) -> None:
        for close in self.closers:
            close()

    def url_port(self, proxy: TcpProxy | None) -> int:
        return self.port if proxy is None else proxy.port


def rabbit_publisher(side: Side, exchange: str, url: str = AMQP_URL, **options: Any) -> Any:
    """The side's RabbitMQ publisher (closed with the side)."""
    kind = AsyncRabbitMQPublisher if isinstance(side, AsyncSide) else RabbitMQPublisher
    made = kind(url, exchange=exchange, **options)
    side.on_close(made.close)
    return made


def rabbit_broker(rabbit: Rabbit) -> Broker:
    """The real RabbitMQ, publishing to ``rabbit``'s exchange and reading its queue."""
    closers: list[Callable[[], object]] = []

    def publisher(port: int, timeout: float) -> Publisher:
        url = f"amqp://guest:guest@127.0.0.1:{port}/%2F"
        made = RabbitMQPublisher(url, exchange=rabbit.exchange, timeout=timeout)
        closers.append(made.close)
        return made

    def async_publisher(port: int, timeout: float, side: AsyncSide) -> AsyncRabbitMQPublisher:
        url = f"amqp://guest:guest@127.0.0.1:{port}/%2F"
        made = AsyncRabbitMQPublisher(url, exchange=rabbit.exchange, timeout=timeout)
        side.on_close(made.close)
        return made

    def consumer(inbox: InboxConsumer[Any]) -> Callable[[], int]:
        loop = RabbitMQConsumer(inbox, AMQP_URL, queue=rabbit.queue, exchange=rabbit.exchange)

        def consume() -> int:
            try:
                return loop.consume_available(idle_timeout=0.3)
            finally:
                loop.close()

        return consume

    def read_all() -> list[OutboxMessage]:
        messages: list[OutboxMessage] = []
        for method, properties, body in rabbit.channel.consume(
            rabbit.queue, auto_ack=True, inactivity_timeout=0.3
        ):
            if method is None:
                break
            messages.append(OutboxMessage.from_wire(body, properties.headers))
        rabbit.channel.cancel()
        return messages

    def unacknowledged(consumer_name: str) -> int:
        return len(read_all())

    return Broker(
        "rabbitmq", 5672, publisher, async_publisher, consumer, read_all, unacknowledged, closers
    )


def redis_broker(client: redis.Redis, stream: str) -> Broker:
    """The real Redis, appending to and reading ``stream``."""
    closers: list[Callable[[], object]] = []

    def options(port: int, timeout: float) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": port,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        }

    def publisher(port: int, timeout: float) -> Publisher:
        target = redis.Redis(**options(port, timeout), retry=NO_RETRY)
        closers.append(target.close)
        return RedisStreamPublisher(target, stream)

    def async_publisher(port: int, timeout: float, side: AsyncSide) -> AsyncRedisStreamPublisher:
        target = redis_async.Redis(**options(port, timeout), retry=NO_ASYNC_RETRY)
        side.on_close(target.aclose)
        return AsyncRedisStreamPublisher(target, stream)

    def consumer(inbox: InboxConsumer[Any]) -> Callable[[], int]:
        return RedisStreamConsumer(inbox, client, stream=stream).consume_available

    def read_all() -> list[OutboxMessage]:
        return [
            OutboxMessage.from_wire(fields[b"body"], json.loads(fields[b"headers"]))
            for _, fields in client.xrange(stream)
        ]

    def unacknowledged(group: str) -> int:
        (info,) = (g for g in client.xinfo_groups(stream) if g["name"].decode() == group)
        return int(info["pending"]) + int(info["lag"] or 0)

    return Broker(
        "redis", 6379, publisher, async_publisher, consumer, read_all, unacknowledged, closers
    )


@pytest.fixture(
    params=[
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """Each proof that takes ``broker`` runs against the real RabbitMQ and the real Redis."""
    if request.param == "rabbitmq":
        made = rabbit_broker(request.getfixturevalue("rabbit"))
    else:
        made = redis_broker(
            request.getfixturevalue("redis_client"), request.getfixturevalue("stream_name")
        )
    yield made
    made.close()


@pytest.fixture
def broker_proxy(broker: Broker) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the broker under test, stopped after the test."""
    proxy = TcpProxy(broker.port).start()
    yield proxy
    proxy.stop()
