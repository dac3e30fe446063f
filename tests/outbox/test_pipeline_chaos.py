"""The whole pipeline under SIGKILL: partitioned relays, partitioned consumers, a projection.

Four relay processes (:mod:`tests.outbox.partitioned_worker`, sync and async ones) share the
outbox's partitions on PostgreSQL and publish to a partitioned broker (RabbitMQ queues, or
Redis streams); four consumer processes (:mod:`tests.outbox.partition_worker`, sync and async
ones) share the broker's partitions and apply each event, through the inbox, to a mirror in a
database of their own; a projection runner follows the outbox in this process. Writer threads meanwhile load a
counter, tick it and commit, on many counters, while random relays and consumers are SIGKILLed
and replaced. Once the writers stop and everything drained: every counter's mirror saw each of
its ticks once, in order (nothing lost, nothing applied twice, order kept at the effect), and
the projection's view equals the counters' state.

``TACTICAL_CHAOS_SECONDS`` sets how long the kills go on (default 12 s, for the suite; the
issue's full minute: ``TACTICAL_CHAOS_SECONDS=60 pytest -s -n 0 tests/outbox/test_pipeline_chaos.py``,
or ``nox -s chaos``); ``TACTICAL_CHAOS_SEED`` replays a run's choices (the seed is printed,
and added to a failure's message).
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from tests.outbox.helpers import commit_ticks, mirrors, pending_count, tick
from tests.outbox.sides import SyncSide
from tests.outbox.test_partitioned_consumers import Partitioned, made_partitioned
from tests.postgres import created_database
from tests.projections.views import (
    applied,
    counter_projection,
    counts_in_view,
    counts_of_aggregates,
    create_views,
)

import sqlalchemy as sa
from tactical.projections import Projection, ProjectionRunner
from tactical.sqlalchemy import (
    create_schema,
    inbox_table,
    metadata,
    outbox_table,
    relay_leases_table,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("TACTICAL_CHAOS_SECONDS") or 12)
"""How long writers commit and processes are killed (seconds)."""
RELAYS = 4
CONSUMERS = 4
OUTBOX_PARTITIONS = 8
BROKER_PARTITIONS = 4
RELAY_LEASE = 2.0
COUNTERS = 40
WRITERS = 3
DRAIN = 120.0 + 10 * SECONDS
"""The longest wait, once the kills stop, for every event to reach the mirrors and the view.

Generous: on a loaded machine (two cores shared by the suite's other workers) draining a
minute of writes took over four minutes.
"""
STARTING = 120.0
"""The longest wait for the first workers to run (Python processes start slowly under load)."""


def wait_until(condition: Callable[[], bool], what: str, seconds: float) -> float:
    """Poll ``condition`` until it holds and return how long it took; fail after ``seconds``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            pytest.fail(f"{what} did not happen within {seconds:.0f}s")
        time.sleep(0.2)
    return time.monotonic() - start


@dataclass
class Worker:
    """A relay or consumer process, its output in a file."""

    role: str
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ready(self) -> bool:
        """Whether it said it runs its loop (as both worker scripts do, with ``ready``)."""
        return "ready" in self.output()


@dataclass
class Pipeline:
    """The processes of one run, and what happened to them."""

    broker: Partitioned
    url: str
    consumer_url: str
    logs: Path
    rng: random.Random
    workers: list[Worker] = field(default_factory=list[Worker])
    killed: list[Worker] = field(default_factory=list[Worker])
    started = 0
    started_at: dict[str, float] = field(default_factory=dict[str, float])
    killed_at: dict[str, float] = field(default_factory=dict[str, float])

    def start(self, role: str) -> Worker:
        self.started += 1
        name = f"{role}-{self.started}-{uuid4().hex[:6]}"
        self.started_at[name] = time.monotonic()
        module = "partitioned_worker" if role == "relay" else "partition_worker"
        # Sync and async workers take turns, relays and consumers alike.
        api = "sync" if self.started % 2 else "async"
        if role == "relay":
            arguments = [
                self.url,
                self.broker.name,
                name,
                str(OUTBOX_PARTITIONS),
                str(RELAY_LEASE),
                self.broker.broker,
                str(BROKER_PARTITIONS),
                api,
            ]
        else:
            arguments = [
                self.broker.broker,
                api,
                self.broker.name,
                str(BROKER_PARTITIONS),
                self.consumer_url,
            ]
        log = self.logs / f"{name}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", f"tests.outbox.{module}", *arguments],
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])},
            )
        worker = Worker(role, name, process, log)
        self.workers.append(worker)
        return worker

    def kill_one(self, role: str) -> Worker | None:
        """SIGKILL a random running worker of ``role`` and start its replacement.

        Only one that is running its loop: one still starting holds nothing yet.
        """
        running = [w for w in self.workers if w.role == role and w.ready()]
        if not running:
            return None
        victim = self.rng.choice(running)
        victim.process.send_signal(signal.SIGKILL)
        assert victim.process.wait(30) == -signal.SIGKILL, victim.output()
        self.killed_at[victim.name] = time.monotonic()  # before its replacement starts
        self.workers.remove(victim)
        self.killed.append(victim)
        self.start(role)
        return victim

    def stop(self) -> None:
        """SIGTERM every worker (SIGKILL those that do not stop within 30 s)."""
        for worker in self.workers:
            worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.process.wait(30)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(10)


