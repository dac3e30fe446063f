"""The relay's and the consumers' spans and metrics (OpenTelemetry, when an SDK is configured).

Hooks called from the sans-IO flows (:mod:`tactical.outbox._relay_flow`,
:mod:`tactical.outbox._inbox_flow`), so that the sync and the async relay and consumers are
instrumented once. Without an SDK each hook is a lookup and a ``None`` test (see
:mod:`tactical._telemetry`). Span and attribute names follow the OpenTelemetry messaging
semantic conventions where they apply (``messaging.operation.type``,
``messaging.message.id``, ``messaging.batch.message_count``, ...); the rest are
``tactical.*``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar, Token
from typing import Any

import sqlalchemy as sa
from tactical._telemetry import (
    NOOP,
    Activation,
    Inactive,
    carrier_context,
    meter,
    span_link,
    tracer,
)
from tactical.outbox._message import MessagingDestination, OutboxMessage
from tactical.sqlalchemy._schema import outbox_table

__all__ = [
    "DestinationOf",
    "backlog_statement",
    "consuming",
    "count_inbox_parked",
    "count_inbox_retry",
    "count_relay_parked",
    "delivered",
    "destination_of",
    "firing_timers",
    "publishing",
    "record_backlog",
    "record_consumer_partitions",
    "record_owned_partitions",
]

_log = logging.getLogger("tactical.outbox")

DestinationOf = Callable[[OutboxMessage], MessagingDestination]
"""A publisher's ``messaging_destination`` method."""

# The meter the instruments were made for, held (so it stays the meter it is), and its
# instruments by name: what meter() returns changes only when the provider does. Keyed by
# id(meter) before, the cache outlived the meters: a new meter allocated where a dead one
# had been was handed the dead meter's instruments, and what it counted reached no reader.
_instruments: tuple[Any, dict[str, Any]] = (None, {})


def _instrument(found: Any, name: str) -> Any:
    """The instrument ``name`` of meter ``found``, made on first use."""
    global _instruments  # one tuple swapped whole: a reader sees the old or the new pair
    owner, made = _instruments
    if owner is not found:
        owner, made = _instruments = (found, {})
    instrument = made.get(name)
    if instrument is None:
        kind, unit, description = _INSTRUMENTS[name]
        instrument = made[name] = getattr(found, f"create_{kind}")(
            name, unit=unit, description=description
        )
    return instrument


_INSTRUMENTS: dict[str, tuple[str, str, str]] = {
    "tactical.outbox.backlog": (
        "gauge",
        "{message}",
        "Outbox rows not yet published nor parked, after the relay's last batch.",
    ),
    "tactical.outbox.lag": (
        "gauge",
        "s",
        "Age of the oldest outbox row not yet published nor parked (0 when none).",
    ),
    "tactical.outbox.publish.duration": (
        "histogram",
        "s",
        "Time the publisher took to get a batch confirmed (or to fail).",
    ),
    "tactical.outbox.published": ("counter", "{message}", "Messages the relay published."),
    "tactical.outbox.parked": ("counter", "{message}", "Outbox rows the relay parked."),
    "tactical.inbox.handle.duration": (
        "histogram",
        "s",
        "Time a consumer took to handle a message, retries included.",
    ),
    "tactical.inbox.retries": ("counter", "{attempt}", "Attempts a consumer is trying again."),
    "tactical.inbox.parked": ("counter", "{message}", "Messages a consumer parked."),
    "tactical.relay.partition.owned": (
        "gauge",
        "{partition}",
        "1 for each outbox partition a partitioned relay owns after its last committed batch, "
        "0 for the others.",
    ),
    "tactical.consumer.partition.owned": (
        "gauge",
        "{partition}",
        "1 for each broker partition a partitioned consumer owns (Redis: holds the lease of; "
        "RabbitMQ: received deliveries from since it subscribed), 0 for the others.",
    ),
    "tactical.timer.fired": ("counter", "{message}", "Timers a timer worker fired."),
}


