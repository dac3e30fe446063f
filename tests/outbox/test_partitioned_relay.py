"""Partitioned relays: several share the outbox's partitions on PostgreSQL, one owner each.

Each test runs with the sync relay, the async one on psycopg and the async one on asyncpg
(the ``api`` parameter), the relays driven through :mod:`tests.outbox.sides`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
import redis
from tests.outbox.helpers import (
    RecordingPublisher,
    all_positions,
    commit_ticks,
    pending_count,
    tick,
)
from tests.outbox.sides import AsyncSide, Relay, Side, make_side

import sqlalchemy as sa
from tactical.outbox import OutboxMessage, OutboxRelay, partition_of
from tactical.outbox._leases import keepalive_settings
from tactical.sqlalchemy import outbox_table, relay_leases_table, relays_table

PARTITIONS = 16
ALL = frozenset(range(PARTITIONS))


@pytest.fixture(params=["sync", "async", "asyncpg"])
def api_side(request: pytest.FixtureRequest) -> Iterator[Side]:
    """The sync API, or the async one on psycopg or on asyncpg."""
    made = make_side(request.param)
    yield made
    made.close()


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds}s")
        time.sleep(0.05)


def rounds(relays: Sequence[Relay], times: int = 3) -> None:
    """Let each relay run ``times`` batches, in turn."""
    for _ in range(times):
        for relay in relays:
            relay.relay_once()


def assert_shared(relays: Sequence[Relay]) -> None:
    """Every partition is owned by exactly one of ``relays``."""
    owned = [relay.owned_partitions for relay in relays]
    assert sum(len(o) for o in owned) == PARTITIONS
    assert frozenset().union(*owned) == ALL


def in_order_per_aggregate(messages: Sequence[OutboxMessage]) -> dict[str, list[int]]:
    """Each aggregate's counts in the order the messages were published."""
    counts: dict[str, list[int]] = {}
    for message in messages:
        counts.setdefault(message.aggregate_id, []).append(message.payload["count"])
    return counts


def lease_owners(engine: sa.Engine) -> dict[int, str | None]:
    """Each partition's owner in the lease table."""
    t = relay_leases_table
    with engine.connect() as connection:
        rows = connection.execute(sa.select(t.c.partition, t.c.owner)).all()
    return {row.partition: row.owner for row in rows}


class HeldPublisher:
    """Publishes through ``publisher`` once ``release`` is set, saying when it waits."""

    def __init__(
        self, publisher: RecordingPublisher, waiting: threading.Event, release: threading.Event
    ) -> None:
        self.publisher, self.waiting, self.release = publisher, waiting, release

    def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        self.waiting.set()
        assert self.release.wait(60)
        self.publisher.publish(messages)


class HeldAsyncPublisher(HeldPublisher):
    """:class:`HeldPublisher` for the async relay: it waits without blocking the event loop."""

    async def publish(self, messages: Sequence[OutboxMessage], /) -> None:  # type: ignore[override]
        self.waiting.set()
        assert await asyncio.to_thread(self.release.wait, 60)
        self.publisher.publish(messages)


