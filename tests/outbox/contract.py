"""The publisher contract: what OutboxRelay relies on from every Publisher, as one test suite.

Subclass :class:`PublisherContract` and provide its ``destination`` fixture, or subclass
:class:`BrokerPublisherContract` and provide ``broker`` for a publisher that reaches a broker
over the network; every test below then runs against that publisher. ``test_publishers.py``
does so for the in-process bus, RabbitMQ and Redis Streams. A broker's contract runs twice,
through the ``side`` fixture: on the sync publisher with :class:`OutboxRelay`, and on the
async publisher with :class:`AsyncOutboxRelay`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from tests.outbox.brokers import Broker, TcpProxy, closed_port
from tests.outbox.helpers import Line, all_positions, commit_ticks, pending_positions
from tests.outbox.sides import Relay, Side, SyncSide

import sqlalchemy as sa
from tactical import JsonCodec
from tactical._flow import Flow
from tactical.outbox import (
    OutboxMessage,
    PublishError,
    UndeliverableError,
)
from tactical.testing import Counter, CounterTicked

codec = JsonCodec()


LONE_SURROGATE = {"note": "bad\ud800"}
"""A payload no broker can carry: its body cannot be encoded as UTF-8."""


@dataclass
class Destination:
    """Where the publisher under test sends messages, and how to see what arrived there.

    Attributes:
        publisher: A publisher to the working destination (sync or async, as ``side``).
        received: Everything that arrived so far, in arrival order (call it once per test:
            reading a queue consumes it).
        arrival: What a message looks like once it arrived (the message itself, for a
            broker: its wire form read back).
        refusing: A publisher to a destination that refuses every batch.
        failure: What ``refusing.publish`` raises.
        spoiled: Outbox columns that make a row one this publisher can never send.
        side: The API the publishers belong to, which sends through them and relays to them.
    """

    publisher: Any
    received: Callable[[], list[object]]
    arrival: Callable[[OutboxMessage], object]
    refusing: Any
    failure: type[Exception] = PublishError
    spoiled: dict[str, object] = field(default_factory=lambda: {"payload": LONE_SURROGATE})
    side: Side = field(default_factory=SyncSide)

    def publish(self, batch: Sequence[OutboxMessage], publisher: Any = None) -> None:
        """Publish ``batch`` through ``publisher`` (the working one if omitted)."""
        self.side.send(self.publisher if publisher is None else publisher, batch)

    def relay(self, engine: sa.Engine, publisher: Any) -> Relay:
        """The side's relay on ``engine``, publishing through ``publisher``."""
        return self.side.relay(engine, publisher)

    def tee(self, publisher: Any = None) -> Tee:
        """A Tee in front of ``publisher`` (the working one if omitted)."""
        return Tee(self.side, self.publisher if publisher is None else publisher)

    def spoil(self, message: OutboxMessage) -> OutboxMessage:
        """``message`` with the spoiled columns: one the publisher can never send."""
        fields = {name: getattr(message, name) for name in OutboxMessage.__slots__}
        return OutboxMessage(**{**fields, **self.spoiled})


class Tee:
    """A publisher that remembers the batches the relay gave it, then passes them on."""

    def __init__(self, side: Side, publisher: Any) -> None:
        self.given: list[OutboxMessage] = []
        self.delivered: list[OutboxMessage] = []
        self.publisher = side.wrap(publisher, self._pass_on)

    def _pass_on(self, messages: Sequence[OutboxMessage]) -> Flow[Sequence[OutboxMessage], None]:
        self.given.extend(messages)
        yield messages
        self.delivered.extend(messages)


def sample_batch(aggregates: int = 3, events_each: int = 2, start: int = 1) -> list[OutboxMessage]:
    """CounterTicked messages of several aggregates, interleaved, from position ``start`` on.

    Every other message is traced as caused by its predecessor, so the optional headers
    travel too.
    """
    counters = [uuid4() for _ in range(aggregates)]
    occurred = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    messages: list[OutboxMessage] = []
    flow: UUID | None = None
    for count in range(1, events_each + 1):
        for counter_id in counters:
            ticked = CounterTicked(
                counter_id, count, occurred_at=occurred + timedelta(seconds=count)
            )
            record = codec.event_to_record(ticked)
            caused = flow is not None and len(messages) % 2 == 1
            messages.append(
                OutboxMessage(
                    position=start + len(messages),
                    event_id=ticked.event_id,
                    event_type=record.type_name,
                    event_version=record.schema_version,
                    aggregate_type=codec.type_name(Counter),
                    aggregate_id=str(counter_id),
                    aggregate_version=count,
                    payload=record.payload,
                    occurred_at=ticked.occurred_at,
                    correlation_id=flow if caused else ticked.event_id,
                    causation_id=messages[-1].event_id if caused else None,
                )
            )
            flow = ticked.event_id
    return messages


