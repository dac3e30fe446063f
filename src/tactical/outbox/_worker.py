"""A worker's loop and connections, written once for every worker, sync and async.

The outbox relay, the timer worker and the projection runner are workers of one database:
each round runs a flow (see :mod:`tactical._flow`) on a connection of their own, bounded on
PostgreSQL by ``database_timeout``, and their ``run`` loops wait, back off and stop alike;
the broker consumers' loops wait and stop alike too. What they share lives here once:

- the loop operations :class:`Stopped` (is a stop requested?), :class:`Wait` (sleep, less if
  a stop comes) and :class:`Connected` (run this flow on a connection; its result is the
  flow's), which :func:`perform_sync` and :func:`perform_async` carry out;
- :class:`WorkerCore`, the settings every worker checks and keeps, and its
  ``_polling_loop``: the relay's and the timer worker's ``run`` loop (waits, backoff, logs);
- :class:`SyncWorker` and :class:`AsyncWorker`, which run a worker's flows on a connection
  of a SQLAlchemy ``Engine`` or ``AsyncEngine``: all a sync or an async worker does itself;
- :class:`IdlingWorker` and :class:`AsyncIdlingWorker`, the ``run`` of the workers that wait
  ``idle_interval`` between rounds (the relays and the projection runners), written once;
  :class:`DocumentedRun` gives each public class its own copy of it, with its own docstring
  (the broker consumers' ``run`` too, see :mod:`tactical.outbox._consumer_flow`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import types
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeAlias, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import exc
from tactical._flow import Flow, run, run_async
from tactical.outbox._message import backoff_delay
from tactical.sqlalchemy._schema import with_schema_hint
from tactical.sqlalchemy._watchdog import cut_connection, guard_round_trips, watched_engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "AsyncIdlingWorker",
    "AsyncWorker",
    "Connected",
    "DocumentedRun",
    "IdlingWorker",
    "LoopWords",
    "Stopped",
    "SyncWorker",
    "Wait",
    "WorkerCore",
    "bounded_async_connection",
    "bounded_connection",
    "perform_async",
    "perform_sync",
    "wait_async",
]

_log = logging.getLogger("tactical.outbox")

Op = TypeVar("Op")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait ``seconds``, or less if a stop is requested meanwhile."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Stopped:
    """Whether a stop was requested."""


@dataclass(frozen=True, slots=True)
class Connected(Generic[Op]):
    """Run ``flow`` on a connection of the worker's database; its result is the flow's."""

    flow: Flow[Op, Any]


LoopOp: TypeAlias = Connected[Any] | Wait | Stopped


def perform_sync(
    stop: threading.Event, work: Callable[[Op], object]
) -> Callable[[Op | Stopped | Wait], object]:
    """Carry a loop's operations out in a thread: :class:`Stopped` and :class:`Wait` on ``stop``."""

    def perform(op: Op | Stopped | Wait) -> object:
        if isinstance(op, Stopped):
            return stop.is_set()
        if isinstance(op, Wait):
            return stop.wait(op.seconds)
        return work(op)

    return perform


def perform_async(
    stop: asyncio.Event, work: Callable[[Op], Awaitable[object]]
) -> Callable[[Op | Stopped | Wait], Awaitable[object]]:
    """Carry a loop's operations out on the event loop: :class:`Stopped` and :class:`Wait` on ``stop``."""

    async def perform(op: Op | Stopped | Wait) -> object:
        if isinstance(op, Stopped):
            return stop.is_set()
        if isinstance(op, Wait):
            return await wait_async(stop, op.seconds)
        return await work(op)

    return perform


