"""ProjectionRunner and AsyncProjectionRunner: checkpoints, rebuilds, failures, several projections."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from uuid import uuid4

import pytest
from tests.outbox.sides import AsyncSide, SyncSide
from tests.projections.views import (
    DrivenRunner,
    Failing,
    applied,
    applied_event_ids,
    checkpoint,
    counter_projection,
    counts_in_view,
    counts_of_aggregates,
    create_views,
    tick,
    ticked_event_ids,
)

import sqlalchemy as sa
from tactical import DomainEvent, JsonCodec
from tactical.projections import (
    AsyncProjection,
    AsyncProjectionRunner,
    Projection,
    ProjectionError,
    ProjectionRunner,
)
from tactical.sqlalchemy import SqlAlchemyUnitOfWork
from tactical.testing import Counter, CounterTicked


@pytest.fixture
def views(engine: sa.Engine) -> sa.Engine:
    """``engine`` with the counters' read model, empty."""
    create_views(engine)
    return engine


class TestCatchUp:
    def test_applies_every_event_once_in_each_aggregates_order(
        self, views: sa.Engine, side: SyncSide | AsyncSide
    ) -> None:
        """Catching up applies each committed event once, per counter in commit order."""
        ids = [uuid4() for _ in range(3)]
        for round_ in range(4):
            for counter_id in ids:
                tick(views, counter_id, times=round_ + 1)
        runner = DrivenRunner(side, views, [counter_projection(side)], batch_size=7)
        assert runner.catch_up("counters") == len(ticked_event_ids(views))
        assert counts_in_view(views) == counts_of_aggregates(views, ids)
        assert applied(views) == {i: list(range(1, 11)) for i in ids}
        assert sorted(applied_event_ids(views)) == sorted(ticked_event_ids(views))

    def test_a_second_catch_up_applies_only_new_events(
        self, views: sa.Engine, side: SyncSide | AsyncSide
    ) -> None:
        """The checkpoint remembers what was applied: nothing twice, new events next time."""
        counter_id = uuid4()
        tick(views, counter_id, times=3)
        runner = DrivenRunner(side, views, [counter_projection(side)])
        assert runner.run_once() == 3
        assert runner.run_once() == 0
        tick(views, counter_id, times=2)
        assert runner.run_once() == 2
        assert applied(views) == {counter_id: [1, 2, 3, 4, 5]}

    def test_a_new_runner_resumes_at_the_stored_checkpoint(
        self, views: sa.Engine, side: SyncSide | AsyncSide
    ) -> None:
        """A restarted runner reads the checkpoint from the database, not from memory."""
        counter_id = uuid4()
        tick(views, counter_id, times=2)
        DrivenRunner(side, views, [counter_projection(side)]).catch_up("counters")
        stored = checkpoint(views)
        tick(views, counter_id)
        DrivenRunner(side, views, [counter_projection(side)]).catch_up("counters")
        assert applied(views) == {counter_id: [1, 2, 3]}
        assert stored is not None
        assert checkpoint(views) > stored  # type: ignore[operator]

    def test_events_without_a_handler_move_the_checkpoint(
        self, views: sa.Engine, side: SyncSide | AsyncSide
    ) -> None:
        """Events the projection does not handle are passed over, not read again."""
        counter_id = uuid4()
        tick(views, counter_id, times=2)
        with SqlAlchemyUnitOfWork(views) as uow:
            uow.repository(Counter).require(counter_id).rename("renamed")
            uow.commit()
        runner = DrivenRunner(side, views, [counter_projection(side)])
        assert runner.catch_up("counters") == 3
        assert runner.catch_up("counters") == 0
        assert counts_in_view(views) == {counter_id: 2}

    def test_batches_stop_at_the_asked_number(
        self, views: sa.Engine, side: SyncSide | AsyncSide
    ) -> None:
        """catch_up(batches=1) reads one batch only."""
        tick(views, uuid4(), times=5)
        runner = DrivenRunner(side, views, [counter_projection(side)], batch_size=2)
        assert runner.catch_up("counters", batches=1) == 2
        assert runner.catch_up("counters") == 3