def first_copies(received: Sequence[object]) -> list[object]:
    """``received`` without repeats, each kept where it first arrived (at-least-once delivery)."""
    seen: list[object] = []
    for item in received:
        if item not in seen:
            seen.append(item)
    return seen


class PublisherContract:
    """What every Publisher honours: batches arrive whole and in order, failures mark nothing."""

    @pytest.fixture
    def destination(self) -> Destination:
        raise NotImplementedError("a publisher's contract tests provide the destination fixture")

    def test_batch_arrives_complete_and_in_order(self, destination: Destination) -> None:
        """Every message of a batch arrives once, in batch order, with its ids, body and trace."""
        batch = sample_batch()
        destination.publish(batch)
        assert destination.received() == [destination.arrival(m) for m in batch]

    def test_batches_arrive_in_the_order_they_were_published(
        self, destination: Destination
    ) -> None:
        """A second batch arrives after the first, each in its own order."""
        first, second = sample_batch(start=1), sample_batch(aggregates=1, events_each=3, start=7)
        destination.publish(first)
        destination.publish(second)
        assert destination.received() == [destination.arrival(m) for m in [*first, *second]]

    def test_empty_batch_sends_nothing(self, destination: Destination) -> None:
        """Publishing no messages succeeds and delivers nothing."""
        destination.publish([])
        assert destination.received() == []

    def test_relay_marks_rows_after_they_were_published(
        self, destination: Destination, sqlite_engine: sa.Engine
    ) -> None:
        """Through the relay, every committed row arrives in position order and is then marked."""
        commit_ticks(sqlite_engine, counters=2, ticks=3)
        tee = destination.tee()
        assert destination.relay(sqlite_engine, tee.publisher).relay_once() == 6
        assert pending_positions(sqlite_engine) == []
        assert [m.position for m in tee.given] == all_positions(sqlite_engine)
        assert destination.received() == [destination.arrival(m) for m in tee.given]

    def test_refused_batch_raises_and_the_relay_marks_nothing(
        self, destination: Destination, sqlite_engine: sa.Engine
    ) -> None:
        """A refused batch raises from publish, every row stays pending, and a later relay sends it."""
        commit_ticks(sqlite_engine, counters=2, ticks=2)
        with pytest.raises(destination.failure):
            destination.relay(sqlite_engine, destination.refusing).relay_once()
        assert pending_positions(sqlite_engine) == all_positions(sqlite_engine)
        assert destination.relay(sqlite_engine, destination.refusing).parked() == []
        tee = destination.tee()
        assert destination.relay(sqlite_engine, tee.publisher).relay_once() == 4
        assert pending_positions(sqlite_engine) == []
        assert destination.received() == [destination.arrival(m) for m in tee.given]

    def test_undeliverable_message_is_named_and_nothing_after_it_is_sent(
        self, destination: Destination
    ) -> None:
        """A message the publisher can never send raises UndeliverableError naming only it."""
        batch = sample_batch()
        spoiled = destination.spoil(batch[3])
        with pytest.raises(UndeliverableError) as raised:
            destination.publish([*batch[:3], spoiled, *batch[4:]])
        assert list(raised.value.reasons) == [spoiled.position]
        assert isinstance(raised.value, PublishError)
        received = destination.received()
        assert received == [destination.arrival(m) for m in batch[: len(received)]]
        assert len(received) <= 3

    def test_relay_parks_an_undeliverable_row_and_sends_it_once_repaired(
        self, destination: Destination, sqlite_engine: sa.Engine
    ) -> None:
        """The other aggregates' rows go out, the spoiled row is parked, its successor waits."""
        line = Line(sqlite_engine, **destination.spoiled)
        tee = destination.tee()
        relay = destination.relay(sqlite_engine, tee.publisher)
        assert relay.relay_once() == 4
        assert [m.position for m in tee.delivered] == line.good
        assert [p.position for p in relay.parked()] == [line.poison]
        assert pending_positions(sqlite_engine) == [line.poison, line.behind]
        line.repair(sqlite_engine)
        assert relay.retry_parked(position=line.poison) == 1
        assert relay.relay_once() == 2
        assert [m.position for m in tee.delivered] == [*line.good, line.poison, line.behind]
        assert destination.received() == [destination.arrival(m) for m in tee.delivered]