async def wait_async(stop: asyncio.Event, seconds: float) -> bool:
    """Wait until ``stop`` is set or ``seconds`` passed; whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()


# -- the loop of a polling worker ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoopWords:
    """What a polling worker's log lines call it and its rounds.

    Attributes:
        worker: The worker, as its lines begin (``outbox relay``).
        nothing: What a failed round left undone (``nothing was fired``).
        resumed: What it does again after failures (``firing``).
        done: What a round did with its messages (``fired``).
    """

    worker: str
    nothing: str
    resumed: str
    done: str


# -- a worker of a database ----------------------------------------------------------------


class WorkerCore:
    """The settings every worker of a database checks and keeps, sync or async.

    Raises:
        ValueError: ``batch_size`` is below 1, or ``database_timeout`` is not positive.
    """

    def __init__(self, url: sa.URL, batch_size: int, database_timeout: float | None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if database_timeout is not None and not database_timeout > 0:
            raise ValueError(f"database_timeout must be positive, got {database_timeout}")
        self._batch_size = batch_size
        self._database_timeout = database_timeout
        self._postgres = url.get_backend_name() == "postgresql"
        self._database = _database_address(url)
        # Set when a round trip was cut for outliving database_timeout, so that the failure
        # is logged as the database's silence rather than as the error it caused.
        self._cut = threading.Event()

    # The isolation level of the worker's connections on PostgreSQL (None: the engine's).
    _isolation_level: ClassVar[str | None] = None

    def _isolation(self) -> str | None:
        return self._isolation_level if self._postgres else None

    def _guarded(self) -> bool:
        """Whether its round trips are bounded (on PostgreSQL, with a ``database_timeout``)."""
        return self._postgres and self._database_timeout is not None

    def _polling_loop(
        self,
        words: LoopWords,
        round_flow: Callable[[], Flow[Any, int]],
        interval: float,
        initial_backoff: float,
        max_backoff: float,
    ) -> Flow[LoopOp, None]:
        """Run rounds until stopped, backing off and logging while they fail.

        Each round is the flow ``round_flow()`` returns (called before the round connects), run
        on a connection; its result is how many messages it handled. A full round is followed
        at once by the next, a shorter one by a wait of ``interval`` seconds. A failed round is
        logged with :meth:`_what_failed` and followed by a wait of bounded, jittered
        exponential backoff; the first success after failures is logged too.
        """
        failures = 0
        while not (yield Stopped()):
            try:
                count: int = yield Connected(round_flow())
            except Exception as error:
                failures += 1
                delay = backoff_delay(failures, initial_backoff, max_backoff)
                _log.warning(
                    "%s: %s (attempt %d); %s, retrying in %.1fs",
                    words.worker,
                    self._what_failed(error),
                    failures,
                    words.nothing,
                    delay,
                    exc_info=_log.isEnabledFor(logging.DEBUG),
                )
                yield Wait(delay)
                continue
            if failures:
                _log.info(
                    "%s: %s again after %d failed attempt(s)", words.worker, words.resumed, failures
                )
                failures = 0
            if count:
                _log.debug("%s: %s %d message(s)", words.worker, words.done, count)
            if count < self._batch_size:
                yield Wait(interval)

    def _what_failed(self, error: Exception) -> str:
        """What a round's ``error`` says of the database, for the log."""
        if self._cut.is_set():
            return (
                f"the database at {self._database} did not answer within "
                f"{self._database_timeout}s, so its connection was cut"
            )
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        notes = "".join(f"; {note}" for note in getattr(error, "__notes__", ()))
        return f"the database at {self._database} failed ({type(error).__name__}: {reason}){notes}"


