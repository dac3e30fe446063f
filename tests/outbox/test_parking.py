"""The relay parks outbox rows it can never publish, keeps the others flowing, and retries on demand.

Poison rows are INSERTed straight into ``tactical_outbox`` (the unit of work refuses to
write most of them), between good rows of other aggregates and before later rows of their
own aggregate, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from tests.outbox.brokers import Broker, Rabbit, TcpProxy, rabbit_publisher
from tests.outbox.helpers import (
    Line,
    RecordingPublisher,
    RefusingPublisher,
    commit_ticks,
    insert_row,
    pending_positions,
    published_positions,
    raw_payload,
    tick,
    ticked_row,
    update_row,
)
from tests.outbox.sides import Relay, Side

import sqlalchemy as sa
from tactical.outbox import OutboxMessage, ParkedRow, PublishError, UndeliverableError
from tactical.outbox._parking import BatchPlan, plan_after_refusal


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _too_deep_for_json() -> str:
    """A JSON document json.loads cannot parse here, and PostgreSQL's JSONB still stores.

    json's limit depends on the interpreter (Python 3.11 fails at about 1,000 levels, 3.13's
    C scanner parses 8,000); PostgreSQL's parser gives up near 15,000 with its default
    ``max_stack_depth``: take the shallowest depth that json refuses.
    """
    for depth in (1_100, 5_000, 12_000):
        try:
            json.loads(_nested(depth))
        except RecursionError:
            return _nested(depth)
    raise RuntimeError("json.loads parsed a document 12,000 levels deep")


DEEP = _too_deep_for_json()


def positions(messages: list[OutboxMessage]) -> list[int]:
    return [m.position for m in messages]


class TestUnreadableRows:
    def test_row_nested_too_deep_is_parked_and_other_aggregates_flow(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """A payload deeper than the recursion limit is parked; the others go out in order."""
        line = Line(engine, payload=raw_payload(engine, DEEP))
        publisher = RecordingPublisher()
        relay = side.relay(engine, publisher)
        assert relay.relay_once() == 4
        assert positions(publisher.published) == line.good
        (parked,) = relay.parked()
        assert (parked.position, parked.aggregate_id) == (line.poison, str(line.p))
        assert "recursion limit" in parked.error
        assert pending_positions(engine) == [line.poison, line.behind]

    def test_rows_behind_a_parked_row_wait_until_it_is_retried(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """Later rows of the parked row's aggregate stay unpublished, batch after batch."""
        line = Line(engine, payload=raw_payload(engine, DEEP))
        publisher = RecordingPublisher()
        relay = side.relay(engine, publisher)
        relay.relay_once()
        tick(engine, line.x)
        assert relay.relay_once() == 1
        assert line.behind not in positions(publisher.published)
        assert pending_positions(engine) == [line.poison, line.behind]

    def test_repaired_and_retried_row_goes_out_before_the_rows_behind_it(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """Once repaired and un-parked, the row and its successors are published in order."""
        line = Line(engine, payload=raw_payload(engine, DEEP))
        publisher = RecordingPublisher()
        relay = side.relay(engine, publisher)
        relay.relay_once()
        line.repair(engine)
        assert relay.retry_parked(position=line.poison) == 1
        assert relay.parked() == []
        assert relay.relay_once() == 2
        assert positions(publisher.published) == [*line.good, line.poison, line.behind]
        assert [m.payload["count"] for m in publisher.published[-2:]] == [1, 2]
        assert pending_positions(engine) == []

    def test_rows_of_the_aggregate_before_the_unreadable_one_still_go_out(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """Only the rows after a parked row of its aggregate wait; the earlier ones are published."""
        counter = uuid4()
        first = insert_row(engine, ticked_row(counter, 1))
        poison = insert_row(engine, ticked_row(counter, 2), payload=raw_payload(engine, DEEP))
        third = insert_row(engine, ticked_row(counter, 3))
        publisher = RecordingPublisher()
        relay = side.relay(engine, publisher)
        assert relay.relay_once() == 1
        assert positions(publisher.published) == [first]
        assert [p.position for p in relay.parked()] == [poison]
        assert pending_positions(engine) == [poison, third]

    @pytest.mark.parametrize(
        ("payload", "reason"),
        [
            pytest.param("not json", "not JSON", id="invalid-json-text"),
            pytest.param(b'{"a": "\xff\xfe"}', "not UTF-8", id="non-utf8-text"),
            pytest.param("[1, 2]", "not a JSON object", id="json-array"),
        ],
    )
    def test_unreadable_sqlite_text_is_parked_alone(
        self, side: Side, sqlite_engine: sa.Engine, payload: str | bytes, reason: str
    ) -> None:
        """Text SQLite accepts in the JSON column but nobody can read is parked, naming why."""
        line = Line(sqlite_engine, payload=raw_payload(sqlite_engine, payload))
        publisher = RecordingPublisher()
        relay = side.relay(sqlite_engine, publisher)
        assert relay.relay_once() == 4
        assert positions(publisher.published) == line.good
        assert [(p.position, reason in p.error) for p in relay.parked()] == [(line.poison, True)]

    def test_raw_bytes_in_sqlite_payload_are_parked(
        self, side: Side, sqlite_engine: sa.Engine
    ) -> None:
        """A BLOB bound into the payload column is read as bytes, decoded, and parked if bad."""
        blob = sa.bindparam("raw", b"\x80\x81", type_=sa.LargeBinary)
        line = Line(sqlite_engine, payload=blob)
        relay = side.relay(sqlite_engine, RecordingPublisher())
        assert relay.relay_once() == 4
        assert [p.position for p in relay.parked()] == [line.poison]
        assert "not UTF-8" in relay.parked()[0].error


class TestRefusedMessages:
    def test_refused_message_is_parked_and_the_rest_of_the_batch_is_published(
        self, side: Side, engine: sa.Engine, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An UndeliverableError parks the named row; the same batch then goes out without it."""
        line = Line(engine, event_type="poison.Ticked")
        publisher = RefusingPublisher()
        relay = side.relay(engine, publisher)
        caplog.set_level(logging.WARNING, logger="tactical.outbox")
        assert relay.relay_once() == 4
        (warning,) = caplog.records
        assert f"parked the row at position {line.poison}" in warning.getMessage()
        assert "refused (injected)" in warning.getMessage()
        assert positions(publisher.published) == line.good
        assert publisher.batches[1] == line.good  # retried at once, without p's two rows
        (parked,) = relay.parked()
        assert parked.position == line.poison
        assert parked.event_type == "poison.Ticked"
        assert "refused (injected)" in parked.error
        assert parked.parked_at.tzinfo is not None
        assert relay.relay_once() == 0
        assert pending_positions(engine) == [line.poison, line.behind]

    def test_transient_failure_parks_nothing(self, side: Side, engine: sa.Engine) -> None:
        """A publisher error other than UndeliverableError leaves every row pending, none parked."""
        commit_ticks(engine, counters=1, ticks=2)
        commit_ticks(engine, counters=1, ticks=2)
        relay = side.relay(engine, RecordingPublisher(failures=1))
        with pytest.raises(ConnectionError):
            relay.relay_once()
        assert relay.parked() == []
        assert relay.relay_once() == 4

    def test_parks_found_before_a_transient_failure_are_kept(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """A row refused for good stays parked when the rest of its batch then fails to send."""
        line = Line(engine, event_type="poison.Ticked")
        publisher = RefusingPublisher(failures=1)
        relay = side.relay(engine, publisher)
        with pytest.raises(ConnectionError):
            relay.relay_once()
        assert [p.position for p in relay.parked()] == [line.poison]
        assert published_positions(engine) == []
        assert relay.relay_once() == 4

    def test_refusal_naming_no_message_of_the_batch_is_transient(
        self, side: Side, sqlite_engine: sa.Engine
    ) -> None:
        """A publisher naming positions outside the batch parks nothing and is raised."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)

        class Confused(RecordingPublisher):
            def publish(self, messages: object, /) -> None:
                raise UndeliverableError({10_000: "not in this batch"})

        relay = side.relay(sqlite_engine, Confused())
        with pytest.raises(UndeliverableError):
            relay.relay_once()
        assert relay.parked() == []


class TestRetryParked:
    def park_two_aggregates(self, side: Side, engine: sa.Engine) -> tuple[Relay, list[ParkedRow]]:
        insert_row(engine, ticked_row(uuid4(), 1), event_type="poison.A")
        insert_row(engine, ticked_row(uuid4(), 1), event_type="poison.B")
        relay = side.relay(engine, RefusingPublisher())
        relay.relay_once()
        return relay, relay.parked()

    def test_retry_of_an_aggregate_unparks_only_its_rows(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """retry_parked(aggregate=...) un-parks that aggregate's rows and no other."""
        relay, (a, b) = self.park_two_aggregates(side, engine)
        assert relay.parked(aggregate=(b.aggregate_type, b.aggregate_id)) == [b]
        assert relay.retry_parked(aggregate=(a.aggregate_type, a.aggregate_id)) == 1
        assert relay.parked() == [b]

    def test_retry_of_everything_unparks_every_row(self, side: Side, engine: sa.Engine) -> None:
        """retry_parked() un-parks every parked row; still refused, they are parked again."""
        relay, parked = self.park_two_aggregates(side, engine)
        assert relay.retry_parked() == 2
        assert relay.parked() == []
        assert relay.relay_once() == 0
        assert [p.position for p in relay.parked()] == [p.position for p in parked]

    def test_row_marked_published_by_hand_is_discarded_and_frees_its_aggregate(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """Setting a parked row's published_at drops it: not listed, its successors go out."""
        line = Line(engine, event_type="poison.Ticked")
        publisher = RefusingPublisher()
        relay = side.relay(engine, publisher)
        relay.relay_once()
        update_row(engine, line.poison, published_at=datetime.now(UTC))
        assert relay.parked() == []
        assert relay.retry_parked() == 0
        assert relay.relay_once() == 1
        assert positions(publisher.published) == [*line.good, line.behind]

    def test_position_and_aggregate_together_are_refused(
        self, side: Side, sqlite_engine: sa.Engine
    ) -> None:
        """Naming both a position and an aggregate is an error, not a guess."""
        relay = side.relay(sqlite_engine, RecordingPublisher())
        with pytest.raises(ValueError, match="a position or an aggregate, not both"):
            relay.retry_parked(position=1, aggregate=("t", "i"))


def message(position: int, aggregate: str) -> OutboxMessage:
    return OutboxMessage(
        position=position,
        event_id=UUID(int=position),
        event_type="t.Ticked",
        event_version=1,
        aggregate_type="t.Counter",
        aggregate_id=aggregate,
        aggregate_version=position,
        payload={},
        occurred_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


class TestParkingDecisions:
    def test_refusal_holds_back_only_later_rows_of_the_aggregate(self) -> None:
        """Rows of the refused row's aggregate before it still go out; those after it wait."""
        batch = [message(1, "a"), message(2, "b"), message(3, "a"), message(4, "a")]
        plan = plan_after_refusal(BatchPlan(tuple(batch)), UndeliverableError({3: "no"}))
        assert plan is not None
        assert [m.position for m in plan.publish] == [1, 2]
        assert (plan.park, plan.held) == ({3: "no"}, (4,))


@pytest.mark.rabbitmq
class TestParkingOnRabbitMQ:
    def test_type_name_over_255_utf8_bytes_is_parked_not_retried_for_ever(
        self, side: Side, engine: sa.Engine, rabbit: Rabbit
    ) -> None:
        """A routing key AMQP cannot carry is parked; the other aggregates reach the queue."""
        line = Line(engine, event_type="x." + "€" * 100)
        relay = side.relay(engine, rabbit_publisher(side, rabbit.exchange))
        assert relay.relay_once() == 4
        assert relay.relay_once() == 0
        received = [OutboxMessage.from_wire(b, p.headers) for _, p, b in rabbit.drain()]
        assert positions(received) == line.good
        (parked,) = relay.parked()
        assert parked.position == line.poison
        # pika's words, or pamqp's (under aio-pika): the limit of an AMQP short string
        assert re.search("ShortStringTooLong|exceeds maximum length of 255 bytes", parked.error)
        assert pending_positions(engine) == [line.poison, line.behind]


class TestBrokerOutage:
    def test_broker_outage_parks_nothing(
        self, side: Side, engine: sa.Engine, broker: Broker, broker_proxy: TcpProxy
    ) -> None:
        """With the broker unreachable the relay raises PublishError, parks no row, then delivers."""
        commit_ticks(engine, counters=1, ticks=2)
        commit_ticks(engine, counters=1, ticks=2)
        relay = side.relay(engine, broker.publisher(broker_proxy.port, timeout=1.0, side=side))
        broker_proxy.stop()
        with pytest.raises(PublishError):
            relay.relay_once()
        assert relay.parked() == []
        assert len(pending_positions(engine)) == 4
        broker_proxy.start()
        assert relay.relay_once() == 4
        assert relay.parked() == []
        assert [m.position for m in broker.read_all()] == published_positions(engine)


class TestParkingWithSeveralRelaysOnPostgres:
    @pytest.mark.postgres
    def test_racing_relays_park_each_poison_row_once_and_publish_the_rest_once_in_order(
        self, side: Side, postgres_engine: sa.Engine
    ) -> None:
        """Four relays behind the advisory lock park the poison rows and publish every other once."""
        counters = [commit_ticks(postgres_engine, counters=1, ticks=20)[0] for _ in range(5)]
        poisoned = [uuid4(), uuid4()]
        poison = [
            insert_row(postgres_engine, ticked_row(c, 1), event_type="poison.Ticked")
            for c in poisoned
        ]
        behind = [insert_row(postgres_engine, ticked_row(c, 2)) for c in poisoned]
        for counter in counters:
            tick(postgres_engine, counter, times=20)
        publisher = RefusingPublisher()
        relays = [side.relay(postgres_engine, publisher, batch_size=15) for _ in range(4)]

        def drain(relay: Relay) -> None:
            idle = 0
            while idle < 20:
                idle = 0 if relay.relay_once() else idle + 1

        threads = [threading.Thread(target=drain, args=(r,)) for r in relays]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        published = positions(publisher.published)
        assert len(set(published)) == len(published) == 200
        assert sorted(published) == published_positions(postgres_engine)
        by_counter: dict[str, list[int]] = {}
        for message in publisher.published:
            by_counter.setdefault(message.aggregate_id, []).append(message.payload["count"])
        assert by_counter == {str(c): list(range(1, 41)) for c in counters}
        assert [p.position for p in relays[0].parked()] == poison
        assert pending_positions(postgres_engine) == sorted([*poison, *behind])
