"""EventBusPublisher: relays outbox messages to an in-process EventBus."""

from __future__ import annotations

from collections.abc import Sequence

from tactical._bus import EventBus
from tactical._codec import DeserializationError, JsonCodec
from tactical._model import DomainEvent
from tactical._tracing import Trace, recorded_traces
from tactical.outbox._message import MessagingDestination, OutboxMessage, UndeliverableError

__all__ = ["EVENT_BUS_SYSTEM", "EventBusPublisher"]

EVENT_BUS_SYSTEM = "tactical_event_bus"
"""``messaging.system`` of an in-process event bus (no broker; not a well-known value)."""


class EventBusPublisher:
    """A :class:`Publisher` that decodes each message and publishes it on an :class:`~tactical.EventBus`.

    For a process that runs the relay and its subscribers together, or for tests. Events
    are decoded with ``codec`` (upcasting old schema versions) and published in order;
    ``publish`` returns once every handler ran. Handlers run in the message's trace, so
    the events they record carry its correlation id and its id as causation.

    A message that cannot be decoded (an unknown type name, a payload that does not fit the
    event class) makes ``publish`` raise :class:`UndeliverableError` naming it, before any
    handler ran: the relay parks it (register the type, or fix the row, then retry it).
    A failing handler makes ``publish`` raise :class:`~tactical.EventHandlerError` after
    every handler received every event of the batch. That parks nothing: the bus cannot
    tell a bug from a database that is down, so the relay marks nothing and sends the
    batch again later: handlers see a message at least once and must tolerate
    duplicates, and one that keeps failing holds the relay back (use an
    :class:`InboxConsumer` behind a broker to park such messages instead).

    Args:
        bus: The bus to publish on.
        codec: The codec the outbox was written with (register the same type names).

    .. versionadded:: 0.1.0
    """

    def __init__(self, bus: EventBus, codec: JsonCodec) -> None:
        self._bus = bus
        self._codec = codec

    def messaging_destination(self, message: OutboxMessage, /) -> MessagingDestination:
        """Where ``message`` goes, for the relay's OpenTelemetry spans: ``tactical_event_bus``.

        An in-process bus has no broker, so the span names a system of tactical's own
        and no destination.

        .. versionadded:: 0.2.0
        """
        del message
        return _BUS

    def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        """Decode ``messages`` and publish them on the bus, in order.

        Raises:
            UndeliverableError: Some messages could not be decoded; names each with its
                :class:`~tactical.DeserializationError` (nothing was published).
            EventHandlerError: Handlers failed (every handler still received every event).
        """
        events: list[DomainEvent] = []
        undecodable: dict[int, str] = {}
        for m in messages:
            try:
                events.append(
                    self._codec.event_from_record(
                        m.event_type,
                        m.event_version,
                        m.payload,
                        context=f"outbox position {m.position}, event_id={m.event_id}",
                    )
                )
            except DeserializationError as error:
                undecodable[m.position] = f"DeserializationError: {error}"
        if undecodable:
            raise UndeliverableError(undecodable)
        traces = {
            m.event_id: Trace(m.correlation_id or m.event_id, m.causation_id) for m in messages
        }
        with recorded_traces(traces):
            self._bus.publish_all(events)


_BUS = MessagingDestination(EVENT_BUS_SYSTEM)