def destination_of(publisher: object) -> DestinationOf | None:
    """The publisher's ``messaging_destination`` method, if it has one."""
    found: object = getattr(publisher, "messaging_destination", None)
    return found if callable(found) else None  # pyright: ignore[reportReturnType]


def _server(address: str | None, port: int | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if address is not None:
        attributes["server.address"] = address
    if port is not None:
        attributes["server.port"] = port
    return attributes


def destination_attributes(destination: MessagingDestination) -> dict[str, Any]:
    """The span attributes (messaging semantic conventions) that ``destination`` stands for."""
    attributes: dict[str, Any] = {"messaging.system": destination.system}
    if destination.name is not None:
        attributes["messaging.destination.name"] = destination.name
    if destination.routing_key:
        attributes["messaging.rabbitmq.destination.routing_key"] = destination.routing_key
    if destination.partition is not None:
        attributes["messaging.destination.partition.id"] = str(destination.partition)
    attributes.update(_server(destination.server_address, destination.server_port))
    return attributes


def _batch_destination(
    messages: Sequence[OutboxMessage], destination: DestinationOf
) -> dict[str, Any]:
    """The destination attributes every message of the batch shares (the conventions' rule)."""
    try:
        each = [set(destination_attributes(destination(m)).items()) for m in messages]
    except Exception:  # the publisher's own method: a bug there must not stop the relay
        _log.warning(
            "the publisher's messaging_destination failed: its publish span says nothing of "
            "the broker",
            exc_info=True,
        )
        return {}
    return dict(each[0].intersection(*each[1:])) if each else {}


def _message_attributes(message: OutboxMessage) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.message.id": str(message.event_id),
        "tactical.event.type": message.event_type,
        "tactical.event.id": str(message.event_id),
        "tactical.aggregate.type": message.aggregate_type,
        "tactical.aggregate.id": message.aggregate_id,
        "tactical.outbox.position": message.position,
    }
    if message.correlation_id is not None:
        attributes["messaging.message.conversation_id"] = str(message.correlation_id)
        attributes["tactical.correlation_id"] = str(message.correlation_id)
    if message.causation_id is not None:
        attributes["tactical.causation_id"] = str(message.causation_id)
    return attributes


class _Publishing(Activation):
    """The relay's ``publish`` span of a batch, and its duration and count metrics."""

    __slots__ = ("_count", "_meter", "_started")

    def __init__(
        self,
        found: Any,
        metered: Any,
        messages: Sequence[OutboxMessage],
        destination: DestinationOf | None,
    ) -> None:
        contexts = {(m.traceparent, m.tracestate) for m in messages if m.traceparent is not None}
        links = [link for c in contexts if (link := span_link(*c)) is not None]
        attributes: dict[str, Any] = {
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.batch.message_count": len(messages),
        }
        if found is not None and destination is not None:
            attributes.update(_batch_destination(messages, destination))
        if len(messages) == 1:
            attributes.update(_message_attributes(messages[0]))
        super().__init__(
            found,
            "publish",
            attributes,
            kind="PRODUCER",
            # One commit's events (the usual batch): the publish joins its trace.
            parent=carrier_context(*next(iter(contexts))) if len(contexts) == 1 else None,
            links=links,
        )
        self._meter = metered
        self._count = len(messages)

    def __enter__(self) -> Any:
        self._started = time.perf_counter()
        return None if self._tracer is None else super().__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Any
    ) -> None:
        elapsed = time.perf_counter() - self._started
        if self._meter is not None:
            attributes = {} if error is None else {"error.type": type(error).__qualname__}
            _instrument(self._meter, "tactical.outbox.publish.duration").record(elapsed, attributes)
            if error is None:
                _instrument(self._meter, "tactical.outbox.published").add(self._count)
        if self._tracer is not None:
            super().__exit__(kind, error, tb)