class TestFailures:
    def test_a_failing_event_stops_its_projection_before_it(
        self, views: sa.Engine, side: SyncSide | AsyncSide
    ) -> None:
        """The events before the failing one are kept; it and the later ones are not applied."""
        counter_id = uuid4()
        tick(views, counter_id, times=5)
        failing = Failing()
        failing.on.add((counter_id, 3))
        runner = DrivenRunner(side, views, [counter_projection(side, failing=failing)])
        with pytest.raises(ProjectionError, match="failed on the event at outbox position") as info:
            runner.catch_up("counters")
        assert info.value.projection == "counters"
        assert info.value.event_type.endswith("CounterTicked")
        assert isinstance(info.value.__cause__, RuntimeError)
        assert applied(views) == {counter_id: [1, 2]}
        assert checkpoint(views) is not None
        assert checkpoint(views)[1] == info.value.position - 1  # type: ignore[index]

    def test_a_failing_event_is_never_skipped(
        self, views: sa.Engine, side: SyncSide | AsyncSide
    ) -> None:
        """Trying again fails again at the same event; once it passes, everything follows."""
        counter_id = uuid4()
        tick(views, counter_id, times=4)
        failing = Failing()
        failing.on.add((counter_id, 1))
        runner = DrivenRunner(side, views, [counter_projection(side, failing=failing)])
        positions = set()
        for _ in range(3):
            with pytest.raises(ProjectionError) as info:
                runner.run_once()
            positions.add(info.value.position)
        assert len(positions) == 1
        assert applied(views) == {}
        failing.on.clear()
        assert runner.catch_up("counters") == 4
        assert applied(views) == {counter_id: [1, 2, 3, 4]}

    def test_an_unknown_event_type_stops_the_projection(
        self, views: sa.Engine, side: SyncSide | AsyncSide
    ) -> None:
        """A stored type name the codec cannot resolve is a failure, not a silent pass."""
        tick(views, uuid4(), times=1)
        renamed = JsonCodec()
        renamed.register(CounterTicked, name="tests.Ticked")
        runner = DrivenRunner(side, views, [counter_projection(side)], codec=renamed)
        with pytest.raises(ProjectionError, match="UnknownTypeError"):
            runner.catch_up("counters")
        assert applied(views) == {}

    def test_run_retries_a_failing_projection_while_others_go_on(
        self, views: sa.Engine, side: SyncSide | AsyncSide
    ) -> None:
        """run() keeps the healthy projection current and the failing one at its event."""
        counter_id = uuid4()
        tick(views, counter_id, times=3)
        failing = Failing()
        failing.on.add((counter_id, 2))
        healthy = counter_projection(side, "healthy")
        stuck = counter_projection(side, "stuck", failing=failing)
        runner = DrivenRunner(side, views, [stuck, healthy])
        stop = threading.Event()
        thread = threading.Thread(
            target=runner.run, args=(stop,), kwargs={"idle_interval": 0.01, "max_backoff": 0.05}
        )
        thread.start()
        try:
            _wait_for(lambda: applied(views, "healthy") == {counter_id: [1, 2, 3]})
            tick(views, counter_id)
            _wait_for(lambda: applied(views, "healthy") == {counter_id: [1, 2, 3, 4]})
            assert applied(views, "stuck") == {counter_id: [1]}
            failing.on.clear()
            _wait_for(lambda: applied(views, "stuck") == {counter_id: [1, 2, 3, 4]})
        finally:
            stop.set()
            thread.join(30)
        assert not thread.is_alive()


class TestRebuild:
    def test_rebuild_clears_and_replays_from_the_start(
        self, views: sa.Engine, side: SyncSide | AsyncSide
    ) -> None:
        """After a rebuild the read model is recomputed from every event, each once."""
        ids = [uuid4(), uuid4()]
        for counter_id in ids:
            tick(views, counter_id, times=3)
        runner = DrivenRunner(side, views, [counter_projection(side)])
        runner.catch_up("counters")
        runner.rebuild("counters")
        assert counts_in_view(views) == {}
        assert checkpoint(views) == (0, 0)
        runner.catch_up("counters")
        assert applied(views) == {i: [1, 2, 3] for i in ids}
        assert counts_in_view(views) == counts_of_aggregates(views, ids)

    def test_rebuild_needs_a_clear_hook(self, views: sa.Engine, side: SyncSide | AsyncSide) -> None:
        """Without a clear hook a rebuild would apply everything twice: it is refused."""
        runner = DrivenRunner(side, views, [counter_projection(side, clear=False)])
        with pytest.raises(ValueError, match="no clear hook"):
            runner.rebuild("counters")