class Owners:
    """Polls who owns each partition: relay leases in PostgreSQL, consumer leases in Redis.

    Counts the changes of owner, and the relay partitions taken over from a killed relay
    (with the time from the kill to each takeover), apart when the new owner was started
    after the kill: then no relay running at the kill could take the partition (all were
    killed within a lease, or are at their fair share while killed ones still count), and
    the takeover waited for a replacement's start (seconds of imports under load).
    """

    def __init__(self, engine: sa.Engine, pipeline: Pipeline) -> None:
        self.engine, self.pipeline = engine, pipeline
        self.relay_changes = 0
        self.consumer_changes = 0
        self.takeovers: list[float] = []
        self.by_replacements: list[float] = []
        self.killed_at: dict[str, float] = {}
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="owners")

    def __enter__(self) -> Owners:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _poll(self) -> None:
        relays: dict[int, str | None] = {}
        consumers: dict[int, object] = {}
        broker = self.pipeline.broker
        t = relay_leases_table
        try:
            while not self._stop.wait(0.2):
                with self.engine.connect() as connection:
                    rows = connection.execute(sa.select(t.c.partition, t.c.owner)).all()
                for partition, owner in rows:
                    before = relays.get(partition)
                    if owner is not None and before is not None and owner != before:
                        self.relay_changes += 1
                        if before in self.killed_at:
                            killed = self.killed_at[before]
                            started = self.pipeline.started_at.get(owner, 0.0)
                            took = time.monotonic() - killed
                            (self.by_replacements if started > killed else self.takeovers).append(
                                took
                            )
                    if owner is not None:
                        relays[partition] = owner
                if broker.broker != "redis":
                    continue
                for p in range(BROKER_PARTITIONS):
                    token = broker.redis.get(f"{broker.name}:{p}:lease:mirror")
                    if token is not None and consumers.get(p) not in (None, token):
                        self.consumer_changes += 1
                    if token is not None:
                        consumers[p] = token
        except BaseException as error:
            self.errors.append(error)


class Writers:
    """Threads that load a random counter, tick it and commit, until stopped."""

    def __init__(self, engine: sa.Engine, counters: list[UUID], seed: int) -> None:
        self.engine, self.counters = engine, counters
        self.commits = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._write, args=(random.Random(seed + n),), name=f"w{n}")
            for n in range(WRITERS)
        ]

    def _write(self, rng: random.Random) -> None:
        try:
            while not self._stop.is_set():
                tick(self.engine, rng.choice(self.counters), times=rng.randint(1, 3))
                with self._lock:
                    self.commits += 1
                self._stop.wait(rng.uniform(0.0, 0.03))
        except BaseException as error:
            self.errors.append(error)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.ident is not None:  # started (a failed start of the workers comes first)
                thread.join(60)
        assert not any(thread.is_alive() for thread in self._threads)