def publishing(
    messages: Sequence[OutboxMessage], destination: DestinationOf | None = None
) -> Activation | Inactive:
    """The block around a relay's publish of ``messages`` (``destination``: the publisher's)."""
    found, metered = tracer(), meter()
    if found is None and metered is None:
        return NOOP
    return _Publishing(found, metered, messages, destination)


def count_relay_parked(count: int) -> None:
    """The relay parked ``count`` rows."""
    metered = meter()
    if metered is not None and count:
        _instrument(metered, "tactical.outbox.parked").add(count)


def backlog_statement() -> sa.Select[int, Any] | None:
    """The query of the backlog and the oldest unpublished time, when metrics are on."""
    if meter() is None:
        return None
    t = outbox_table
    return sa.select(sa.func.count(), sa.func.min(t.c.occurred_at)).where(
        t.c.published_at.is_(None), t.c.parked_at.is_(None)
    )


def record_backlog(row: Sequence[Any]) -> None:
    """Record what :func:`backlog_statement` read: how many rows wait, and for how long."""
    metered = meter()
    if metered is None:
        return
    count, oldest = row
    _instrument(metered, "tactical.outbox.backlog").set(count)
    if oldest is not None and oldest.tzinfo is None:  # SQLite: UTC without its offset
        from datetime import UTC

        oldest = oldest.replace(tzinfo=UTC)
    from datetime import UTC, datetime

    lag = 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())
    _instrument(metered, "tactical.outbox.lag").set(lag)


# What a broker consumer says of the delivery it hands to an inbox consumer: the attributes
# of its process span, set around the inbox consumer's handle() (None: not from a broker).
_delivery: ContextVar[dict[str, Any] | None] = ContextVar("tactical_delivery", default=None)


class _Delivered:
    """The block in which a broker consumer's delivery is handled (see :func:`delivered`)."""

    __slots__ = ("_attributes", "_token")

    def __init__(self, attributes: dict[str, Any]) -> None:
        self._attributes = attributes
        self._token: Token[dict[str, Any] | None] | None = None

    def __enter__(self) -> None:
        self._token = _delivery.set(self._attributes)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _delivery.reset(self._token)


def delivered(
    system: str,
    destination: str | Callable[[], str],
    *,
    address: str,
    routing_key: str | None = None,
    partition: int | None = None,
    group: str | None = None,
    delivery_tag: int | None = None,
) -> _Delivered | Inactive:
    """The block around an inbox consumer's ``handle`` of a delivery from a broker.

    Its ``process`` span then names the messaging ``system``, the ``destination`` read
    (RabbitMQ: ``<exchange>:<routing key>:<queue>``; Redis: the stream; or what makes it,
    called only with a tracer), the broker's
    ``address`` (``host:port``), and the routing key, partition, consumer group and
    delivery tag when given. :data:`NOOP` without a tracer: nothing is computed.
    """
    if tracer() is None:
        return NOOP
    host, colon, port = address.rpartition(":")
    attributes = {
        "messaging.system": system,
        "messaging.destination.name": destination
        if isinstance(destination, str)
        else destination(),
        **(_server(host, int(port)) if colon and port.isdigit() else _server(address, None)),
    }
    if routing_key:
        attributes["messaging.rabbitmq.destination.routing_key"] = routing_key
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    if group is not None:
        attributes["messaging.consumer.group.name"] = group
    if delivery_tag is not None:
        attributes["messaging.rabbitmq.message.delivery_tag"] = delivery_tag
    return _Delivered(attributes)