class TestSeveralProjections:
    def test_each_projection_keeps_its_own_checkpoint(
        self, views: sa.Engine, side: SyncSide | AsyncSide
    ) -> None:
        """A projection run less often is behind; catching up later loses nothing."""
        counter_id = uuid4()
        runner = DrivenRunner(
            side, views, [counter_projection(side, "fast"), counter_projection(side, "slow")]
        )
        tick(views, counter_id, times=2)
        runner.catch_up("fast")
        tick(views, counter_id, times=2)
        runner.catch_up("fast")
        assert applied(views, "fast") == {counter_id: [1, 2, 3, 4]}
        assert applied(views, "slow") == {}
        runner.catch_up("slow")
        assert applied(views, "slow") == {counter_id: [1, 2, 3, 4]}
        assert checkpoint(views, "slow") == checkpoint(views, "fast")

    def test_a_second_runner_of_a_projection_applies_nothing_twice(
        self, views: sa.Engine, side: SyncSide | AsyncSide
    ) -> None:
        """Two runners of one projection, in threads, apply each event once between them."""
        ids = [uuid4() for _ in range(4)]
        for counter_id in ids:
            tick(views, counter_id, times=10)
        runners = [
            DrivenRunner(side, views, [counter_projection(side)], batch_size=3) for _ in range(2)
        ]
        threads = [threading.Thread(target=r.catch_up, args=("counters",)) for r in runners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        DrivenRunner(side, views, [counter_projection(side)]).catch_up("counters")
        assert sorted(applied_event_ids(views)) == sorted(ticked_event_ids(views))
        assert applied(views) == {i: list(range(1, 11)) for i in ids}


class TestSettings:
    def test_runner_refuses_bad_settings(self, sqlite_engine: sa.Engine) -> None:
        """Empty, duplicated names, a batch size below 1 and a bad timeout are refused."""
        one = Projection("one")
        with pytest.raises(ValueError, match="at least one projection"):
            ProjectionRunner(sqlite_engine, [])
        with pytest.raises(ValueError, match="two projections are named 'one'"):
            ProjectionRunner(sqlite_engine, [one, Projection("one")])
        with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
            ProjectionRunner(sqlite_engine, [one], batch_size=0)
        with pytest.raises(ValueError, match="database_timeout must be positive, got 0"):
            ProjectionRunner(sqlite_engine, [one], database_timeout=0)
        with pytest.raises(ValueError, match="no projection 'two'"):
            ProjectionRunner(sqlite_engine, [one]).catch_up("two")

    def test_runners_refuse_the_wrong_engine(self, sqlite_engine: sa.Engine) -> None:
        """A sync runner wants an Engine, an async one an AsyncEngine."""
        with pytest.raises(TypeError, match="expected a SQLAlchemy Engine"):
            ProjectionRunner("sqlite://", [Projection("one")])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="expected a SQLAlchemy AsyncEngine"):
            AsyncProjectionRunner(sqlite_engine, [AsyncProjection("one")])  # type: ignore[arg-type]

    def test_projection_refuses_bad_names_and_handlers(self) -> None:
        """A projection needs a name, DomainEvent classes, one handler per class."""
        with pytest.raises(ValueError, match="1 to 255 characters, got ''"):
            Projection("")
        projection = Projection("p")
        projection.on(CounterTicked)(lambda event, connection: None)
        with pytest.raises(ValueError, match="already has a handler for CounterTicked"):
            projection.on(CounterTicked)(lambda event, connection: None)
        with pytest.raises(TypeError, match="is not a DomainEvent class"):
            projection.on(int)(lambda event, connection: None)  # type: ignore[type-var]
        assert "CounterTicked" in repr(projection)

    def test_a_base_class_handler_receives_subclasses(self) -> None:
        """The nearest registered class in the event's MRO wins."""
        projection = Projection("p")

        def base(event: DomainEvent, connection: sa.Connection) -> None: ...

        def ticked(event: CounterTicked, connection: sa.Connection) -> None: ...

        projection.on(DomainEvent)(base)
        assert projection.handler_for(CounterTicked) is base
        projection.on(CounterTicked)(ticked)
        assert projection.handler_for(CounterTicked) is ticked


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition was not met within 30s")
        time.sleep(0.02)
