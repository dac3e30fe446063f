"""The message a relay publishes: one outbox row, with its wire form (body and headers)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast
from uuid import UUID

from tactical._backoff import backoff_bound

__all__ = [
    "HEADER_NAMES",
    "AsyncPublisher",
    "MessagingDestination",
    "OutboxMessage",
    "PublishError",
    "Publisher",
    "UndeliverableError",
]

HEADER_NAMES: tuple[str, ...] = (
    "type",
    "version",
    "event_id",
    "position",
    "aggregate_type",
    "aggregate_id",
    "aggregate_version",
    "occurred_at",
    "correlation_id",
    "causation_id",
    "traceparent",
    "tracestate",
)
"""The header names of a message on the wire, in order (values are strings).

.. versionchanged:: 0.2.0
   ``traceparent`` and ``tracestate``: the W3C trace context of the commit (see
   :attr:`OutboxMessage.traceparent`).
"""


class PublishError(RuntimeError):
    """A publisher could not get every message of a batch confirmed by its broker.

    None of the batch is marked published: the relay sends it again later (so some of its
    messages may be delivered twice; consumers deduplicate by event id).

    .. versionadded:: 0.1.0
    """


class UndeliverableError(PublishError):
    """Some messages of a batch can never be sent, however often they are tried again.

    What a publisher raises for a failure that belongs to particular messages and will not
    pass with time: a payload that cannot be encoded into a body (a lone surrogate), a
    routing key or type name the broker's protocol cannot carry (over 255 UTF-8 bytes in
    AMQP), an event type the in-process bus cannot decode. :class:`OutboxRelay` parks the
    named messages (their outbox rows keep the reason, see :meth:`OutboxRelay.parked`),
    holds back the later messages of their aggregates, and publishes the rest of the batch.

    A publisher raises it before sending any message that follows a named one in the batch,
    so that no later event of a parked message's aggregate gets out ahead of it; messages
    before the first named one may have been sent (the relay sends them again: at least
    once). A failure that is not the messages' own (the broker is down, a timeout, a lost
    connection) is a plain :class:`PublishError`: the relay parks nothing and retries.

    Args:
        reasons: Why each message cannot be sent, by outbox position.

    Attributes:
        reasons: Why each message cannot be sent, by outbox position.

    .. versionadded:: 0.2.0
    """

    def __init__(self, reasons: Mapping[int, str]) -> None:
        self.reasons: dict[int, str] = dict(reasons)
        shown = "; ".join(
            f"outbox position {position}: {reason}" for position, reason in self.reasons.items()
        )
        super().__init__(f"{len(self.reasons)} message(s) can never be published: {shown}")


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One committed domain event as read from the outbox, ready to cross a process boundary.

    The wire form is :attr:`body` (the event's JSON payload, as stored in the outbox) and
    :attr:`headers` (type name, schema version, event id, aggregate, position, time and
    tracing ids, all as strings); :meth:`from_wire` reads it back on the consumer side.

    Attributes:
        position: The outbox position (increasing in commit order per aggregate).
        event_id: The event's unique id: consumers deduplicate on it.
        event_type: The codec's type name of the event.
        event_version: The schema version of ``payload``.
        aggregate_type: The codec's type name of the aggregate that recorded the event.
        aggregate_id: The aggregate's id, as text.
        aggregate_version: The aggregate's version after the change that recorded the event.
        payload: The event's fields as JSON (what ``JsonCodec.event_to_record`` produced).
        occurred_at: When the event happened (timezone-aware).
        correlation_id: The id shared by every event of one flow: the first event's own id.
            None only for rows written before the outbox had this column.
        causation_id: The id of the event whose handling recorded this one; None for an
            event recorded outside any event handler.
        traceparent: The W3C ``traceparent`` of the commit that recorded the event, when
            an OpenTelemetry SDK traced it (see :doc:`/how-to/observability`); None
            otherwise. Sent as the ``traceparent`` header, so a consumer continues the trace.
        tracestate: The W3C ``tracestate`` that goes with :attr:`traceparent`, if any.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``traceparent`` and ``tracestate``.
    """

    position: int
    event_id: UUID
    event_type: str
    event_version: int
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    payload: dict[str, Any]
    occurred_at: datetime
    correlation_id: UUID | None = None
    causation_id: UUID | None = None
    traceparent: str | None = None
    tracestate: str | None = None

    @property
    def body(self) -> bytes:
        """The payload as compact UTF-8 JSON (the same JSON document as the outbox row)."""
        return json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def headers(self) -> dict[str, str]:
        """Type, version, event id, position, aggregate, time and tracing ids, as strings.

        ``correlation_id``, ``causation_id``, ``traceparent`` and ``tracestate`` are left
        out when they are None.
        """
        headers = {
            "type": self.event_type,
            "version": str(self.event_version),
            "event_id": str(self.event_id),
            "position": str(self.position),
            "aggregate_type": self.aggregate_type,
            "aggregate_id": self.aggregate_id,
            "aggregate_version": str(self.aggregate_version),
            "occurred_at": self.occurred_at.isoformat(),
        }
        if self.correlation_id is not None:
            headers["correlation_id"] = str(self.correlation_id)
        if self.causation_id is not None:
            headers["causation_id"] = str(self.causation_id)
        if self.traceparent is not None:
            headers["traceparent"] = self.traceparent
            if self.tracestate is not None:
                headers["tracestate"] = self.tracestate
        return headers

    @classmethod
    def from_wire(cls, body: bytes | str, headers: Mapping[str, object]) -> OutboxMessage:
        """Rebuild a message from the :attr:`body` and :attr:`headers` a broker delivered.

        Header values may be strings, bytes or (for numbers) ints, as brokers return them.
        Whatever arrives (a foreign message, a body nested deeper than the recursion limit,
        headers that are not a mapping), the only error is ``ValueError``, so a consumer can
        tell a malformed message from a failure of its own.

        Raises:
            ValueError: ``headers`` is not a mapping, a required header is missing or
                malformed, or the body is not a UTF-8 JSON object; the message names the
                header or the event id.
        """
        try:
            text = _header_text(headers)
        except (TypeError, ValueError, RecursionError) as error:
            raise ValueError(f"malformed tactical message: {_reason(error)}") from None
        try:
            event_id = UUID(_required(text, "event_id"))
            payload: object = json.loads(body)
            if not isinstance(payload, dict):
                raise ValueError(f"body of event {event_id} is not a JSON object")
            return cls(
                position=int(_required(text, "position")),
                event_id=event_id,
                event_type=_required(text, "type"),
                event_version=int(_required(text, "version")),
                aggregate_type=_required(text, "aggregate_type"),
                aggregate_id=_required(text, "aggregate_id"),
                aggregate_version=int(_required(text, "aggregate_version")),
                payload=cast("dict[str, Any]", payload),
                occurred_at=datetime.fromisoformat(_required(text, "occurred_at")),
                correlation_id=_optional_uuid(text, "correlation_id"),
                causation_id=_optional_uuid(text, "causation_id"),
                traceparent=text.get("traceparent"),
                tracestate=text.get("tracestate"),
            )
        except (TypeError, ValueError, RecursionError) as error:
            # RecursionError: json.loads of a body nested deeper than the recursion limit;
            # TypeError: a body that is neither text nor bytes.
            raise ValueError(f"malformed tactical message {text!r}: {_reason(error)}") from None