class TestConstruction:
    @pytest.mark.parametrize("api", ["sync", "async"])
    def test_sqlite_refuses_partitions(self, api: str, sqlite_engine: sa.Engine) -> None:
        """On SQLite a relay keeps to one at a time: asking for partitions is refused."""
        side = make_side(api)
        try:
            with pytest.raises(ValueError, match="partitions=4 needs PostgreSQL"):
                side.relay(sqlite_engine, RecordingPublisher(), partitions=4)
            relay = side.relay(sqlite_engine, RecordingPublisher())
            assert (relay.name, relay.partitions) == (None, None)
        finally:
            side.close()

    @pytest.mark.postgres
    @pytest.mark.parametrize(
        ("options", "error", "match"),
        [
            ({"partitions": 0}, ValueError, "partitions must be at least 1, got 0"),
            ({"partitions": "4"}, TypeError, "partitions must be an int, got str: '4'"),
            ({"partitions": True}, TypeError, "partitions must be an int, got bool"),
            ({"partitions": 4, "lease_ttl": 0}, ValueError, "lease_ttl must be positive, got 0"),
            ({"partitions": 4, "name": ""}, ValueError, "1 to 255 characters, got ''"),
        ],
    )
    def test_bad_settings_are_named(
        self,
        api_side: Side,
        postgres_engine: sa.Engine,
        options: dict[str, object],
        error: type[Exception],
        match: str,
    ) -> None:
        """A bad partition count, lease TTL or name is refused with the value."""
        with pytest.raises(error, match=match):
            api_side.relay(postgres_engine, RecordingPublisher(), **options)

    @pytest.mark.postgres
    def test_idle_interval_must_be_shorter_than_the_lease(
        self, api_side: Side, postgres_engine: sa.Engine
    ) -> None:
        """run() refuses an idle interval that would let the relay's leases lapse."""
        relay = api_side.relay(postgres_engine, RecordingPublisher(), partitions=4, lease_ttl=1)
        with pytest.raises(ValueError, match=r"idle_interval \(2s\) must be shorter"):
            relay.run(threading.Event(), idle_interval=2)

    @pytest.mark.postgres
    def test_settings_are_readable(self, api_side: Side, postgres_engine: sa.Engine) -> None:
        """A relay tells its name, partition count, and owns nothing before its first batch."""
        relay = api_side.relay(postgres_engine, RecordingPublisher(), partitions=8, name="r-1")
        assert (relay.name, relay.partitions, relay.owned_partitions) == ("r-1", 8, frozenset())
        plain = api_side.relay(postgres_engine, RecordingPublisher())
        assert (plain.name, plain.partitions) == (None, None)


class TestVanishedRelays:
    @pytest.mark.parametrize("lease_ttl", [0.2, 1.0, 2.0, 2.5, 10.0, 600.0])
    def test_the_server_notices_a_vanished_relay_within_about_a_lease(
        self, lease_ttl: float
    ) -> None:
        """Probes start after half a lease and give up after about one (never under 2 s)."""
        settings = keepalive_settings(lease_ttl)
        idle, interval, count = (
            int(settings[name])
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
        )
        assert min(idle, interval, count) >= 1
        assert idle + interval * count <= max(lease_ttl, 2.0)
        assert int(settings["tcp_user_timeout"]) == max(1000, round(lease_ttl * 1000))

    @pytest.mark.postgres
    def test_a_batch_holds_its_leases_with_the_keepalives_of_its_lease(
        self, postgres_engine: sa.Engine
    ) -> None:
        """The batch's transaction has the server probe the relay; the pooled session, not."""
        names = ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
        query = "SELECT " + ", ".join(f"current_setting('{name}')" for name in names)
        seen: list[tuple[str, ...]] = []

        def before_commit(connection: sa.Connection) -> None:
            cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(query)
            seen.append(tuple(cursor.fetchone()))

        sa.event.listen(postgres_engine, "commit", before_commit)
        try:
            relay = OutboxRelay(postgres_engine, RecordingPublisher(), partitions=4, lease_ttl=6)
            relay.relay_once()
        finally:
            sa.event.remove(postgres_engine, "commit", before_commit)
        assert ("3", "1", "3") in seen
        with postgres_engine.connect() as connection:
            assert connection.exec_driver_sql(query).one() != ("3", "1", "3")