@pytest.fixture(
    params=[
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def broker(request: pytest.FixtureRequest) -> Iterator[Partitioned]:
    """A unique exchange and queue prefix on RabbitMQ, or stream on Redis; deleted afterwards."""
    with made_partitioned(request.param) as made:
        made.declare(BROKER_PARTITIONS)
        yield made


@pytest.fixture
def consumer_database(postgres_engine: sa.Engine) -> Iterator[sa.Engine]:
    """The consumers' own PostgreSQL database (``<test database>_chaos``), emptied."""
    url = created_database(postgres_engine.url.render_as_string(hide_password=False), "chaos")
    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def seed() -> int:
    """The run's seed: ``TACTICAL_CHAOS_SEED``, or a random one (printed)."""
    chosen = int(os.environ.get("TACTICAL_CHAOS_SEED") or random.randrange(2**32))
    print(f"TACTICAL_CHAOS_SEED={chosen}")
    return chosen


@pytest.mark.postgres
def test_killed_relays_and_consumers_lose_repeat_and_reorder_nothing(
    broker: Partitioned,
    postgres_engine: sa.Engine,
    consumer_database: sa.Engine,
    tmp_path: Path,
    seed: int,
) -> None:
    """4 relays and 4 consumers, random ones SIGKILLed while writers commit: all applied once, in order."""
    try:
        chaos(broker, postgres_engine, consumer_database, tmp_path, seed)
    except BaseException as error:
        error.add_note(f"replay with TACTICAL_CHAOS_SEED={seed} (logs in {tmp_path})")
        raise


def chaos(
    broker: Partitioned, engine: sa.Engine, consumer: sa.Engine, logs: Path, seed: int
) -> None:
    rng = random.Random(seed)
    create_views(engine)
    counters = commit_ticks(engine, counters=COUNTERS, ticks=1)
    projection = counter_projection(SyncSide())
    assert isinstance(projection, Projection)
    runner = ProjectionRunner(engine, [projection], batch_size=100)
    projecting, projection_errors = threading.Event(), list[BaseException]()

    def project() -> None:
        try:
            runner.run(projecting, idle_interval=0.1)
        except BaseException as error:
            projection_errors.append(error)

    projector = threading.Thread(target=project, name="projection")
    pipeline = Pipeline(
        broker,
        engine.url.render_as_string(hide_password=False),
        consumer.url.render_as_string(hide_password=False),
        logs,
        rng,
    )
    writers = Writers(engine, counters, seed)
    try:
        for _ in range(RELAYS):
            pipeline.start("relay")
        for _ in range(CONSUMERS):
            pipeline.start("consumer")
        projector.start()
        wait_until(lambda: all(w.ready() for w in pipeline.workers), "the workers' start", STARTING)
        with Owners(engine, pipeline) as owners:
            writers.start()
            began = time.monotonic()
            # One of each first (in a random order), then random ones.
            # Only running workers are killed: under load a replacement takes seconds to
            # start, and when none of the role wanted runs, one of the other role is killed.
            roles = rng.sample(["relay", "consumer"], 2)
            while time.monotonic() - began < SECONDS:
                time.sleep(rng.uniform(0.5, 1.5))
                wanted = roles[0] if roles else rng.choice(["relay", "consumer"])
                victim = pipeline.kill_one(wanted)
                if victim is None and not roles:
                    victim = pipeline.kill_one("consumer" if wanted == "relay" else "relay")
                if victim is None:
                    continue
                if victim.role in roles:
                    roles.remove(victim.role)
                if victim.role == "relay":
                    owners.killed_at[victim.name] = pipeline.killed_at[victim.name]
            writers.stop()
            stopped = time.monotonic()
            expected = {
                counter: list(range(1, count + 1))
                for counter, count in counts_of_aggregates(engine, counters).items()
            }
            events = sum(len(counts) for counts in expected.values())
            relayed = wait_until(
                lambda: pending_count(engine) == 0, f"the relays' publishing {events} events", DRAIN
            )
            drained = relayed + wait_until(
                lambda: mirrors(consumer) == expected,
                f"the consumers' applying all {events} events",
                DRAIN,
            )
            wait_until(
                lambda: counts_in_view(engine) == {c: len(n) for c, n in expected.items()},
                "the projection's catching up",
                DRAIN,
            )
            drained_all = time.monotonic() - stopped
            time.sleep(1.0)  # anything applied twice late would show now
        exited = [w for w in pipeline.workers if w.process.poll() is not None]
        assert exited == [], [w.output() for w in exited]  # only the killed ones died
    finally:
        writers.stop()
        pipeline.stop()
        projecting.set()
        projector.join(30)
    kills = {r: sum(w.role == r for w in pipeline.killed) for r in ("relay", "consumer")}
    takeovers = owners.takeovers
    median = statistics.median(takeovers) if takeovers else 0.0
    longest = max(takeovers, default=0.0)
    late = owners.by_replacements
    waited = statistics.median(late) if late else 0.0
    print(
        f"{broker.broker}: {SECONDS:.0f}s, {writers.commits} commits, {events} events, "
        f"kills {kills}, relay takeovers {len(takeovers)} ({median:.1f}s after the kill in the "
        f"median, at most {longest:.1f}s; {len(late)} more by a relay started after the kill, "
        f"{waited:.1f}s in the median), relay owner changes "
        f"{owners.relay_changes}, redis consumer owner changes {owners.consumer_changes}, "
        f"relayed {relayed:.1f}s, drained {drained:.1f}s after the writers stopped (projection {drained_all:.1f}s)"
    )
    assert writers.errors == []
    assert projection_errors == []
    assert owners.errors == []
    assert kills["relay"] >= 1
    assert kills["consumer"] >= 1
    # Every tick reached its counter's mirror once, in order, after the kills.
    assert mirrors(consumer) == expected
    with consumer.connect() as connection:
        inbox = connection.execute(
            sa.select(sa.func.count()).where(inbox_table.c.consumer == "mirror")
        ).scalar_one()
        mirrored = connection.execute(
            sa.select(sa.func.count()).select_from(outbox_table)
        ).scalar_one()
    assert inbox == events  # one inbox row per event
    assert mirrored == events  # one effect (a CounterMirrored) per event
    # The projection applied each tick once, in each counter's order, and equals the counters.
    assert applied(engine) == expected
    assert counts_in_view(engine) == {c: len(n) for c, n in expected.items()}
    # The relays: every row published; the survivors released their partitions on SIGTERM.
    assert pending_count(engine) == 0
    assert owners.relay_changes >= 1