def _header_text(headers: object) -> dict[str, str]:
    """The known headers of ``headers`` as text; ``TypeError`` if it is not a mapping."""
    if not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping, got {type(headers).__name__}")
    known = cast("Mapping[object, object]", headers)
    text: dict[str, str] = {}
    for name in HEADER_NAMES:
        value = known.get(name)
        if value is None:
            continue
        if isinstance(value, bytes):
            text[name] = value.decode()
        elif isinstance(value, str | int) and not isinstance(value, bool):
            text[name] = str(value)
        else:
            raise TypeError(f"header {name!r} is a {type(value).__name__}, not text")
    return text


def _reason(error: BaseException) -> str:
    if isinstance(error, RecursionError):
        return "nested deeper than the recursion limit"
    return str(error)


def _required(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise ValueError(f"header {name!r} is missing")
    return value


def _optional_uuid(headers: Mapping[str, str], name: str) -> UUID | None:
    value = headers.get(name)
    return None if value is None else UUID(value)


def stored_trace_context(stored: str | None) -> dict[str, str]:
    """``traceparent`` and ``tracestate`` of an outbox row's ``trace_context``, those present.

    The column holds what the unit of work wrote (a JSON object); anything else in it is
    ignored rather than allowed to stop the row from being published.
    """
    if stored is None:
        return {}
    try:
        carrier: object = json.loads(stored)
    except ValueError:
        return {}
    if not isinstance(carrier, dict):
        return {}
    known = cast("dict[str, object]", carrier)
    return {
        name: value
        for name in ("traceparent", "tracestate")
        if isinstance(value := known.get(name), str)
    }


@dataclass(frozen=True, slots=True)
class MessagingDestination:
    """Where a publisher sends a message, in the terms of OpenTelemetry's messaging spans.

    A publisher (sync or async) may have a method
    ``messaging_destination(self, message: OutboxMessage, /) -> MessagingDestination``;
    the relay then calls it for each message of a batch, only while an OpenTelemetry SDK
    is configured, and its ``publish`` span carries each attribute below on which every
    message of the batch agrees. tactical's RabbitMQ, Redis and event bus publishers have
    it; a publisher without it still works, its spans say nothing of the broker.

    Attributes:
        system: ``messaging.system``: ``rabbitmq``, ``redis``, ``kafka``... (the
            conventions' well-known value when there is one).
        name: ``messaging.destination.name``: the queue, topic or stream, as the
            conventions for the system spell it (RabbitMQ: ``<exchange>:<routing key>``).
        routing_key: ``messaging.rabbitmq.destination.routing_key`` (RabbitMQ only).
        partition: ``messaging.destination.partition.id``: the partition the message goes
            to, for a partitioned publisher.
        server_address: ``server.address``: the broker's host name or address.
        server_port: ``server.port``: the broker's port.

    .. versionadded:: 0.2.0
    """

    system: str
    name: str | None = None
    routing_key: str | None = None
    partition: int | None = None
    server_address: str | None = None
    server_port: int | None = None


class Publisher(Protocol):
    """Sends outbox messages to a broker (or anywhere else) for :class:`OutboxRelay`.

    Only :meth:`publish` is required. A publisher may also say where each message goes,
    for the relay's OpenTelemetry spans: see :class:`MessagingDestination`.

    .. versionadded:: 0.1.0
    """

    def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        """Send ``messages`` in order; return only once the broker confirmed every one.

        Raises:
            UndeliverableError: Some messages can never be sent (their own fault, not the
                broker's state); nothing after the first of them was sent. The relay
                parks them and publishes the others.
            Exception: Any other failure (:class:`PublishError` by convention) is taken as
                transient: the relay marks none of the batch published, parks nothing and
                sends it again later.
        """
        ...


class AsyncPublisher(Protocol):
    """Sends outbox messages to a broker for :class:`AsyncOutboxRelay`: :class:`Publisher`, awaited.

    .. versionadded:: 0.2.0
    """

    async def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        """Send ``messages`` in order; return only once the broker confirmed every one.

        Raises:
            UndeliverableError: Some messages can never be sent; nothing after the first of
                them was sent. The relay parks them and publishes the others.
            Exception: Any other failure is taken as transient: the relay marks none of
                the batch published and sends it again later.
        """
        ...


_Wire = TypeVar("_Wire")


def wire_forms(
    messages: Sequence[OutboxMessage], encode: Callable[[OutboxMessage], _Wire]
) -> list[_Wire]:
    """``encode`` every message before anything is sent, or refuse those it fails for.

    Encoding is local and deterministic, so a message it fails for will fail every time.

    Raises:
        UndeliverableError: ``encode`` raised for some messages; names each with its error.
    """
    encoded: list[_Wire] = []
    reasons: dict[int, str] = {}
    for message in messages:
        try:
            encoded.append(encode(message))
        except Exception as error:  # any local encoding failure is the message's
            reasons[message.position] = (
                f"event {message.event_id} ({message.event_type[:80]!r}) cannot be encoded: "
                f"{type(error).__name__}: {str(error)[:200]}"
            )
    if reasons:
        raise UndeliverableError(reasons)
    return encoded


def backoff_delay(failures: int, initial: float, maximum: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures: doubling, bounded, jittered.

    The bound starts at ``initial`` and doubles per failure up to ``maximum``; the delay is
    a random point in its upper half, so that loops failing together spread out.
    """
    return backoff_bound(failures, initial, maximum) * random.uniform(0.5, 1.0)  # noqa: S311  (jitter, not security)