@pytest.mark.postgres
class TestOwnership:
    def test_one_relay_owns_every_partition_and_publishes_in_order(
        self, api_side: Side, postgres_engine: sa.Engine
    ) -> None:
        """Alone, a relay claims all partitions and publishes every row once, in order."""
        commit_ticks(postgres_engine, counters=10, ticks=5)
        publisher = RecordingPublisher()
        relay = api_side.relay(postgres_engine, publisher, partitions=PARTITIONS)
        assert relay.relay_once() == 50
        assert relay.owned_partitions == ALL
        assert sorted(m.position for m in publisher.published) == all_positions(postgres_engine)
        assert all(
            c == [1, 2, 3, 4, 5] for c in in_order_per_aggregate(publisher.published).values()
        )
        assert set(lease_owners(postgres_engine).values()) == {relay.name}

    def test_the_unit_of_work_writes_each_rows_partition_key(
        self, postgres_engine: sa.Engine
    ) -> None:
        """Every outbox row carries its aggregate's stable hash, the partition's basis."""
        commit_ticks(postgres_engine, counters=5, ticks=2)
        t = outbox_table
        with postgres_engine.connect() as connection:
            rows = connection.execute(
                sa.select(t.c.aggregate_type, t.c.aggregate_id, t.c.partition_key)
            ).all()
        assert len(rows) == 10
        for row in rows:
            assert row.partition_key % 7 == partition_of(row.aggregate_type, row.aggregate_id, 7)

    def test_a_joining_relay_gets_its_fair_share(
        self, api_side: Side, postgres_engine: sa.Engine
    ) -> None:
        """A second relay gets half the partitions from the first; a third, a third of them."""
        first = api_side.relay(postgres_engine, RecordingPublisher(), partitions=PARTITIONS)
        first.relay_once()
        assert first.owned_partitions == ALL
        second = api_side.relay(postgres_engine, RecordingPublisher(), partitions=PARTITIONS)
        second.relay_once()
        assert second.owned_partitions == frozenset()  # nothing is free until the first gives
        rounds([first, second])
        assert sorted(len(r.owned_partitions) for r in (first, second)) == [8, 8]
        assert_shared([first, second])
        third = api_side.relay(postgres_engine, RecordingPublisher(), partitions=PARTITIONS)
        rounds([first, second, third])
        assert sorted(len(r.owned_partitions) for r in (first, second, third)) == [4, 6, 6]
        assert_shared([first, second, third])

    def test_a_stopping_relay_hands_its_partitions_over_at_once(
        self, api_side: Side, postgres_engine: sa.Engine
    ) -> None:
        """A relay whose run() ends releases its partitions; the other takes them next batch."""
        stay = api_side.relay(postgres_engine, RecordingPublisher(), partitions=PARTITIONS)
        leave = api_side.relay(postgres_engine, RecordingPublisher(), partitions=PARTITIONS)
        stop = threading.Event()
        runner = threading.Thread(target=leave.run, args=(stop,), kwargs={"idle_interval": 0.05})
        runner.start()
        try:
            wait_until(lambda: bool(leave.owned_partitions), "the leaving relay's first claim")
            stay.relay_once()
            wait_until(lambda: len(leave.owned_partitions) == 8, "the leaving relay's share")
            stay.relay_once()
            assert len(stay.owned_partitions) == 8
        finally:
            stop.set()
            runner.join(30)
        assert not runner.is_alive()
        assert leave.owned_partitions == frozenset()
        with postgres_engine.connect() as connection:
            assert connection.execute(sa.select(relays_table.c.name)).scalars().all() == [stay.name]
        stay.relay_once()
        assert stay.owned_partitions == ALL

    def test_a_live_lease_is_never_taken(self, api_side: Side, postgres_engine: sa.Engine) -> None:
        """A relay that stopped batching keeps its partitions until its lease expires."""
        first = api_side.relay(postgres_engine, RecordingPublisher(), partitions=PARTITIONS)
        silent = api_side.relay(
            postgres_engine, RecordingPublisher(), partitions=PARTITIONS, lease_ttl=600
        )
        rounds([first, silent])
        assert_shared([first, silent])
        rounds([first])  # the silent relay no longer renews: its leases last 600 s
        assert len(first.owned_partitions) == 8

    def test_an_expired_lease_is_taken_over(
        self, api_side: Side, postgres_engine: sa.Engine
    ) -> None:
        """A relay that died (no batch, no release) loses its partitions once its lease expires."""
        commit_ticks(postgres_engine, counters=20, ticks=1)
        survivor_publisher, dead_publisher = RecordingPublisher(), RecordingPublisher()
        survivor = api_side.relay(postgres_engine, survivor_publisher, partitions=PARTITIONS)
        dead = api_side.relay(postgres_engine, dead_publisher, partitions=PARTITIONS, lease_ttl=2)
        dead.relay_once()  # owns all, publishes all 20
        rounds([survivor, dead])
        assert_shared([survivor, dead])
        assert dead.owned_partitions
        dead_partitions = dead.owned_partitions
        commit_ticks(postgres_engine, counters=40, ticks=1)

        def taken_over() -> bool:
            survivor.relay_once()
            return survivor.owned_partitions == ALL

        wait_until(taken_over, "the takeover of the dead relay's partitions")
        survivor.relay_once()
        assert pending_count(postgres_engine) == 0
        positions = [m.position for m in survivor_publisher.published + dead_publisher.published]
        assert sorted(positions) == all_positions(postgres_engine)
        taken = [
            m
            for m in survivor_publisher.published
            if partition_of(m.aggregate_type, m.aggregate_id, PARTITIONS) in dead_partitions
        ]
        assert taken  # 40 new counters: some fell in the dead relay's partitions

    def test_a_relay_that_lost_its_lease_publishes_nothing_from_it(
        self, api_side: Side, postgres_engine: sa.Engine
    ) -> None:
        """Fencing: after its lease expired and was taken, a relay no longer sends its rows."""
        slow_publisher, other_publisher = RecordingPublisher(), RecordingPublisher()
        slow = api_side.relay(postgres_engine, slow_publisher, partitions=PARTITIONS, lease_ttl=2)
        other = api_side.relay(postgres_engine, other_publisher, partitions=PARTITIONS)
        rounds([slow, other])
        assert_shared([slow, other])
        assert slow.owned_partitions

        def taken() -> bool:
            other.relay_once()
            return other.owned_partitions == ALL

        wait_until(taken, "the takeover of the slow relay's partitions")
        commit_ticks(postgres_engine, counters=30, ticks=1)
        slow.relay_once()  # back from its pause: it must find out before publishing
        assert slow.owned_partitions == frozenset()
        assert slow_publisher.published == []
        rounds([other, slow])  # the two share the partitions again
        assert_shared([slow, other])
        published = slow_publisher.published + other_publisher.published
        assert sorted(m.position for m in published) == all_positions(postgres_engine)

    def test_a_lease_held_by_a_publishing_relay_is_not_taken(
        self, api_side: Side, postgres_engine: sa.Engine
    ) -> None:
        """While a relay publishes (its lease past expiry), nobody takes its partitions."""
        commit_ticks(postgres_engine, counters=20, ticks=1)
        publishing, release = threading.Event(), threading.Event()
        slow_publisher = RecordingPublisher()
        held: object
        if isinstance(api_side, AsyncSide):
            held = HeldAsyncPublisher(slow_publisher, publishing, release)
        else:
            held = HeldPublisher(slow_publisher, publishing, release)
        slow = api_side.relay(postgres_engine, held, partitions=PARTITIONS, lease_ttl=0.2)
        other_publisher = RecordingPublisher()
        # A side of its own: the blocked publish holds the async side's event loop.
        other_side = make_side(api_side.name)
        other = other_side.relay(postgres_engine, other_publisher, partitions=PARTITIONS)
        batch = threading.Thread(target=slow.relay_once)
        batch.start()
        try:
            assert publishing.wait(30)

            def database_clock() -> datetime:
                with postgres_engine.connect() as connection:
                    now: datetime = connection.execute(
                        sa.select(sa.func.clock_timestamp())
                    ).scalar_one()
                    return now

            # The batch renewed its leases (for 0.2 s) before it began to publish; its
            # renewal is not committed, so wait on the database's clock, not the rows.
            publishing_since = database_clock()
            wait_until(
                lambda: database_clock() > publishing_since + timedelta(seconds=0.5),
                "the expiry of the publishing relay's leases",
            )
            rounds([other])
            assert other.owned_partitions == frozenset()
            assert other_publisher.published == []
            release.set()
            batch.join(30)
            assert len(slow_publisher.published) == 20

            def taken() -> bool:
                other.relay_once()
                return other.owned_partitions == ALL

            wait_until(taken, "the takeover once the publishing relay's batch ended")
            assert other_publisher.published == []  # every row was marked by the slow relay
        finally:
            release.set()
            other_side.close()

    def test_relays_with_different_partition_counts_publish_nothing(
        self, api_side: Side, postgres_engine: sa.Engine, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A relay that sees another with a different count gives up its partitions, and says so."""
        commit_ticks(postgres_engine, counters=10, ticks=1)
        sixteen_publisher, eight_publisher = RecordingPublisher(), RecordingPublisher()
        sixteen = api_side.relay(postgres_engine, sixteen_publisher, partitions=PARTITIONS)
        eight = api_side.relay(postgres_engine, eight_publisher, partitions=8, name="eight")
        eight.relay_once()  # alone: owns its 8 partitions, publishes everything
        assert eight.owned_partitions == frozenset(range(8))
        commit_ticks(postgres_engine, counters=10, ticks=1)
        with caplog.at_level("WARNING", logger="tactical.outbox"):
            rounds([sixteen, eight])
        assert (sixteen.owned_partitions, eight.owned_partitions) == (frozenset(), frozenset())
        assert sixteen_publisher.published == []
        assert len(eight_publisher.published) == 10
        assert pending_count(postgres_engine) == 10
        assert "eight (partitions=8)" in caplog.text
        assert "stop every relay before changing partitions" in caplog.text

    def test_rows_without_a_partition_key_are_keyed_and_published_in_order(
        self, api_side: Side, postgres_engine: sa.Engine
    ) -> None:
        """Rows an older writer left unkeyed get their key; their aggregate's order holds."""
        (counter,) = commit_ticks(postgres_engine, counters=1, ticks=3)
        with postgres_engine.begin() as connection:
            connection.execute(outbox_table.update().values(partition_key=None))
        tick(postgres_engine, counter, times=2)  # keyed rows behind unkeyed ones
        publisher = RecordingPublisher()
        relay = api_side.relay(postgres_engine, publisher, partitions=PARTITIONS)
        rounds([relay])
        assert in_order_per_aggregate(publisher.published) == {str(counter): [1, 2, 3, 4, 5]}
        with postgres_engine.connect() as connection:
            keys = connection.execute(sa.select(outbox_table.c.partition_key)).scalars().all()
        assert len(set(keys)) == 1
        assert None not in keys


@pytest.mark.postgres
class TestSeveralPartitionedRelays:
    def test_relays_joining_and_leaving_under_load_publish_each_row_once_in_order(
        self, api_side: Side, postgres_engine: sa.Engine
    ) -> None:
        """Three running relays, one joining late and one leaving early, while writers commit."""
        counters = commit_ticks(postgres_engine, counters=24, ticks=1)
        publisher = RecordingPublisher()  # shared: its order is the order of publication
        relays = [
            api_side.relay(postgres_engine, publisher, partitions=PARTITIONS, batch_size=10)
            for _ in range(3)
        ]
        stops = [threading.Event() for _ in relays]
        threads = [
            threading.Thread(target=r.run, args=(s,), kwargs={"idle_interval": 0.05})
            for r, s in zip(relays, stops, strict=True)
        ]
        threads[0].start()
        threads[1].start()
        for round_number in range(8):
            for counter in counters:
                tick(postgres_engine, counter)
            if round_number == 2:
                threads[2].start()
            if round_number == 5:
                stops[0].set()
        wait_until(lambda: pending_count(postgres_engine) == 0, "publishing every row")
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads)
        positions = [m.position for m in publisher.published]
        assert len(positions) == len(set(positions))
        assert sorted(positions) == all_positions(postgres_engine)
        expected = list(range(1, 10))
        assert in_order_per_aggregate(publisher.published) == {str(c): expected for c in counters}
        assert set(lease_owners(postgres_engine).values()) == {None}  # all stopped cleanly