class BrokerPublisherContract(PublisherContract):
    """What a publisher to a networked broker honours besides: failures are prompt PublishErrors."""

    timeout = 1.0
    """The publishers' connect and confirm timeout, in seconds."""

    @pytest.fixture
    def broker(self) -> Broker:
        raise NotImplementedError("a broker publisher's contract tests provide the broker fixture")

    @pytest.fixture
    def destination(self, broker: Broker, side: Side) -> Destination:
        return Destination(
            publisher=broker.publisher(broker.port, timeout=self.timeout, side=side),
            received=lambda: list(broker.read_all()),
            arrival=lambda message: message,
            refusing=broker.publisher(closed_port(), timeout=self.timeout, side=side),
            side=side,
        )

    @pytest.fixture
    def proxy(self, broker: Broker) -> Iterator[TcpProxy]:
        """A TCP proxy in front of the broker, to take it away under the publisher."""
        proxy = TcpProxy(broker.port).start()
        yield proxy
        proxy.stop()

    def publish_timed(
        self, destination: Destination, publisher: Any, batch: Sequence[OutboxMessage]
    ) -> float:
        """Seconds ``publish(batch)`` took to raise PublishError (it must raise)."""
        started = time.monotonic()
        with pytest.raises(PublishError) as raised:
            destination.publish(batch, publisher)
        elapsed = time.monotonic() - started
        assert str(batch[0].event_id) in str(raised.value)
        return elapsed

    def test_unreachable_broker_is_a_prompt_publish_error(
        self, broker: Broker, destination: Destination
    ) -> None:
        """A refused connection raises PublishError at once, naming the broker and the first event."""
        port = closed_port()
        batch = sample_batch()
        started = time.monotonic()
        with pytest.raises(PublishError) as raised:
            destination.publish(
                batch, broker.publisher(port, timeout=self.timeout, side=destination.side)
            )
        assert time.monotonic() - started < self.timeout
        assert f"127.0.0.1:{port}" in str(raised.value)
        assert str(batch[0].event_id) in str(raised.value)

    def test_silent_broker_is_reported_within_the_timeout(
        self, broker: Broker, destination: Destination, silent_port: int
    ) -> None:
        """A server that accepts the connection and never answers is a PublishError, not a hang."""
        publisher = broker.publisher(silent_port, timeout=self.timeout, side=destination.side)
        assert self.publish_timed(destination, publisher, sample_batch()) < 3 * self.timeout

    def test_broker_that_stops_answering_is_reported_within_the_timeout(
        self, broker: Broker, destination: Destination, proxy: TcpProxy
    ) -> None:
        """A connection that hangs while a batch waits for its confirms is a PublishError in time."""
        publisher = broker.publisher(proxy.port, timeout=self.timeout, side=destination.side)
        first, second = sample_batch(start=1), sample_batch(start=7)
        destination.publish(first, publisher)
        proxy.pause()
        assert self.publish_timed(destination, publisher, second) < 3 * self.timeout
        proxy.resume()
        destination.publish(second, publisher)
        assert first_copies(broker.read_all()) == [*first, *second]

    def test_publisher_recovers_once_the_broker_is_back(
        self, broker: Broker, destination: Destination, proxy: TcpProxy
    ) -> None:
        """The same publisher, after failing while the broker was down, delivers once it is up."""
        publisher = broker.publisher(proxy.port, timeout=self.timeout, side=destination.side)
        batch = sample_batch()
        proxy.stop()
        self.publish_timed(destination, publisher, batch)
        proxy.start()
        destination.publish(batch, publisher)
        assert broker.read_all() == batch

    def test_connection_cut_while_idle_does_not_fail_the_next_batch(
        self, broker: Broker, destination: Destination, proxy: TcpProxy
    ) -> None:
        """A connection the broker or network dropped between batches is replaced on the next one."""
        publisher = broker.publisher(proxy.port, timeout=self.timeout, side=destination.side)
        first, second = sample_batch(start=1), sample_batch(start=7)
        destination.publish(first, publisher)
        proxy.drop()
        destination.publish(second, publisher)
        assert first_copies(broker.read_all()) == [*first, *second]
