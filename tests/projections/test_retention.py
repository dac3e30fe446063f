"""purge_outbox: only rows the relay published and every projection applied go; the last stays."""

from __future__ import annotations

from uuid import uuid4

import pytest
from tests.outbox.sides import SyncSide
from tests.projections.views import (
    applied,
    counter_projection,
    counts_in_view,
    counts_of_aggregates,
    create_views,
    tick,
)

import sqlalchemy as sa
from tactical import EventBus, JsonCodec
from tactical.outbox import EventBusPublisher, OutboxRelay
from tactical.projections import ProjectionRunner, purge_outbox
from tactical.sqlalchemy import outbox_table


@pytest.fixture
def views(engine: sa.Engine) -> sa.Engine:
    """``engine`` with the counters' read model, empty."""
    create_views(engine)
    return engine


def positions(engine: sa.Engine) -> list[int]:
    """The positions the outbox holds, in order."""
    t = outbox_table
    with engine.connect() as connection:
        return list(connection.execute(sa.select(t.c.position).order_by(t.c.position)).scalars())


def relay(engine: sa.Engine, rows: int) -> None:
    """Publish (and mark) the outbox's first ``rows`` unpublished rows."""
    OutboxRelay(engine, EventBusPublisher(EventBus(), JsonCodec()), batch_size=rows).relay_once()


class TestPurgeOutbox:
    def test_keeps_what_the_slowest_projection_or_the_relay_still_needs(
        self, views: sa.Engine
    ) -> None:
        """Rows behind every checkpoint and published go; the slow projection then loses nothing."""
        counter_id = uuid4()
        tick(views, counter_id, times=10)
        side = SyncSide()
        fast = ProjectionRunner(views, [counter_projection(side, "fast")])
        slow = ProjectionRunner(views, [counter_projection(side, "slow")], batch_size=2)
        fast.catch_up("fast")
        slow.catch_up("slow", batches=2)  # at the 4th event
        relay(views, 7)
        first = positions(views)[0]

        assert purge_outbox(views) == 4
        assert positions(views) == [first + n for n in range(4, 10)]
        slow.catch_up("slow")
        assert applied(views, "slow") == {counter_id: list(range(1, 11))}
        assert counts_in_view(views, "slow") == counts_of_aggregates(views, [counter_id])

    def test_keeps_rows_the_relay_has_not_published(self, views: sa.Engine) -> None:
        """Unpublished rows stay, even when every projection applied them."""
        tick(views, uuid4(), times=3)
        ProjectionRunner(views, [counter_projection(SyncSide())]).catch_up("counters")
        assert purge_outbox(views) == 0
        assert len(positions(views)) == 3

    def test_keeps_the_last_row_so_that_no_position_is_handed_out_again(
        self, views: sa.Engine
    ) -> None:
        """With everything published and applied, the last row stays and the next follows it."""
        counter_id = uuid4()
        tick(views, counter_id, times=3)
        runner = ProjectionRunner(views, [counter_projection(SyncSide())])
        runner.catch_up("counters")
        relay(views, 10)
        last = positions(views)[-1]
        assert purge_outbox(views) == 2
        assert positions(views) == [last]
        tick(views, counter_id)
        assert positions(views) == [last, last + 1]
        runner.catch_up("counters")
        assert applied(views) == {counter_id: [1, 2, 3, 4]}

    def test_without_projections_every_published_row_but_the_last_goes(
        self, views: sa.Engine
    ) -> None:
        """No projection registered: only the relay's progress counts."""
        tick(views, uuid4(), times=5)
        relay(views, 3)
        assert purge_outbox(views) == 3
        assert len(positions(views)) == 2

    def test_an_empty_outbox_purges_nothing(self, views: sa.Engine) -> None:
        """Nothing to delete is not an error."""
        assert purge_outbox(views) == 0