def _worker(
    url: sa.URL, stream: str, name: str, lease_ttl: float, api: str = "sync"
) -> subprocess.Popen[str]:
    """A relay process (tests/outbox/partitioned_worker.py) of ``api`` to the Redis ``stream``."""
    root = Path(__file__).parents[2]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.outbox.partitioned_worker",
            url.render_as_string(hide_password=False),
            stream,
            name,
            str(PARTITIONS),
            str(lease_ttl),
            "stream",
            "1",
            api,
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path])},
    )


@pytest.mark.slow
@pytest.mark.postgres
class TestRelayProcesses:
    @pytest.mark.parametrize("api", ["sync", "async"])
    def test_a_killed_relays_partitions_are_taken_over_and_order_holds(
        self, postgres_engine: sa.Engine, redis_client: redis.Redis, stream_name: str, api: str
    ) -> None:
        """Three relay processes to Redis; one SIGKILLed mid-stream: nothing lost, order kept."""
        counters = commit_ticks(postgres_engine, counters=30, ticks=1)
        names = [f"relay-{n}-{uuid4().hex[:6]}" for n in range(3)]
        workers = [_worker(postgres_engine.url, stream_name, n, 2, api) for n in names]
        try:
            for worker in workers:
                assert worker.stdout is not None
                assert worker.stdout.readline().strip() == "ready"
            for round_number in range(10):
                for counter in counters:
                    tick(postgres_engine, counter)
                if round_number == 4:
                    wait_until(
                        lambda: names[0] in set(lease_owners(postgres_engine).values()),
                        "the first relay's claim",
                    )
                    workers[0].send_signal(signal.SIGKILL)
                    assert workers[0].wait(30) == -signal.SIGKILL
                    # Within lease_ttl plus one idle_interval (about 2 s unloaded), with a
                    # margin for a loaded machine's scheduling; not a timing assertion.
                    wait_until(
                        lambda: names[0] not in set(lease_owners(postgres_engine).values()),
                        "the takeover of the killed relay's partitions",
                        seconds=2 + 30,
                    )
            wait_until(
                lambda: pending_count(postgres_engine) == 0, "publishing every row", seconds=60
            )
            owners = set(lease_owners(postgres_engine).values())
            assert names[0] not in owners
            assert owners <= set(names[1:])
        finally:
            for worker in workers[1:]:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(30)
                if worker.stdout is not None:
                    worker.stdout.close()
        assert [w.returncode for w in workers[1:]] == [0, 0]
        assert set(lease_owners(postgres_engine).values()) == {None}
        received = [
            OutboxMessage.from_wire(fields[b"body"], json.loads(fields[b"headers"]))
            for _, fields in redis_client.xrange(stream_name)
        ]
        self.assert_delivered_once_in_order(received, postgres_engine, counters, ticks=11)

    @staticmethod
    def assert_delivered_once_in_order(
        received: Sequence[OutboxMessage], engine: sa.Engine, counters: Sequence[UUID], ticks: int
    ) -> None:
        """Every row arrived; deduplicated by event id, each aggregate's ticks are in order.

        A killed relay may have sent a batch it could not mark: its successor sends it again
        (at least once), which an inbox drops by event id.
        """
        first_seen: dict[UUID, OutboxMessage] = {}
        for message in received:
            first_seen.setdefault(message.event_id, message)
        assert sorted(m.position for m in first_seen.values()) == all_positions(engine)
        assert in_order_per_aggregate(list(first_seen.values())) == {
            str(c): list(range(1, ticks + 1)) for c in counters
        }