class _Consuming(Activation):
    """A consumer's ``process`` span of a message, continuing its producer's trace."""

    __slots__ = ("_consumer", "_meter", "_outcome", "_started")

    def __init__(self, found: Any, metered: Any, consumer: str, message: OutboxMessage) -> None:
        attributes = _message_attributes(message)
        attributes["messaging.operation.type"] = "process"
        attributes["messaging.operation.name"] = "process"
        attributes["messaging.consumer.group.name"] = consumer
        attributes["tactical.consumer"] = consumer
        source = _delivery.get()
        if source is not None:
            attributes.update(source)
        super().__init__(
            found,
            f"process {message.event_type}",
            attributes,
            kind="CONSUMER",
            parent=carrier_context(message.traceparent, message.tracestate),
        )
        self._meter = metered
        self._consumer = consumer
        self._outcome: str | None = None

    def finish(self, outcome: str) -> None:
        """Note how the message was handled (an :class:`Outcome`'s value)."""
        self._outcome = outcome

    def __enter__(self) -> Any:
        self._started = time.perf_counter()
        return None if self._tracer is None else super().__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Any
    ) -> None:
        elapsed = time.perf_counter() - self._started
        outcome = self._outcome if error is None else "error"
        if self._meter is not None:
            attributes = {"tactical.consumer": self._consumer, "tactical.outcome": str(outcome)}
            _instrument(self._meter, "tactical.inbox.handle.duration").record(elapsed, attributes)
        if self._tracer is not None:
            if self.span is not None and outcome is not None:
                self.span.set_attribute("tactical.outcome", outcome)
            super().__exit__(kind, error, tb)


def consuming(consumer: str, message: OutboxMessage) -> _Consuming | Inactive:
    """The block in which ``consumer`` handles ``message`` (``finish`` it with the outcome)."""
    found, metered = tracer(), meter()
    if found is None and metered is None:
        return NOOP
    return _Consuming(found, metered, consumer, message)


def count_inbox_retry(consumer: str, *, transient: bool) -> None:
    """``consumer`` tries a message again (``transient``: a conflict, not the message's fault)."""
    metered = meter()
    if metered is not None:
        _instrument(metered, "tactical.inbox.retries").add(
            1, {"tactical.consumer": consumer, "tactical.transient": transient}
        )


def count_inbox_parked(consumer: str) -> None:
    """``consumer`` parked a message."""
    metered = meter()
    if metered is not None:
        _instrument(metered, "tactical.inbox.parked").add(1, {"tactical.consumer": consumer})


def record_owned_partitions(relay: str, partitions: int, owned: frozenset[int]) -> None:
    """Record which of the ``partitions`` partitions relay ``relay`` owns (1) or not (0)."""
    metered = meter()
    if metered is None:
        return
    gauge = _instrument(metered, "tactical.relay.partition.owned")
    for partition in range(partitions):
        attributes = {"tactical.relay.name": relay, "tactical.partition": partition}
        gauge.set(1 if partition in owned else 0, attributes)


def record_consumer_partitions(
    system: str, consumer: str, client: str, partitions: int, owned: frozenset[int]
) -> None:
    """Record which of the ``partitions`` broker partitions consumer ``client`` owns (1) or not.

    ``consumer`` is the inbox consumer's name, ``client`` this consumer's own (a Redis
    consumer's name in its group; for RabbitMQ, an id each consumer object makes itself).
    """
    metered = meter()
    if metered is None:
        return
    gauge = _instrument(metered, "tactical.consumer.partition.owned")
    for partition in range(partitions):
        attributes = {
            "messaging.system": system,
            "tactical.consumer": consumer,
            "messaging.client.id": client,
            "tactical.partition": partition,
        }
        gauge.set(1 if partition in owned else 0, attributes)


def firing_timers(keys: Sequence[str]) -> Activation | Inactive:
    """The span of a timer worker's batch firing the timers ``keys`` (their rows point at it)."""
    metered = meter()
    if metered is not None and keys:
        _instrument(metered, "tactical.timer.fired").add(len(keys))
    found = tracer()
    if found is None:
        return NOOP
    return Activation(
        found,
        "fire timers",
        {"tactical.timer.count": len(keys), "tactical.timer.keys": list(keys)},
    )
