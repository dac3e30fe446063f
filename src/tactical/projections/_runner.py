"""ProjectionRunner: keeps projections up to date from the outbox, on a sync Engine."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from tactical._codec import JsonCodec
from tactical._flow import run
from tactical.outbox._relay_flow import DEFAULT_DATABASE_TIMEOUT
from tactical.outbox._worker import IdlingWorker
from tactical.projections._flow import READ_COMMITTED, Apply, Clear, ProjectionCore, RunnerOp
from tactical.projections._projection import Projection
from tactical.sqlalchemy._engine import configure_engine, sync_engine
from tactical.sqlalchemy._shared import _default_codec  # pyright: ignore[reportPrivateUsage]

__all__ = ["ProjectionRunner"]


class ProjectionRunner(ProjectionCore[Projection], IdlingWorker[RunnerOp]):
    """Applies the outbox's committed events to projections, each at its own checkpoint.

    For each projection, a batch is one transaction: read the events after its checkpoint
    (up to ``batch_size``), call the projection's handlers with each event and the
    transaction's ``Connection``, store the new checkpoint, commit. So the read model and
    its checkpoint move together; a crash anywhere loses both or neither, and every event
    is applied exactly once.

    **Order, and no event skipped.** Events come in the order their aggregates committed
    them. On PostgreSQL outbox positions become visible out of order (they are taken from
    a sequence at insert, and transactions commit in another order), so a reader that
    trusted "the highest position seen" would skip the late ones: the runner reads only
    rows whose transactions have all ended, in ``(transaction_order, position)`` order (see
    :doc:`/explanation/projections`). The price: an open transaction that has written
    anything, anywhere in the PostgreSQL cluster, holds back every projection's view of the
    rows written after it began, until it ends. Keep transactions short and watch for
    sessions left idle in a transaction (``idle_in_transaction_session_timeout``).

    **Several projections, several runners.** Each projection has its own checkpoint and
    its own transactions: a slow or failing one holds back no other. Two runners of the
    same projection do not apply an event twice: on PostgreSQL the batch locks the
    projection's checkpoint row and the other runner skips that projection meanwhile (run a
    second runner for availability); on SQLite each batch holds the write lock.

    **A failing handler.** The projection stops at the event: the events before it in the
    batch are kept, the event is not skipped, and :meth:`run` tries it again with backoff
    (logging :class:`ProjectionError` each time) while the other projections go on. An
    event whose stored type the codec does not know fails the same way.

    Args:
        engine: The database holding ``tactical_outbox``, ``tactical_projection_checkpoints``
            and the read models' tables.
        projections: The projections to keep up to date (distinct names).
        codec: The codec the outbox was written with; the units of work's default if omitted.
        batch_size: The most outbox rows a projection reads per transaction.
        database_timeout: Seconds a statement, commit or rollback (the handlers' statements
            included) may take on PostgreSQL before the connection is cut; None for no limit.

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy ``Engine``.
        ValueError: No projections, two with one name, ``batch_size`` below 1,
            ``database_timeout`` not positive, or a database other than PostgreSQL or SQLite.

    .. versionadded:: 0.2.0
    """

    _isolation_level = READ_COMMITTED

    def __init__(
        self,
        engine: sa.Engine,
        projections: Sequence[Projection],
        *,
        codec: JsonCodec | None = None,
        batch_size: int = 100,
        database_timeout: float | None = DEFAULT_DATABASE_TIMEOUT,
    ) -> None:
        configure_engine(sync_engine(engine, "use AsyncProjectionRunner for it"))
        codec = codec if codec is not None else _default_codec
        super().__init__(engine.url, projections, codec, batch_size, database_timeout)
        self._use_engine(engine)

    def run_once(self) -> int:
        """Give every projection one batch; return how many outbox rows they read in all.

        Raises:
            ProjectionError: A projection's handler failed on an event (the first such
                projection, once every projection had its batch); that projection stays
                before the event.
        """
        return run(self._run_once(), self._connected)

    def catch_up(self, projection: Projection | str, *, batches: int | None = None) -> int:
        """Apply ``projection``'s batches until one finds nothing new; how many rows they read.

        Every event committed before the call is then applied (unless another runner holds
        the projection: this one then stops at once, and that one applies them).

        Args:
            projection: The projection, or its name.
            batches: Stop after this many batches; None for until a batch reads nothing.

        Raises:
            ValueError: The runner has no such projection.
            ProjectionError: Its handler failed on an event.
        """
        return run(self._catch_up(projection, batches), self._connected)

    def rebuild(self, projection: Projection | str) -> None:
        """Clear ``projection``'s read model and replay it from the start of the outbox.

        In one transaction its clear hook runs and its checkpoint goes back to the start
        (waiting for a batch of another runner to end); the next batches apply the events
        the outbox still holds (see :func:`purge_outbox` for what it no longer holds).

        Raises:
            ValueError: The runner has no such projection, or it has no clear hook.
        """
        self._on_connection(self._rebuild(self._named(projection)))

    # run() is IdlingWorker's; this is its documentation on this class.
    _run_doc = """Catch every projection up, then follow the outbox until ``stop`` is set.

    A projection whose batch was full gets the next at once; when none was, the runner
    waits ``idle_interval`` seconds (polling). A failing projection is retried after a
    backoff (``initial_backoff`` doubling up to ``max_backoff``, with jitter), each
    failure logged on the ``tactical.projections`` logger; the others go on. Never
    raises for a handler's or the database's failure.

    Args:
        stop: Set it (from another thread or a signal handler) to end the loop.
        idle_interval: Seconds to wait when no projection had a full batch.
        initial_backoff: Seconds to wait before retrying a projection after its first
            failure.
        max_backoff: The longest wait between retries of a failing projection.
    """

    def _perform(self, connection: sa.Connection, op: RunnerOp) -> object:
        if isinstance(op, Apply):
            return op.handler(op.event, connection)
        if isinstance(op, Clear):
            return op.hook(connection)
        return super()._perform(connection, op)