def _database_address(url: sa.URL) -> str:
    """``host:port/database`` of ``url`` (never its password), or a SQLite file's path."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


class _Step(Protocol):
    """A database operation of a flow: started on a connection, its outcome read back."""

    def start(self, connection: Any) -> Any: ...

    def finish(self, raw: Any) -> object: ...


class SyncWorker(WorkerCore, Generic[Op]):
    """A worker's flows run on connections of a SQLAlchemy ``Engine``, and its loop in a thread.

    A subclass performs the operations that are not database operations (``_perform``).
    """

    _engine: sa.Engine

    def _use_engine(self, engine: sa.Engine) -> None:
        # Its statements run through SQLAlchemy are bounded by the watched engine's listeners.
        self._engine = watched_engine(engine) if self._guarded() else engine

    def _drive(self, loop: Flow[LoopOp, None], stop: threading.Event) -> None:
        run(loop, perform_sync(stop, self._connected))

    def _connected(self, op: Connected[Op]) -> object:
        return self._on_connection(op.flow)

    def _on_connection(self, flow: Flow[Op, R]) -> R:
        timeout = self._database_timeout if self._postgres else None
        with bounded_connection(self._engine, timeout, self._cut.set, self._isolation()) as c:
            return run(flow, partial(self._perform, c))

    def _perform(self, connection: sa.Connection, op: Op) -> object:
        step = cast("_Step", op)
        try:
            return step.finish(step.start(connection))
        except exc.DBAPIError as error:
            with_schema_hint(error)
            raise


class AsyncWorker(WorkerCore, Generic[Op]):
    """A worker's flows run on connections of a SQLAlchemy ``AsyncEngine``, its loop awaited.

    A subclass performs the operations that are not database operations (``_perform``);
    each database operation is bounded by ``database_timeout`` from the event loop.
    """

    _engine: AsyncEngine

    async def _drive(self, loop: Flow[LoopOp, None], stop: asyncio.Event) -> None:
        await run_async(loop, perform_async(stop, self._connected))

    async def _connected(self, op: Connected[Op]) -> object:
        return await self._on_connection(op.flow)

    async def _on_connection(self, flow: Flow[Op, R]) -> R:
        on_cut = self._cut.set if self._guarded() else None
        connecting = bounded_async_connection(self._engine, on_cut, self._isolation())
        async with connecting as (connection, cut):
            return await run_async(flow, partial(self._perform, connection, cut))

    async def _perform(
        self, connection: AsyncConnection, cut: Callable[[], None] | None, op: Op
    ) -> object:
        step = cast("_Step", op)
        try:
            with _deadline(self._database_timeout if cut else None, cut):
                return step.finish(await step.start(connection))
        except exc.DBAPIError as error:
            with_schema_hint(error)
            raise


class DocumentedRun:
    """A base whose ``run`` is written once and documented by each subclass.

    A subclass that sets ``_run_doc`` gets its own copy of ``run`` with that docstring, so
    that every public class documents its ``run`` while the method is written once.
    """

    _run_doc: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        doc = cls.__dict__.get("_run_doc")
        if doc is not None:
            shared: types.FunctionType = getattr(cls, "run")  # noqa: B009
            own = types.FunctionType(
                shared.__code__,
                shared.__globals__,
                shared.__name__,
                shared.__defaults__,
                shared.__closure__,
            )
            own.__kwdefaults__ = shared.__kwdefaults__
            own.__annotations__ = shared.__annotations__
            own.__qualname__ = f"{cls.__qualname__}.{shared.__name__}"
            own.__doc__ = doc
            setattr(cls, "run", own)  # noqa: B010


class _Idling(DocumentedRun):
    """What :class:`IdlingWorker` and :class:`AsyncIdlingWorker` share: their loop."""

    def _loop(
        self, idle_interval: float, initial_backoff: float, max_backoff: float
    ) -> Flow[LoopOp, None]:
        """The worker's ``run`` loop, until stopped."""
        raise NotImplementedError


class IdlingWorker(SyncWorker[Op], _Idling):
    """A :class:`SyncWorker` whose ``run`` waits ``idle_interval`` after a round not full."""

    def run(
        self,
        stop: threading.Event,
        *,
        idle_interval: float = 0.5,
        initial_backoff: float = 0.1,
        max_backoff: float = 30.0,
    ) -> None:
        """Run rounds until ``stop`` is set (each worker documents its own)."""
        self._drive(self._loop(idle_interval, initial_backoff, max_backoff), stop)


class AsyncIdlingWorker(AsyncWorker[Op], _Idling):
    """An :class:`AsyncWorker` whose ``run`` waits ``idle_interval`` after a round not full."""

    async def run(
        self,
        stop: asyncio.Event,
        *,
        idle_interval: float = 0.5,
        initial_backoff: float = 0.1,
        max_backoff: float = 30.0,
    ) -> None:
        """Run rounds until ``stop`` is set (each worker documents its own)."""
        await self._drive(self._loop(idle_interval, initial_backoff, max_backoff), stop)


@contextlib.contextmanager
def bounded_connection(
    engine: sa.Engine,
    database_timeout: float | None,
    on_cut: Callable[[], None],
    isolation_level: str | None = None,
) -> Generator[sa.Connection, None, None]:
    """A connection of ``engine`` whose round trips are cut after ``database_timeout`` (None: not)."""
    with engine.connect() as connection:
        if isolation_level is not None:
            connection.execution_options(isolation_level=isolation_level)
        if database_timeout is None:
            yield connection
            return
        with guard_round_trips(connection, database_timeout, on_cut):
            yield connection


@contextlib.asynccontextmanager
async def bounded_async_connection(
    engine: AsyncEngine, on_cut: Callable[[], None] | None, isolation_level: str | None = None
) -> AsyncGenerator[tuple[AsyncConnection, Callable[[], None] | None], None]:
    """A connection of ``engine``, and what cuts it (None: not guarded, ``on_cut`` None)."""
    async with engine.connect() as connection:
        if isolation_level is not None:
            await connection.execution_options(isolation_level=isolation_level)
        if on_cut is None:
            yield connection, None
            return
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection

        def cut() -> None:
            on_cut()
            cut_connection(driver)

        yield connection, cut


@contextlib.contextmanager
def _deadline(
    seconds: float | None, expire: Callable[[], None] | None
) -> Generator[None, None, None]:
    """Call ``expire`` if the block is still running after ``seconds`` (None: never)."""
    if seconds is None or expire is None:
        yield
        return
    timer = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        yield
    finally:
        timer.cancel()
